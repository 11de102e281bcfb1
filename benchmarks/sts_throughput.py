"""AssumeRoleWithWebIdentity calls per second: through crossfed's verifying STS, and through bare
moto (which checks nothing), measured in the same run. Each stand-in is its own process and
account, so both are given the same provider and role.

Usage: python benchmarks/sts_throughput.py [--calls N] [--rounds R]
Target: verifying >= 1/1.2 of bare moto (ratio printed as verifying/bare).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from crossfed.aws.standin import AwsStandIn
from crossfed.aws.trust_policy_templates import irsa_trust_policy
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.oidc.fetch import top_thumbprint
from crossfed.pki import RunCA


def assume_rate(endpoint: str, ca_bundle: str, role_arn: str, token: str, calls: int) -> float:
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1", verify=ca_bundle,
                       config=Config(signature_version=UNSIGNED))
    sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName="warmup",
                                      WebIdentityToken=token)
    start = time.perf_counter()
    for i in range(calls):
        sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName=f"bench-{i}",
                                          WebIdentityToken=token)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = RunCA(Path(tmp))
        issuer = IssuerServer(ca).start()
        bare = AwsStandIn(ca, trusted_roots=str(ca.bundle_path), verify=False).start(
            enforce_iam=False)  # moto's own handler crashes on this action under enforcement
        verifying = AwsStandIn(ca, trusted_roots=str(ca.bundle_path)).start(enforce_iam=False)
        account = ServiceAccountRef("bench", "reader")
        for standin in (bare, verifying):
            iam = standin.session().client("iam", **standin.client_kwargs())
            provider = iam.create_open_id_connect_provider(
                Url=issuer.url, ClientIDList=["sts.amazonaws.com"],
                ThumbprintList=[top_thumbprint(issuer.url)])["OpenIDConnectProviderArn"]
            policy = irsa_trust_policy(provider, issuer.url, account.subject,
                                       "sts.amazonaws.com")
            role_arn = iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(
                policy))["Role"]["Arn"]
        token = issuer.issuer.mint(account, ["sts.amazonaws.com"])
        rates: dict[str, list[float]] = {"bare moto": [], "verifying STS": []}
        for _ in range(args.rounds):  # interleaved, so drift hits both alike
            rates["bare moto"].append(assume_rate(bare.endpoint_url, str(ca.bundle_path),
                                                  role_arn, token, args.calls))
            rates["verifying STS"].append(assume_rate(verifying.endpoint_url,
                                                      str(ca.bundle_path), role_arn, token,
                                                      args.calls))
        allowed = [d for d in verifying.decisions.all() if d.allowed]
        assert len(allowed) == args.rounds * (args.calls + 1), "verifying path did not verify"
        best = {name: max(values) for name, values in rates.items()}
        for name, value in best.items():
            print(f"{name:14s} {value:8.1f} AssumeRoleWithWebIdentity/s "
                  f"(best of {args.rounds} x {args.calls})")
        ratio = best["verifying STS"] / best["bare moto"]
        print(f"ratio verifying/bare: {ratio:.3f} (target >= {1 / 1.2:.3f}); "
              f"JWKS fetches: {verifying.keys.fetch_count}")
        for server in (verifying, bare, issuer):
            server.stop()


if __name__ == "__main__":
    main()
