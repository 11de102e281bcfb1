"""Key Vault access policies as ARM takes them: AccessPolicyEntry parsed and validated, and
the key an entry is matched by (tenantId + objectId + applicationId, GUIDs case-insensitive).
The data plane enforces the secret permissions (crossfed.azure.keyvault.model.AccessPolicy);
key, certificate and storage permissions are only kept for the ARM view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossfed.azure.arm.common import bad_request, json_object, string
from crossfed.azure.keyvault.model import SECRET_PERMISSIONS

POLICY_KINDS = ("add", "replace", "remove")
OTHER_PERMISSION_KINDS = ("keys", "certificates", "storage")
SECRET_PERMISSION_NAMES = frozenset((*SECRET_PERMISSIONS, "all"))

PolicyKey = tuple[str, str, str]  # (tenant id, object id, application id or "")


@dataclass(frozen=True)
class PolicyEntry:
    """One ARM AccessPolicyEntry, validated."""

    tenant_id: str
    object_id: str
    application_id: str | None
    secrets: list[str]
    others: dict[str, list[str]]

    @property
    def key(self) -> PolicyKey:
        return policy_key(self.tenant_id, self.object_id, self.application_id)


def policy_key(tenant_id: str, object_id: str, application_id: str | None) -> PolicyKey:
    # GUIDs: compare case-insensitively
    return tenant_id.lower(), object_id.lower(), (application_id or "").lower()


def union(current: list[str], added: list[str]) -> list[str]:
    """Permissions are case-insensitive: keep the first spelling, drop repeats."""
    seen = {p.lower() for p in current}
    merged = list(current)
    for permission in added:
        if permission.lower() not in seen:
            seen.add(permission.lower())
            merged.append(permission)
    return merged


def permission_list(permissions: dict[str, Any], kind: str) -> list[str]:
    values = permissions.get(kind) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise bad_request(f"Access policy permissions.{kind} must be a list of strings.")
    return union([], values)


def parse_policy(entry: Any) -> PolicyEntry:
    entry = json_object(entry, "an access policy entry")
    tenant_id, object_id = string(entry.get("tenantId")), string(entry.get("objectId"))
    permissions = entry.get("permissions")
    if tenant_id is None or object_id is None or not isinstance(permissions, dict):
        raise bad_request("An access policy entry must specify 'tenantId', 'objectId' and "
                          "'permissions'.")
    secrets = permission_list(permissions, "secrets")
    unknown = [p for p in secrets if p.lower() not in SECRET_PERMISSION_NAMES]
    if unknown:
        raise bad_request(f"Invalid secret permissions {unknown}; allowed: "
                          f"{sorted(SECRET_PERMISSION_NAMES)}.")
    others = {kind: permission_list(permissions, kind) for kind in OTHER_PERMISSION_KINDS
              if kind in permissions}
    return PolicyEntry(tenant_id, object_id, string(entry.get("applicationId")), secrets,
                       others)


def parse_policies(value: Any) -> list[PolicyEntry]:
    if not isinstance(value, list):
        raise bad_request("The parameter accessPolicies must be a list (it may be empty).")
    return [parse_policy(entry) for entry in value]
