"""The SDKs' standard environment for reaching a running `crossfed serve` as one reaches the
real clouds: credentials, endpoints and a CA bundle, nothing private of the stand-ins.

    python -m crossfed.cloud.serve_env STATE_DIR [--also-trust CA.pem ...] > cloud.env

prints `export` lines (0600 file advised: it holds the stand-ins' admin credentials) and
writes STATE_DIR/sdk-ca.pem (serve's CA plus each --also-trust bundle, e.g. the cluster
issuer's CA, standing in for the public roots a real machine has). The Azure ARM endpoint goes
to the tier as --azure-arm-endpoint "$CROSSFED_SERVE_ARM" (its /metadata/endpoints names the
authority, the Key Vault suffix and the audience, as for any non-public cloud).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from crossfed.secret_files import write_private


def sdk_environment(info: dict, ca_bundle: Path) -> dict[str, str]:
    aws, azure = info["aws"], info["azure"]
    return {
        "AWS_ENDPOINT_URL": aws["endpoint_url"],
        "AWS_ACCESS_KEY_ID": aws["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
        "AWS_REGION": aws["region"],
        "AWS_DEFAULT_REGION": aws["region"],
        "AWS_CA_BUNDLE": str(ca_bundle),
        "AZURE_TENANT_ID": azure["tenant_id"],
        "AZURE_CLIENT_ID": azure["admin_client_id"],
        "AZURE_CLIENT_SECRET": azure["admin_client_secret"],
        "AZURE_AUTHORITY_HOST": azure["authority_host"],
        "AZURE_SUBSCRIPTION_ID": azure["subscription_id"],
        "REQUESTS_CA_BUNDLE": str(ca_bundle),
        "CROSSFED_SERVE_ARM": azure["arm_endpoint"],
    }


def write_bundle(state_dir: Path, info: dict, also_trust: list[Path]) -> Path:
    bundle = state_dir / "sdk-ca.pem"
    pem = Path(info["ca_bundle"]).read_bytes()
    for extra in also_trust:
        pem += b"\n" + extra.read_bytes()
    bundle.write_bytes(pem)
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossfed.cloud.serve_env",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--also-trust", type=Path, action="append", default=[])
    parser.add_argument("--output", type=Path, help="write the export lines here (0600)")
    args = parser.parse_args(argv)
    state = args.state_dir / "state.json"
    try:
        info = json.loads(state.read_text())
        bundle = write_bundle(args.state_dir, info, args.also_trust)
    except (OSError, ValueError, KeyError) as exc:
        print(f"serve_env: cannot read {state} or the CA bundles ({exc}); is `crossfed serve "
              f"--state-dir {args.state_dir}` running?", file=sys.stderr)
        return 2
    lines = "".join(f"export {k}={shlex.quote(v)}\n"
                    for k, v in sdk_environment(info, bundle).items())
    if args.output:
        write_private(args.output, lines)
    else:
        sys.stdout.write(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
