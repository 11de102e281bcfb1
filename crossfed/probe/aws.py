"""The probe's AWS part: boto3 and the aws CLI with the web-identity environment."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from crossfed.probe.report import failure, timed

CLI_ERROR = re.compile(
    r"An error occurred \((?P<code>[^)]+)\) when calling the (?P<op>\w+) operation")


def with_boto3(bucket: str) -> dict[str, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    def attempt(call: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            return timed(started, {"ok": True, **call()})
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return timed(started, failure(error.get("Code", "?"), exc.operation_name,
                                          error.get("Message", "")))
        except BotoCoreError as exc:
            return timed(started, failure(type(exc).__name__, "", str(exc)))

    session = boto3.Session()
    sts, s3 = session.client("sts"), session.client("s3")
    identity = attempt(lambda: {"arn": sts.get_caller_identity()["Arn"]})
    listing = attempt(lambda: {"keys": [o["Key"] for o in s3.list_objects_v2(
        Bucket=bucket).get("Contents", [])]})
    return {"caller_identity": identity, "list_bucket": listing}


def _aws_cli() -> list[str]:
    found = shutil.which("aws")
    return [found] if found else [sys.executable, "-m", "awscli"]


def with_cli(bucket: str) -> dict[str, Any]:
    def run(args: list[str]) -> tuple[bool, str, dict[str, Any] | None]:
        done = subprocess.run(_aws_cli() + args, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return True, done.stdout, None
        match = CLI_ERROR.search(done.stderr)
        code, op = (match["code"], match["op"]) if match else ("CLIError", "")
        return False, "", failure(code, op, done.stderr.strip())

    started = time.monotonic()
    ok, out, problem = run(["sts", "get-caller-identity", "--output", "json"])
    identity = timed(started, {"ok": True, "arn": json.loads(out)["Arn"]} if ok else problem)
    started = time.monotonic()
    ok, out, problem = run(["s3", "ls", f"s3://{bucket}/"])
    listing = timed(started, {"ok": True, "keys": [
        line.split()[-1] for line in out.splitlines() if line.strip()]} if ok else problem)
    return {"caller_identity": identity, "list_bucket": listing}
