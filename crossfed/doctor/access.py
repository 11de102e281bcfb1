"""What the doctors check beyond getting in: whether the role may list the bucket, whether the
workload is told the identity's tenant, whether the secret exists. Shared by `crossfed doctor`
and the cloud tier's diagnosis (crossfed/cloud/diagnosis.py); all reads."""

from __future__ import annotations

import fnmatch
from typing import Any

from crossfed.doctor import aws as doctor_aws
from crossfed.doctor.report import Check, fail, ok, skip


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
