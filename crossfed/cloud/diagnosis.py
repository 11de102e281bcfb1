"""Why a cloud said no, from what the cloud holds (there is no decision log on a real cloud):
the role's trust policy and permissions, the OIDC provider, the identity's federated
credentials, the vault's access policies or role assignments, and the issuer's keys fetched as
the cloud fetches them, judged by crossfed's own evaluators (the `crossfed doctor` checks).

Read-only: IAM through a client that refuses any call but the doctor's reads; ARM through the
doctor's GET-only pipeline; Key Vault is asked only whether the secret exists.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from crossfed.doctor import aws as doctor_aws
from crossfed.doctor import azure as doctor_azure
from crossfed.doctor.report import Check, fail, ok, skip
from crossfed.issuer.tokens import ServiceAccountRef

# The checks that explain a refusal at each step; any other FAIL does not explain it.
AWS_LIST_CHECKS = frozenset({"permissions"})
AZURE_SECRET_CHECKS = frozenset({"vault", "access_policy", "role_assignment", "not_found"})


def read_only_iam(session: Any, region: str) -> Any:
    iam = session.client("iam", region_name=region)
    iam.meta.events.register("before-parameter-build.iam", doctor_aws._refuse_writes)
    return iam


def _matches(pattern: Any, value: str) -> bool:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or [])
    return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in patterns)


def _statements(document: Any) -> list[dict[str, Any]]:
    found = document.get("Statement", []) if isinstance(document, dict) else []
    return [found] if isinstance(found, dict) else [s for s in found if isinstance(s, dict)]


def permission_check(iam: Any, role_name: str, bucket: str,
                     action: str = "s3:ListBucket") -> Check:
    """Does an identity policy of the role allow `action` on the bucket (and none deny it)?
    Conditions and permission boundaries are not evaluated (CHOICE: the tier's own policies
    carry none)."""
    resource = f"arn:aws:s3:::{bucket}"
    documents: list[tuple[str, Any]] = []
    attached = doctor_aws._call(iam, "list_attached_role_policies", RoleName=role_name) or {}
    for policy in attached.get("AttachedPolicies", []):
        meta = doctor_aws._call(iam, "get_policy", PolicyArn=policy["PolicyArn"]) or {}
        version = meta.get("Policy", {}).get("DefaultVersionId")
        got = (doctor_aws._call(iam, "get_policy_version", PolicyArn=policy["PolicyArn"],
                                VersionId=version) if version else None)
        if got:
            documents.append((policy["PolicyName"],
                              doctor_aws._document(got["PolicyVersion"]["Document"])))
    inline = doctor_aws._call(iam, "list_role_policies", RoleName=role_name) or {}
    for name in inline.get("PolicyNames", []):
        got = doctor_aws._call(iam, "get_role_policy", RoleName=role_name, PolicyName=name)
        if got:
            documents.append((f"{name} (inline)", doctor_aws._document(got["PolicyDocument"])))
    allowed, denied = [], []
    for name, document in documents:
        for statement in _statements(document):
            if (_matches(statement.get("Action"), action)
                    and _matches(statement.get("Resource", "*"), resource)):
                (denied if statement.get("Effect") == "Deny" else allowed).append(name)
    if allowed and not denied:
        return ok("permissions", f"{', '.join(allowed)} allows {action} on {resource}")
    why = (f"{', '.join(denied)} denies {action} on {resource}" if denied else
           f"no policy of role {role_name} allows {action} on {resource} (policies: "
           f"{', '.join(n for n, _ in documents) or 'none'})")
    return fail("permissions", why, f"add {action} on {resource} to the role's permission "
                f"policy (aws iam put-role-policy --role-name {role_name} ...)")


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


def tenant_check(told: str, expected: str) -> Check:
    if told.lower() == expected.lower():
        return ok("tenant", f"the workload is told tenant {told}, the identity's")
    return fail("tenant", f"the workload is told tenant {told}, but the identity lives in "
                f"tenant {expected}", f"set the service account's azure.workload.identity/"
                f"tenant-id annotation (or the webhook's azureTenantID) to {expected}")


def secret_check(secret_client: Any, secret: str) -> Check:
    """Does the secret exist? Only names are listed; no value is read."""
    from azure.core.exceptions import HttpResponseError

    try:
        names = [p.name for p in secret_client.list_properties_of_secrets()]
    except HttpResponseError as exc:  # the harness's own access may still be propagating
        return skip("not_found", f"the harness may not list the vault's secrets yet "
                    f"({exc.status_code} {getattr(exc.error, 'code', '')})")
    if secret in names:
        return ok("not_found", f"secret '{secret}' exists")
    return fail("not_found", f"the vault holds no secret '{secret}' (it holds {len(names)})",
                f"create it (az keyvault secret set --name {secret} ...), or fix the name the "
                "workload reads")


def diagnose_azure(arm: Any, token: str, account: ServiceAccountRef, identity: str | None,
                   told_client: str, told_tenant: str, tenant: str, trust_roots: str | None,
                   vault_url: str, secret: str, secret_client: Any) -> list[Check]:
    checks = [tenant_check(told_tenant, tenant)]
    checks += doctor_azure.diagnose(token, account, arm, identity,
                                    None if identity else told_client, tenant, trust_roots,
                                    (vault_url, secret))
    checks.append(secret_check(secret_client, secret))
    return checks


def failed_names(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if c.status == "FAIL"}


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append("  " + check.line())
        lines += [f"         {detail}" for detail in check.details]
    return "\n".join(lines)
