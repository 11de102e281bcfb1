"""The probe: runs inside the workload (a pod, or a local process) and prints one JSON line.

It uses only the SDKs and CLIs as a user's workload would, configured by the environment the
webhook injected. It needs nothing from crossfed, so the same file runs in a probe image.
Secrets never leave it: errors are scrubbed of the token, secrets are reported as digests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

CLI_ERROR = re.compile(
    r"An error occurred \((?P<code>[^)]+)\) when calling the (?P<op>\w+) operation")


def _token() -> str:
    path = os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    try:
        return open(path).read().strip() if path else ""
    except OSError:
        return ""


def _scrub(text: str) -> str:
    token = _token()
    return text.replace(token, "<token>") if len(token) > 8 else text


def _failure(code: str, operation: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "operation": operation,
            "message": _scrub(message)[:500]}


def aws_boto3(bucket: str) -> dict[str, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    def attempt(call: Any) -> dict[str, Any]:
        try:
            return {"ok": True, **call()}
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return _failure(error.get("Code", "?"), exc.operation_name, error.get("Message", ""))
        except BotoCoreError as exc:
            return _failure(type(exc).__name__, "", str(exc))

    session = boto3.Session()
    sts, s3 = session.client("sts"), session.client("s3")
    identity = attempt(lambda: {"arn": sts.get_caller_identity()["Arn"]})
    listing = attempt(lambda: {"keys": [o["Key"] for o in s3.list_objects_v2(
        Bucket=bucket).get("Contents", [])]})
    return {"caller_identity": identity, "list_bucket": listing}


def _aws_cli() -> list[str]:
    found = shutil.which("aws")
    return [found] if found else [sys.executable, "-m", "awscli"]


def aws_cli(bucket: str) -> dict[str, Any]:
    def run(args: list[str]) -> tuple[bool, str, dict[str, Any] | None]:
        done = subprocess.run(_aws_cli() + args, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return True, done.stdout, None
        match = CLI_ERROR.search(done.stderr)
        code, op = (match["code"], match["op"]) if match else ("CLIError", "")
        return False, "", _failure(code, op, done.stderr.strip())

    ok, out, failure = run(["sts", "get-caller-identity", "--output", "json"])
    identity = {"ok": True, "arn": json.loads(out)["Arn"]} if ok else failure
    ok, out, failure = run(["s3", "ls", f"s3://{bucket}/"])
    listing = {"ok": True, "keys": [line.split()[-1] for line in out.splitlines() if line.strip()]
               } if ok else failure
    return {"caller_identity": identity, "list_bucket": listing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossfed-probe", description=__doc__)
    parser.add_argument("--aws-bucket", help="bucket to list with the web-identity credentials")
    parser.add_argument("--clients", default="boto3,cli", help="AWS clients to try")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"probe": "crossfed"}
    if args.aws_bucket:
        clients = set(args.clients.split(","))
        report["aws"] = {}
        if "boto3" in clients:
            report["aws"]["boto3"] = aws_boto3(args.aws_bucket)
        if "cli" in clients:
            report["aws"]["cli"] = aws_cli(args.aws_bucket)
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
