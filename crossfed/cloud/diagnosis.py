"""Why a cloud said no, from what the cloud holds (there is no decision log on a real cloud):
the role's trust policy and permissions, the OIDC provider, the identity's federated
credentials, the vault's access policies or role assignments, and the issuer's keys fetched as
the cloud fetches them, judged by crossfed's own evaluators (the `crossfed doctor` checks).

Read-only: IAM through a client that refuses any call but the doctor's reads; ARM through the
doctor's GET-only pipeline; Key Vault is asked only whether the secret exists.
"""

from __future__ import annotations

from typing import Any

from crossfed.doctor import aws as doctor_aws
from crossfed.doctor import azure as doctor_azure
from crossfed.doctor.access import permission_check, secret_check, tenant_check
from crossfed.doctor.report import Check, fail, ok
from crossfed.issuer.tokens import ServiceAccountRef

# The checks that explain a refusal at each step; any other FAIL does not explain it.
AWS_LIST_CHECKS = frozenset({"permissions"})
AZURE_SECRET_CHECKS = frozenset({"vault", "access_policy", "role_assignment", "not_found"})


def read_only_iam(session: Any, region: str) -> Any:
    iam = session.client("iam", region_name=region)
    iam.meta.events.register("before-parameter-build.iam", doctor_aws._refuse_writes)
    return iam


def presented(report: dict[str, Any], variable: str, used: dict[str, Any]) -> list[Check]:
    """The claims the workload reported for its token, beside those the diagnosis judged."""
    token = (report.get("tokens") or {}).get(variable)
    if not token or not token.get("claims"):
        return []
    claims = token["claims"]
    differ = [k for k in ("iss", "sub", "aud") if k in used and claims.get(k) != used.get(k)]
    summary = (f"the workload presented iss {claims.get('iss')}, sub {claims.get('sub')}, aud "
               f"{claims.get('aud')}, kid {token.get('header', {}).get('kid')!r} (token "
               f"sha256:{token.get('sha256')})")
    if differ:
        return [fail("presented", f"{summary}, which differs in {differ} from the token judged "
                     "below", "check the webhook's token audience and the service account")]
    return [ok("presented", summary)]


def diagnose_aws(iam: Any, role_arn: str, role_name: str, account: ServiceAccountRef,
                 token: str, trust_roots: str | None, bucket: str) -> list[Check]:
    directory = doctor_aws.BotoIamDirectory(iam)
    checks = doctor_aws.diagnose(role_arn, account, token, directory, trust_roots)
    checks.append(permission_check(iam, role_name, bucket))
    return checks


def diagnose_azure(arm: Any, token: str, account: ServiceAccountRef, identity: str | None,
                   told_client: str, told_tenant: str, tenant: str, trust_roots: str | None,
                   vault_url: str, secret: str, secret_client: Any) -> list[Check]:
    checks = [tenant_check(told_tenant, tenant)]
    checks += doctor_azure.diagnose(token, account, arm, identity,
                                    None if identity else told_client, tenant, trust_roots,
                                    (vault_url, secret))
    checks.append(secret_check(secret_client, secret))
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append("  " + check.line())
        lines += [f"         {detail}" for detail in check.details]
    return "\n".join(lines)
