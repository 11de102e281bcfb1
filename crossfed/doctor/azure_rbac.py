"""`crossfed doctor azure`, vaults with Azure RBAC (enableRbacAuthorization): may the identity's
principal read the secret? Judged from the role assignments ARM lists for the principal at the
vault's scope (and the scopes that contain it: resource group, subscription, or below it: the
secret), each role's data actions matched the way the ARM stand-in's RBAC matches them
(crossfed.azure.arm.rbac.RoleDefinition.allows_data), as the access-policy check uses Key
Vault's own AccessPolicy.allows.

Read-only, through the doctor's management pipeline (crossfed.doctor.azure.Arm: its clients
carry the policy that refuses anything but GET): GET
{vault id}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{oid}'
and, for a role that is not one of the Key Vault built-ins, GET of its role definition.

CHOICES: deny assignments and ABAC conditions are not read (an assignment with a condition is
counted as granting, and the line says so); group membership is not expanded (Azure caches a
managed identity's groups for about 24 h, so crossfed assigns directly).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from crossfed.azure.arm.rbac import BUILT_IN_ROLES, RoleDefinition, covers
from crossfed.doctor.azure import Arm
from crossfed.doctor.report import Check, fail, ok

AUTHORIZATION_API_VERSION = "2022-04-01"
GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
READERS = ("Key Vault Secrets User", "Key Vault Secrets Officer", "Key Vault Administrator")
RECENT = 600.0  # s: Azure documents up to 10 min for a new assignment to take effect
NAME = "role_assignment"


def _get_all(arm: Arm, url: str) -> list[dict[str, Any]]:
    from azure.core.rest import HttpRequest

    items: list[dict[str, Any]] = []
    while url:
        answer = arm.keyvault.send_request(HttpRequest("GET", url))
        answer.raise_for_status()
        body = answer.json()
        items += body.get("value", [])
        url = body.get("nextLink") or ""
    return items


def role_assignments(arm: Arm, scope: str, principal_object_id: str) -> list[dict[str, Any]]:
    """The principal's role assignments at, above or below `scope` (ARM's principalId filter)."""
    flt = quote(f"principalId eq '{principal_object_id}'", safe="")
    url = (f"{scope}/providers/Microsoft.Authorization/roleAssignments"
           f"?api-version={AUTHORIZATION_API_VERSION}&$filter={flt}")
    return arm._read(f"the role assignments at {scope}", lambda: _get_all(arm, url)) or []


def role_definition(arm: Arm, definition_id: str) -> RoleDefinition | None:
    """A built-in by GUID, else the definition ARM holds (custom roles)."""
    guid = definition_id.rstrip("/").rsplit("/", 1)[-1].lower()
    if guid in BUILT_IN_ROLES:
        return BUILT_IN_ROLES[guid]
    from azure.core.rest import HttpRequest

    def call() -> dict[str, Any]:
        answer = arm.keyvault.send_request(HttpRequest(
            "GET", f"{definition_id}?api-version={AUTHORIZATION_API_VERSION}"))
        answer.raise_for_status()
        return dict(answer.json())

    body = arm._read(f"role definition {guid}", call)
    if not body:
        return None
    properties = body.get("properties", {})
    data = [a for p in properties.get("permissions", []) for a in p.get("dataActions", [])]
    not_data = [a for p in properties.get("permissions", [])
                for a in p.get("notDataActions", [])]
    return RoleDefinition(guid, str(properties.get("roleName") or guid), "",
                          data_actions=tuple(data), not_data_actions=tuple(not_data))


def _age(created: Any) -> float | None:
    try:
        moment = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds()


def rbac_access_check(arm: Arm, vault: Any, group: str, secret: str,
                      principal_object_id: str) -> Check:
    """ok when a role assignment of the principal covering the vault (or the secret) has a role
    whose data actions include getSecret (Key Vault Secrets User, Officer, Administrator or a
    custom role); FAIL naming the `az role assignment create` that fixes it."""
    vault_id = str(vault.id)
    secret_scope = f"{vault_id}/secrets/{secret}"
    found = role_assignments(arm, vault_id, principal_object_id)
    granting, others = [], []
    for assignment in found:
        properties = assignment.get("properties", {})
        scope = str(properties.get("scope", ""))
        if str(properties.get("principalId", "")).lower() != principal_object_id.lower():
            continue
        if not covers(scope, secret_scope):  # below the vault, another secret's
            continue
        role = role_definition(arm, str(properties.get("roleDefinitionId", "")))
        shown = role.name if role else str(properties.get("roleDefinitionId"))
        if role is not None and role.allows_data(GET_SECRET):
            granting.append((shown, scope, properties))
        else:
            others.append(f"{shown} at {scope}: grants no {GET_SECRET}")
    if granting:
        role, scope, properties = granting[0]
        details = [f"{r} at {s}" for r, s, _ in granting]
        age = _age(properties.get("createdOn"))
        if age is not None and age < RECENT:
            details.append(f"assigned {age:.0f} s ago: Azure can take up to 10 min to apply a "
                           "new role assignment (403 ForbiddenByRbac until then)")
        if properties.get("condition"):
            details.append("the assignment has a condition, which the doctor does not evaluate")
        return ok(NAME, f"{role} at {scope} grants secrets get on vault {vault.name} to "
                  f"principal id {principal_object_id} (secret '{secret}' itself is not read)",
                  details)
    why = (f"no role assignment of principal id {principal_object_id} at vault {vault.name}, "
           f"its resource group {group} or the subscription grants {GET_SECRET} (one of "
           f"{', '.join(READERS)}), so reading secret '{secret}' gets 403 Forbidden "
           "(ForbiddenByRbac)")
    if others:
        why += "; Owner and Contributor grant no data actions"
    return fail(NAME, why, f"az role assignment create --role \"Key Vault Secrets User\" "
                f"--assignee-object-id {principal_object_id} --assignee-principal-type "
                f"ServicePrincipal --scope {vault_id}", others)
