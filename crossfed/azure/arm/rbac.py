"""Azure RBAC in the ARM stand-in (Microsoft.Authorization, as azure-mgmt-authorization's
2022-04-01 client calls it): built-in role definitions with their real GUIDs and permissions,
and the role assignments that are the only source of every authorization decision, ARM's
(control-plane actions) and Key Vault's (data actions on vaults with enableRbacAuthorization).

    {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}     PUT GET DELETE
    {scope}/providers/Microsoft.Authorization/roleAssignments            GET [$filter]
    {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}     GET
    {scope}/providers/Microsoft.Authorization/roleDefinitions            GET [$filter]

A scope is "" (the tenant root, for role definitions only), /subscriptions/{sub}, a resource
group or a resource below it. An assignment at scope S covers S and everything under it.

Errors as real ARM sends them (field: see each message): 409 RoleAssignmentExists (the same
principal, role and scope under another name), 400 PrincipalNotFound (principalType not given
and the principal not (yet) in the directory), 400 RoleDefinitionDoesNotExist on PUT with an
unknown role definition (404 on GET of one), 404 RoleAssignmentNotFound, 400
RoleAssignmentUpdateNotPermitted (a PUT that changes the principal, role or scope of a name),
400 UnmatchedPrincipalType (principalType not the principal's), 400 InvalidRoleAssignmentId
(name not a GUID). Who may write is decided in front of this, by the caller's own assignments:
Microsoft.Authorization/roleAssignments/write is in Owner's and User Access Administrator's
actions and in Contributor's notActions.

Propagation (crossfed/azure/propagation.py): a new assignment is listed and read at once but
grants only from its effective_at on, in ARM and in Key Vault alike.

CHOICES (undocumented, or simplified):
- a principal is "known" (no PrincipalNotFound) once the propagation delay has passed since ARM
  created it (ServicePrincipal.known_at); with principalType given any GUID is accepted, as
  real ARM skips the directory lookup then;
- only built-in roles exist (custom role definitions are not served); a roleDefinitionId may be
  tenant-level (/providers/...) or of this subscription, and is stored and returned in the
  subscription form real ARM returns;
- the scope's resource is not checked for existence (real ARM refuses some missing scopes);
- `condition` (ABAC) is refused with 400 InvalidRoleAssignmentRequest: the stand-in would not
  evaluate it, and granting unconditionally would allow what Azure denies;
- deleting an assignment takes effect at once (real removals propagate too);
- re-PUT of an identical assignment answers 200 with the stored one (201 only when created);
  a PUT that changes only the role of a name is refused like a principal or scope change
  (RoleAssignmentUpdateNotPermitted), and description changes are ignored;
- unsupported $filter expressions answer 400 UnsupportedQuery; supported are atScope(),
  principalId eq '{id}', assignedTo('{id}') (no groups: the same as principalId), and those
  joined with "and"; role definitions: roleName eq '{name}' and type eq 'BuiltInRole';
- DELETE of a missing assignment answers 204 (the SDK takes 200 or 204);
- list results are one page (no nextLink): the stand-in never holds thousands.
"""

from __future__ import annotations

import functools
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crossfed.azure.arm.common import (
    GUID,
    ROLE_ASSIGNMENT_TYPE,
    ROLE_DEFINITION_TYPE,
    ArmError,
    bad_request,
    json_object,
    string,
)
from crossfed.azure.directory import Directory
from crossfed.azure.propagation import pending

PROVIDER_PATH = "/providers/Microsoft.Authorization"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
WRITE_ACTION = ROLE_ASSIGNMENT_TYPE + "/write"

# Built-in roles (MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles,
# the security and general sections; the Key Vault rows as in articles/key-vault/general/
# rbac-guide.md; Purge Operator as azure-rbac-catalog.org shows its definition).
_KV_READS = (
    "Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*", "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*", "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read", "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/operations/read",
)


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    name: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()

    def allows(self, action: str) -> bool:
        return _any(self.actions, action) and not _any(self.not_actions, action)

    def allows_data(self, action: str) -> bool:
        return _any(self.data_actions, action) and not _any(self.not_data_actions, action)


@functools.lru_cache(maxsize=512)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in text.split("*")), re.IGNORECASE)


def _any(patterns: tuple[str, ...], action: str) -> bool:
    """ARM matches actions case-insensitively; '*' stands for any run of characters."""
    return any(_pattern(p).fullmatch(action) for p in patterns)


OWNER = RoleDefinition(
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner",
    "Grants full access to manage all resources, including the ability to assign roles in "
    "Azure RBAC.", actions=("*",))
CONTRIBUTOR = RoleDefinition(
    "b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
    "Grants full access to manage all resources, but does not allow you to assign roles in "
    "Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
    actions=("*",), not_actions=(
        "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
        "Microsoft.Authorization/elevateAccess/Action",
        "Microsoft.Blueprint/blueprintAssignments/write",
        "Microsoft.Blueprint/blueprintAssignments/delete",
        "Microsoft.Compute/galleries/share/action", "Microsoft.Purview/consents/write",
        "Microsoft.Purview/consents/delete",
        "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
        "Microsoft.Subscription/cancel/action", "Microsoft.Subscription/enable/action"))
READER = RoleDefinition(
    "acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader",
    "View all resources, but does not allow you to make any changes.", actions=("*/read",))
USER_ACCESS_ADMINISTRATOR = RoleDefinition(
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "User Access Administrator",
    "Lets you manage user access to Azure resources.",
    actions=("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"))
KEY_VAULT_ADMINISTRATOR = RoleDefinition(
    "00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator",
    "Perform all data plane operations on a key vault and all objects in it, including "
    "certificates, keys, and secrets. Cannot manage key vault resources or manage role "
    "assignments. Only works for key vaults that use the 'Azure role-based access control' "
    "permission model.", actions=_KV_READS, data_actions=("Microsoft.KeyVault/vaults/*",))
KEY_VAULT_SECRETS_OFFICER = RoleDefinition(
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Key Vault Secrets Officer",
    "Perform any action on the secrets of a key vault, except manage permissions. Only works "
    "for key vaults that use the 'Azure role-based access control' permission model.",
    actions=_KV_READS, data_actions=("Microsoft.KeyVault/vaults/secrets/*",))
KEY_VAULT_SECRETS_USER = RoleDefinition(
    "4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User",
    "Read secret contents. Only works for key vaults that use the 'Azure role-based access "
    "control' permission model.", data_actions=(
        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action"))
KEY_VAULT_READER = RoleDefinition(
    "21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader",
    "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive "
    "values such as secret contents or key material. Only works for key vaults that use the "
    "'Azure role-based access control' permission model.", actions=_KV_READS, data_actions=(
        "Microsoft.KeyVault/vaults/*/read",
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action"))
KEY_VAULT_PURGE_OPERATOR = RoleDefinition(
    "a68e7c17-0ab2-4c09-9a58-125dae29748c", "Key Vault Purge Operator",
    "Allows permanent deletion of soft-deleted vaults.", actions=(
        "Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*",
        "Microsoft.Resources/deployments/*",
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.KeyVault/deletedVaults/read", "Microsoft.KeyVault/locations/deletedVaults/read",
        "Microsoft.KeyVault/locations/deletedVaults/purge/action",
        "Microsoft.KeyVault/locations/operationResults/read"))
BUILT_IN_ROLES = {r.guid: r for r in (
    OWNER, CONTRIBUTOR, READER, USER_ACCESS_ADMINISTRATOR, KEY_VAULT_ADMINISTRATOR,
    KEY_VAULT_SECRETS_OFFICER, KEY_VAULT_SECRETS_USER, KEY_VAULT_READER,
    KEY_VAULT_PURGE_OPERATOR)}
BUILT_IN_CREATED = "2015-02-02T21:55:09.8806423Z"  # shown as createdOn (CHOICE: one date)

ROLE_NAME_FILTER = re.compile(r"^\s*roleName\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
TYPE_FILTER = re.compile(r"^\s*type\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
AT_SCOPE = re.compile(r"^\s*atScope\(\)\s*$", re.IGNORECASE)
PRINCIPAL_FILTER = re.compile(
    r"^\s*(?:principalId\s+eq\s+'([^']*)'|assignedTo\('([^']*)'\))\s*$", re.IGNORECASE)


def role_by_name(name: str) -> RoleDefinition:
    for role in BUILT_IN_ROLES.values():
        if role.name.lower() == name.lower() or role.guid == name.lower():
            return role
    raise ValueError(f"no built-in role {name!r}; known: "
                     f"{sorted(r.name for r in BUILT_IN_ROLES.values())}")


def covers(outer: str, inner: str) -> bool:
    """Whether scope `outer` contains scope `inner` (ARM scopes compare case-insensitively)."""
    outer, inner = outer.rstrip("/").lower(), inner.rstrip("/").lower()
    return inner == outer or inner.startswith(outer + "/")


def definition_not_found(guid: str, status: int) -> ArmError:
    # message seen in the field (Enterprise-Scale troubleshooting: 404 on GET)
    return ArmError(status, "RoleDefinitionDoesNotExist",
                    f"The specified role definition with ID '{guid}' does not exist.")


def unsupported_filter(filter_: str) -> ArmError:
    return bad_request(f"The filter '{filter_}' is not supported. Supported filters are "
                       "atScope(), principalId eq '{id}' and assignedTo('{id}'), alone or "
                       "joined with 'and'.", "UnsupportedQuery")


@dataclass
class RoleAssignment:
    name: str  # a GUID
    scope: str
    role: RoleDefinition
    principal_id: str
    principal_type: str
    created_on: str
    created_by: str | None = None
    description: str | None = None
    # when it starts to grant (crossfed/azure/propagation.py); 0.0: at once
    effective_at: float = field(default=0.0, compare=False)

    @property
    def in_force(self) -> bool:
        return not pending(self.effective_at)

    def covers(self, scope: str) -> bool:
        return covers(self.scope, scope)

    def same_grant(self, other: RoleAssignment) -> bool:
        return (self.principal_id.lower() == other.principal_id.lower()
                and self.role.guid == other.role.guid
                and self.scope.rstrip("/").lower() == other.scope.rstrip("/").lower())

    @property
    def id(self) -> str:
        return f"{self.scope}{PROVIDER_PATH}/roleAssignments/{self.name}"


@dataclass(frozen=True)
class Grant:
    """Why a data action is allowed: the assignment that grants it."""

    assignment: RoleAssignment

    def describe(self, action: str) -> str:
        a = self.assignment
        return (f"role assignment {a.name} ({a.role.name}) at scope {a.scope} grants {action} "
                f"to principal id {a.principal_id}")


class RoleAssignments:
    """The subscription's role assignments; thread-safe."""

    def __init__(self, directory: Directory, tenant_id: str, subscription_id: str) -> None:
        self.directory, self.tenant_id = directory, tenant_id
        self.subscription_id = subscription_id
        self._assignments: dict[str, RoleAssignment] = {}  # by lower-case name
        self._lock = threading.RLock()

    @property
    def subscription_scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}"

    # -- role definitions

    def definition_id(self, role: RoleDefinition) -> str:
        return f"{self.subscription_scope}{PROVIDER_PATH}/roleDefinitions/{role.guid}"

    def definition_json(self, role: RoleDefinition, scope: str = "") -> dict[str, Any]:
        # CHOICE: a definition read at a resource group or resource is shown with the
        # subscription's id; at the tenant root with the tenant-level id.
        prefix = "" if not scope.strip("/") else self.subscription_scope
        return {
            "id": f"{prefix}{PROVIDER_PATH}/roleDefinitions/{role.guid}",
            "name": role.guid, "type": ROLE_DEFINITION_TYPE,
            "properties": {
                "roleName": role.name, "type": "BuiltInRole", "description": role.description,
                "assignableScopes": ["/"],
                "permissions": [{"actions": list(role.actions),
                                 "notActions": list(role.not_actions),
                                 "dataActions": list(role.data_actions),
                                 "notDataActions": list(role.not_data_actions)}],
                "createdOn": BUILT_IN_CREATED, "updatedOn": BUILT_IN_CREATED,
                "createdBy": None, "updatedBy": None,
            },
        }

    def get_definition(self, scope: str, guid: str) -> dict[str, Any]:
        role = BUILT_IN_ROLES.get(guid.lower())
        if role is None:
            raise definition_not_found(guid, 404)
        return self.definition_json(role, scope)

    def list_definitions(self, scope: str, filter_: str | None) -> dict[str, Any]:
        roles = list(BUILT_IN_ROLES.values())
        for part in re.split(r"\s+and\s+", filter_ or "", flags=re.IGNORECASE):
            if not part.strip():
                continue
            by_name, by_type = ROLE_NAME_FILTER.match(part), TYPE_FILTER.match(part)
            if by_name:
                roles = [r for r in roles if r.name.lower() == by_name.group(1).lower()]
            elif by_type:
                roles = [r for r in roles if by_type.group(1).lower() == "builtinrole"]
            else:
                raise bad_request(f"The filter '{filter_}' is not supported: use roleName eq "
                                  "'{name}' or type eq 'BuiltInRole'.", "UnsupportedQuery")
        return {"value": [self.definition_json(r, scope) for r in roles]}

    def _role_of(self, role_definition_id: str) -> RoleDefinition:
        """A role definition id of the tenant or this subscription, of a built-in role."""
        trimmed = role_definition_id.rstrip("/")
        guid = trimmed.rsplit("/", 1)[-1].lower()
        prefix = trimmed[:len(trimmed) - len(guid)].lower()
        allowed = {f"{PROVIDER_PATH}/roleDefinitions/".lower(),
                   f"{self.subscription_scope}{PROVIDER_PATH}/roleDefinitions/".lower()}
        role = BUILT_IN_ROLES.get(guid)
        if role is None or prefix not in allowed:
            raise definition_not_found(guid, 400)  # 400 on create (field: stand-in survey)
        return role

    # -- role assignments

    def assignment_json(self, a: RoleAssignment) -> dict[str, Any]:
        return {
            "id": a.id, "name": a.name, "type": ROLE_ASSIGNMENT_TYPE,
            "properties": {
                "roleDefinitionId": self.definition_id(a.role), "principalId": a.principal_id,
                "principalType": a.principal_type, "scope": a.scope,
                "condition": None, "conditionVersion": None, "description": a.description,
                "createdOn": a.created_on, "updatedOn": a.created_on,
                "createdBy": a.created_by, "updatedBy": a.created_by,
                "delegatedManagedIdentityResourceId": None,
            },
        }

    def seed(self, principal_id: str, role: str, scope: str | None = None) -> RoleAssignment:
        """An assignment made outside the API (the administrator's Owner at start), in force at
        once and listed like any other."""
        assignment = RoleAssignment(str(uuid.uuid4()), scope or self.subscription_scope,
                                    role_by_name(role), principal_id, "ServicePrincipal",
                                    _now())
        with self._lock:
            self._assignments[assignment.name] = assignment
        return assignment

    def _principal_type(self, principal_id: str, given: Any) -> str:
        principal = self.directory.by_object_id(principal_id)
        known = principal is not None and not pending(principal.known_at)
        if given is None:
            if not known:  # message as real ARM sends it (field: Azure/avdaccelerator#99)
                raise bad_request(
                    f"Principal {principal_id.replace('-', '')} does not exist in the "
                    f"directory {self.tenant_id}. Check that you have the correct principal "
                    "ID. If you are creating this principal and then immediately assigning a "
                    "role, this error might be related to a replication delay. In this case, "
                    "set the role assignment principalType property to a value, such as "
                    "ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                    "PrincipalNotFound")
            return "ServicePrincipal"  # every principal of the stand-ins' directory is one
        if not isinstance(given, str) or given.lower() not in {t.lower() for t in
                                                                 PRINCIPAL_TYPES}:
            raise bad_request(f"The principal type '{given}' is invalid; use one of "
                              f"{list(PRINCIPAL_TYPES)}.", "InvalidPrincipalType")
        spelled = next(t for t in PRINCIPAL_TYPES if t.lower() == given.lower())
        if known and spelled != "ServicePrincipal":  # code seen in the field; message ours
            raise bad_request(f"The PrincipalId '{principal_id}' has type 'ServicePrincipal', "
                              f"which is different from specified PrincipalType '{spelled}'.",
                              "UnmatchedPrincipalType")
        return spelled

    def put(self, scope: str, name: str, body: Any, caller: str,
            effective_at: Callable[[], float]) -> tuple[dict[str, Any], bool]:
        """Create; returns (assignment, created). `caller` is the writer's object id."""
        if not GUID.match(name):
            raise bad_request(f"The role assignment ID '{name}' is not valid. The role "
                              "assignment ID must be a GUID.", "InvalidRoleAssignmentId")
        properties = json_object(json_object(body, "the request body").get("properties"),
                                 "properties")
        role_definition_id = string(properties.get("roleDefinitionId"))
        principal_id = string(properties.get("principalId"))
        if role_definition_id is None or principal_id is None:
            raise bad_request("The request content was invalid and could not be deserialized: "
                              "properties.roleDefinitionId and properties.principalId are "
                              "required.", "InvalidRequestContent")
        if properties.get("condition"):
            raise bad_request("Role assignment conditions are not supported by the crossfed "
                              "ARM stand-in.", "InvalidRoleAssignmentRequest")
        if not GUID.match(principal_id):
            raise bad_request(f"The principal ID '{principal_id}' is not a valid GUID.",
                              "InvalidPrincipalId")
        role = self._role_of(role_definition_id)
        scope = scope.rstrip("/")
        with self._lock:
            principal_type = self._principal_type(principal_id, properties.get("principalType"))
            wanted = RoleAssignment(name.lower(), scope, role, principal_id, principal_type,
                                    _now(), caller, string(properties.get("description")))
            existing = self._assignments.get(name.lower())
            if existing is not None:
                if not existing.same_grant(wanted):  # message as real ARM (field)
                    raise bad_request("Tenant ID, application ID, principal ID, and scope are "
                                      "not allowed to be updated.",
                                      "RoleAssignmentUpdateNotPermitted")
                return self.assignment_json(existing), False
            if any(a.same_grant(wanted) for a in self._assignments.values()):
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already "
                               "exists.")
            wanted.effective_at = effective_at()
            self._assignments[wanted.name] = wanted
            return self.assignment_json(wanted), True

    def _named(self, scope: str, name: str) -> RoleAssignment | None:
        found = self._assignments.get(name.lower())
        if found is None or found.scope.rstrip("/").lower() != scope.rstrip("/").lower():
            return None
        return found

    def get(self, scope: str, name: str) -> dict[str, Any]:
        with self._lock:
            found = self._named(scope, name)
            if found is None:  # code as real ARM (field); message ours
                raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' "
                               "is not found.")
            return self.assignment_json(found)

    def delete(self, scope: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._named(scope, name)
            if found is None:
                return None
            del self._assignments[found.name]
            return self.assignment_json(found)

    def list(self, scope: str, filter_: str | None) -> dict[str, Any]:
        """No filter: at, above and below the scope; atScope(): at or above; principalId /
        assignedTo: that principal's, at, above or below (SDK docstrings of list_for_scope)."""
        at_scope, principal = False, None
        for part in re.split(r"\s+and\s+", filter_ or "", flags=re.IGNORECASE):
            if not part.strip():
                continue
            who = PRINCIPAL_FILTER.match(part)
            if AT_SCOPE.match(part):
                at_scope = True
            elif who:
                principal = (who.group(1) or who.group(2) or "").lower()
            else:
                raise unsupported_filter(filter_ or "")
        with self._lock:
            found = [a for a in self._assignments.values()
                     if (a.covers(scope) or (not at_scope and covers(scope, a.scope)))
                     and (principal is None or a.principal_id.lower() == principal)]
        return {"value": [self.assignment_json(a) for a in found]}

    def remove_under(self, scope: str) -> list[RoleAssignment]:
        """Drop the assignments at or below `scope` (the scope's resource is gone)."""
        with self._lock:
            gone = [a for a in self._assignments.values() if covers(scope, a.scope)]
            for assignment in gone:
                del self._assignments[assignment.name]
        return gone

    # -- decisions

    def _of(self, principal_id: str, scope: str) -> list[RoleAssignment]:
        with self._lock:
            return [a for a in self._assignments.values()
                    if a.principal_id.lower() == principal_id.lower() and a.covers(scope)]

    def allows(self, principal_id: str, action: str, scope: str) -> bool:
        """A control-plane action: an assignment in force whose role's actions allow it."""
        return any(a.in_force and a.role.allows(action) for a in self._of(principal_id, scope))

    def data_grant(self, principal_id: str, action: str, scope: str) -> Grant | None:
        """A data action (Key Vault): the assignment in force that grants it, if any."""
        for assignment in self._of(principal_id, scope):
            if assignment.in_force and assignment.role.allows_data(action):
                return Grant(assignment)
        return None

    def pending_grants(self, principal_id: str, action: str, scope: str) -> list[RoleAssignment]:
        """Assignments that will grant the data action once propagated (for diagnoses)."""
        return [a for a in self._of(principal_id, scope)
                if not a.in_force and a.role.allows_data(action)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
