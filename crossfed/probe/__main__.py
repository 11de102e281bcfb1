"""The probe: runs inside the workload (a pod, or a local process) and prints one JSON line.

It uses the SDKs and CLIs as a user's workload would, configured only by the environment the
webhooks injected. It imports nothing of crossfed but this package, so the same files run in a
probe image. Secrets never leave it: errors are scrubbed of tokens, secrets become digests.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossfed-probe", description=__doc__)
    parser.add_argument("--aws-bucket", help="bucket to list with the web-identity credentials")
    parser.add_argument("--aws-clients", default="boto3,cli", help="AWS clients to try")
    parser.add_argument("--azure-vault-url", help="vault to read with the federated identity")
    parser.add_argument("--azure-secret", help="secret name to read")
    parser.add_argument("--azure-credentials", default="workload,default",
                        help="azure-identity credentials to try: workload, default")
    parser.add_argument("--azure-skip-challenge-resource-check", action="store_true",
                        help="local stand-ins only: vault URLs on loopback cannot match the "
                             "challenge resource https://vault.azure.net")
    parser.add_argument("--termination-log", help="also write the JSON line here (a pod's "
                        "termination message: survives a lost log file)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"probe": "crossfed"}
    if args.aws_bucket:
        from crossfed.probe import aws

        clients = set(args.aws_clients.split(","))
        report["aws"] = {}
        if "boto3" in clients:
            report["aws"]["boto3"] = aws.with_boto3(args.aws_bucket)
        if "cli" in clients:
            report["aws"]["cli"] = aws.with_cli(args.aws_bucket)
    if args.azure_vault_url and args.azure_secret:
        from crossfed.probe import azure

        report["azure"] = {
            kind: azure.with_credential(kind, args.azure_vault_url, args.azure_secret,
                                        not args.azure_skip_challenge_resource_check)
            for kind in args.azure_credentials.split(",")
        }
    from crossfed.probe.report import token_claims

    report["tokens"] = token_claims()  # claims and digest only: the diagnosis judges them
    line = json.dumps(report, sort_keys=True)
    print(line, flush=True)
    if args.termination_log:
        with open(args.termination_log, "w") as message:
            message.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
