"""Azure Resource Manager stand-in, the model: resource groups, user-assigned managed identities,
their federated identity credentials, Key Vault vaults (soft-deleted on delete) and role
assignments, as the management SDKs see them. No HTTP here: the handlers take parsed JSON and
return JSON-ready dicts, or raise ArmError.

Local simplifications (real ARM behaves otherwise; none of them changes what the SDKs send):
- Implicit resource groups (implicit_groups=True, the default): a PUT of an identity or vault
  into a group never PUT creates that group (in the resource's location, without tags), and
  reads in an unknown group find nothing; real ARM answers both with 404 ResourceGroupNotFound,
  as the stand-in does with implicit_groups=False. Groups PUT explicitly are real objects either
  way: GET/HEAD/DELETE/list with ARM's tag $filter.
- RBAC: role assignments (rbac.py, served as Microsoft.Authorization) of built-in roles only,
  at a scope that is a prefix of the request's path; assign_role() seeds them (the
  administrator's Owner), the API adds more. They decide ARM's actions and, for vaults with
  enableRbacAuthorization, Key Vault's data actions (Vault.rbac = vault_decider). Deleting a
  vault or a group drops the assignments at or below it.
- Managed clusters (AKS) are records registered by add_managed_cluster(), read-only.
- Names are case-insensitive, as in ARM; the casing of the first PUT is kept.
- Any date-shaped api-version from the type's first version on is accepted; real ARM answers
  versions it does not know with 400 NoRegisteredProviderFound, we keep no list of them.
- Writes complete at once: a vault PUT answers 201/200 with provisioningState Succeeded, so the
  SDK's poller finishes without polling. FIC writes are serialized by a lock, so the real 409
  ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity never happens.
- Vault delete soft-deletes (retention 90 days, purge protection off, as crossfed's vaults must
  be): the name answers 409 ConflictError until purged. Recovery (createMode "recover") is not
  served, and nothing purges at scheduledPurgeDate.
- Long-running operations (resource group delete, purge) are done when they answer: 202 with a
  Location whose GET answers 200, and Retry-After 0 so that the SDK's poller does not wait.
- Access policies keep key, certificate and storage permissions only for the ARM view; the model
  Vault (what the data plane enforces) holds secret permissions.
- Not served: PATCH on identities, vaults and groups, list of identities or vaults by
  subscription, resource group export and move.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from crossfed.azure.arm.clusters import ManagedCluster, ManagedClusters, cluster_not_found
from crossfed.azure.arm.common import (
    CREDENTIAL_TYPE,
    GROUP_TYPE,
    IDENTITY_TYPE,
    VAULT_TYPE,
    ArmError,
    bad_request,
    group_not_found,
    json_object,
    location_of,
    not_found,
    same_location,
    string,
    tags_of,
)
from crossfed.azure.arm.rbac import RoleAssignment, RoleAssignments
from crossfed.azure.arm.vaults import DeletedVault, VaultHost, VaultManager, VaultResource
from crossfed.azure.directory import (
    Directory,
    DirectoryError,
    FederatedCredential,
    ServicePrincipal,
)

# properties.isolationScope of an identity exists from this api-version on (SPECS
# stable/2024-11-30 IdentityGet.json): older versions neither take nor return it.
ISOLATION_SCOPE_API_VERSION = "2024-11-30"
ISOLATION_SCOPES = ("None", "Regional")

# ENTRA include: 3-120 alphanumerics, '-' and '_', starting alphanumeric; fields <= 600 chars.
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
CREDENTIAL_FIELD_MAX = 600
# Managed identity names: 3-128 alphanumerics, '-' and '_', starting alphanumeric.
IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")
# Resource groups: 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.
GROUP_NAME = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
# ARM's tag filter on resource groups: tagName eq 'x' [and tagValue eq 'y'].
TAG_FILTER = re.compile(r"^\s*tagName\s+eq\s+'([^']*)'(?:\s+and\s+tagValue\s+eq\s+'([^']*)')?\s*$",
                        re.IGNORECASE)
@dataclass
class UserAssignedIdentity:
    name: str
    resource_group: str
    location: str
    principal: ServicePrincipal
    tags: dict[str, str] = field(default_factory=dict)
    isolation_scope: str = "None"


@dataclass
class ResourceGroup:
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)


def has_isolation_scope(api_version: str | None) -> bool:
    return (api_version or "")[:10] >= ISOLATION_SCOPE_API_VERSION


def _isolation_scope(body: dict[str, Any]) -> str | None:
    """properties.isolationScope of a 2024-11-30+ identity PUT, or None when it names none."""
    properties = body.get("properties")
    value = properties.get("isolationScope") if isinstance(properties, dict) else None
    if value is None:
        return None
    scope = next((s for s in ISOLATION_SCOPES if isinstance(value, str)
                  and s.lower() == value.lower()), None)
    if scope is None:
        raise bad_request(f"The value '{value}' of properties.isolationScope is invalid; "
                          f"use one of {list(ISOLATION_SCOPES)}.")
    return scope


class ResourceManager(VaultManager):
    """ARM's view of one subscription; identities are also service principals in Directory."""

    def __init__(self, directory: Directory, tenant_id: str, subscription_id: str,
                 vault_host: VaultHost, implicit_groups: bool = True) -> None:
        self.directory, self.tenant_id = directory, tenant_id
        self.subscription_id, self.vault_host = subscription_id, vault_host
        self.implicit_groups = implicit_groups
        self._groups: dict[str, ResourceGroup] = {}
        self._identities: dict[tuple[str, str], UserAssignedIdentity] = {}
        self._vaults: dict[str, VaultResource] = {}  # by name: vault names are global
        self._deleted_vaults: dict[str, DeletedVault] = {}  # by name, until purged
        self._operations: set[str] = set()  # finished long-running operations
        self.rbac = RoleAssignments(directory, tenant_id, subscription_id)
        self.clusters = ManagedClusters(subscription_id)
        self._lock = threading.RLock()

    # -- role assignments (the model is crossfed/azure/arm/rbac.py)

    @property
    def subscription_scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}"

    def assign_role(self, principal_id: str, role: str = "Owner",
                    scope: str | None = None) -> RoleAssignment:
        """An assignment made outside the API (a built-in role's name or GUID), in force at
        once and listed by the Microsoft.Authorization API like any other."""
        return self.rbac.seed(principal_id, role, scope)

    def authorized(self, principal_id: str, action: str, scope: str) -> bool:
        return self.rbac.allows(principal_id, action, scope)

    # -- managed clusters (AKS records; crossfed/azure/arm/clusters.py)

    def add_managed_cluster(self, group: str, name: str, issuer_url: str,
                            location: str = "westeurope") -> None:
        with self._lock:
            if group.lower() not in self._groups:
                self._groups[group.lower()] = ResourceGroup(group, location)
            self.clusters.add(ManagedCluster(name, group, issuer_url, location))

    def get_managed_cluster(self, group: str, name: str) -> dict[str, Any]:
        with self._lock:
            if not self._group_for_read(group):
                raise cluster_not_found(group, name)
        return self.clusters.get(group, name)

    # -- resource groups

    def group_id(self, name: str) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{name}"

    def group_json(self, group: ResourceGroup) -> dict[str, Any]:
        return {"id": self.group_id(group.name), "name": group.name, "type": GROUP_TYPE,
                "location": group.location, "tags": dict(group.tags),
                "properties": {"provisioningState": "Succeeded"}}

    def _group(self, name: str) -> ResourceGroup:
        group = self._groups.get(name.lower())
        if group is None:
            raise group_not_found(name)
        return group

    def _group_for_write(self, name: str, location: str) -> None:
        """A resource PUT needs its group: 404, or created implicitly (local relaxation)."""
        if name.lower() in self._groups:
            return
        if not self.implicit_groups:
            raise group_not_found(name)
        self._groups[name.lower()] = ResourceGroup(name, location)

    def _group_for_read(self, name: str) -> bool:
        """False when the group does not exist and reads should find nothing (implicit)."""
        if name.lower() in self._groups:
            return True
        if not self.implicit_groups:
            raise group_not_found(name)
        return False

    def put_group(self, name: str, body: Any) -> tuple[dict[str, Any], bool]:
        if not GROUP_NAME.match(name):  # code assumed
            raise bad_request(f"Resource group name '{name}' is invalid: use 1-90 letters, "
                              "digits, '_', '-', '.', '(' or ')', not ending in '.'.",
                              "InvalidResourceGroupName")
        body = json_object(body, "the request body")
        location, tags = location_of(body), tags_of(body)
        with self._lock:
            group = self._groups.get(name.lower())
            if group is not None:
                if not same_location(group.location, location):  # code seen in the field
                    raise ArmError(409, "InvalidResourceGroupLocation", f"Invalid resource "
                                   f"group location '{location}'. The Resource group already "
                                   f"exists in location '{group.location}'.")
                group.tags = tags
                return self.group_json(group), False
            group = ResourceGroup(name, location, tags)
            self._groups[name.lower()] = group
            return self.group_json(group), True

    def get_group(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.group_json(self._group(name))

    def group_exists(self, name: str) -> bool:
        with self._lock:
            return name.lower() in self._groups

    def list_groups(self, filter_: str | None) -> dict[str, Any]:
        tag: tuple[str, str | None] | None = None
        if filter_:
            found = TAG_FILTER.match(filter_)
            if found is None:  # code assumed
                raise bad_request(f"The $filter '{filter_}' is not supported: use "
                                  "\"tagName eq 'name'\" optionally followed by \"and tagValue "
                                  "eq 'value'\".", "InvalidFilterInQueryString")
            tag = (found.group(1), found.group(2))
        with self._lock:
            groups = list(self._groups.values())
        if tag is not None:
            name, value = tag  # tag names ignore case, values do not
            groups = [g for g in groups if any(
                k.lower() == name.lower() and (value is None or v == value)
                for k, v in g.tags.items())]
        return {"value": [self.group_json(g) for g in groups]}

    def delete_group(self, name: str) -> str:
        """Deletes the group and what it holds (identities with their credentials; vaults are
        soft-deleted); returns the id of the finished operation."""
        with self._lock:
            group = self._group(name)
            for key in [k for k in self._identities if k[0] == group.name.lower()]:
                self.delete_identity(self._identities[key].resource_group, key[1])
            for resource in [r for r in self._vaults.values()
                             if r.resource_group.lower() == group.name.lower()]:
                self.delete_vault(resource.resource_group, resource.name)
            del self._groups[group.name.lower()]
            # CHOICE: assignments at the group (and below it) go with it, as the vault's do
            self.rbac.remove_under(self.group_id(group.name))
            return self.finished_operation()

    # -- long-running operations

    def finished_operation(self) -> str:
        operation = uuid.uuid4().hex.upper()
        with self._lock:
            self._operations.add(operation)
        return operation

    def operation_done(self, operation: str) -> bool:
        with self._lock:
            return operation in self._operations

    # -- subscription and ids

    def check_subscription(self, subscription_id: str) -> None:
        if subscription_id.lower() != self.subscription_id.lower():
            raise ArmError(404, "SubscriptionNotFound",
                           f"The subscription '{subscription_id}' could not be found.")

    def identity_id(self, group: str, name: str) -> str:
        # the MSI provider spells "resourcegroups" in lower case (SPECS IdentityGet.json)
        return (f"/subscriptions/{self.subscription_id}/resourcegroups/{group}/providers/"
                f"{IDENTITY_TYPE}/{name}")

    def vault_id(self, group: str, name: str) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/"
                f"{VAULT_TYPE}/{name}")

    # -- user-assigned identities

    def _identity(self, group: str, name: str) -> UserAssignedIdentity:
        self._group_for_read(group)
        identity = self._identities.get((group.lower(), name.lower()))
        if identity is None:
            raise not_found(IDENTITY_TYPE, name, group)
        return identity

    def identity_json(self, identity: UserAssignedIdentity,
                      api_version: str | None = None) -> dict[str, Any]:
        principal = identity.principal
        properties = {"tenantId": principal.tenant_id, "principalId": principal.object_id,
                      "clientId": principal.client_id}
        if has_isolation_scope(api_version):
            properties["isolationScope"] = identity.isolation_scope
        return {
            "id": self.identity_id(identity.resource_group, identity.name),
            "name": identity.name, "type": IDENTITY_TYPE, "location": identity.location,
            "tags": dict(identity.tags), "properties": properties,
        }

    def put_identity(self, group: str, name: str, body: Any,
                     api_version: str | None = None) -> tuple[dict[str, Any], bool]:
        """Returns (resource, created). A PUT on an existing identity keeps its ids."""
        if not IDENTITY_NAME.match(name):  # code assumed: ARM's generic name error
            raise bad_request(f"Resource name '{name}' is invalid: use 3-128 letters, digits, "
                              "'-' or '_', starting with a letter or digit.",
                              "InvalidResourceName")
        body = json_object(body, "the request body")
        location, tags = location_of(body), tags_of(body)
        scope = _isolation_scope(body) if has_isolation_scope(api_version) else None
        with self._lock:
            self._group_for_write(group, location)
            identity = self._identities.get((group.lower(), name.lower()))
            if identity is not None:
                self._check_location(identity.name, identity.location, group, location)
                identity.tags = tags
                if scope is not None:
                    identity.isolation_scope = scope
                return self.identity_json(identity, api_version), False
            principal = ServicePrincipal(self.tenant_id, name,
                                         known_at=self.directory.propagation.effective_at())
            self.directory.add(principal)
            identity = UserAssignedIdentity(name, group, location, principal, tags,
                                            scope or "None")
            self._identities[(group.lower(), name.lower())] = identity
            return self.identity_json(identity, api_version), True

    @staticmethod
    def _check_location(name: str, current: str, group: str, wanted: str) -> None:
        if not same_location(current, wanted):  # status assumed; code seen in the field
            raise ArmError(409, "InvalidResourceLocation", f"The resource '{name}' already "
                           f"exists in location '{current}' in resource group '{group}'. A "
                           f"resource with the same name cannot be created in location "
                           f"'{wanted}'. Please select a new resource name.")

    def get_identity(self, group: str, name: str,
                     api_version: str | None = None) -> dict[str, Any]:
        with self._lock:
            return self.identity_json(self._identity(group, name), api_version)

    def delete_identity(self, group: str, name: str) -> bool:
        """Removes the service principal (and with it its FICs); False if there was none."""
        with self._lock:
            self._group_for_read(group)
            identity = self._identities.pop((group.lower(), name.lower()), None)
            if identity is None:
                return False
            self.directory.remove(identity.principal.tenant_id, identity.principal.client_id)
            return True

    def list_identities(self, group: str, api_version: str | None = None) -> dict[str, Any]:
        with self._lock:
            self._group_for_read(group)
            found = [self.identity_json(i, api_version) for (g, _), i in self._identities.items()
                     if g == group.lower()]
        return {"value": found}

    # -- federated identity credentials

    def credential_json(self, identity: UserAssignedIdentity,
                        credential: FederatedCredential) -> dict[str, Any]:
        base = self.identity_id(identity.resource_group, identity.name)
        return {
            "id": f"{base}/federatedIdentityCredentials/{credential.name}",
            "name": credential.name, "type": CREDENTIAL_TYPE,
            "properties": {"issuer": credential.issuer, "subject": credential.subject,
                           "audiences": list(credential.audiences)},
        }

    @staticmethod
    def _stored_name(identity: UserAssignedIdentity, name: str) -> str | None:
        credentials = identity.principal.federated_credentials
        return next((n for n in credentials if n.lower() == name.lower()), None)

    def _credential(self, group: str, identity_name: str,
                    name: str) -> tuple[UserAssignedIdentity, FederatedCredential]:
        identity = self._identity(group, identity_name)
        stored = self._stored_name(identity, name)
        if stored is None:
            raise not_found(f"{IDENTITY_TYPE}/{identity.name}/federatedIdentityCredentials",
                            name, group)
        return identity, identity.principal.federated_credentials[stored]

    @staticmethod
    def parse_credential(name: str, body: Any) -> FederatedCredential:
        if not CREDENTIAL_NAME.match(name):
            raise bad_request(f"The federated identity credential name '{name}' is invalid: use "
                              "3-120 letters, digits, '-' or '_', starting with a letter or "
                              "digit.")
        properties = json_object(body, "the request body").get("properties")
        if not isinstance(properties, dict):
            properties = {}
        issuer, subject = string(properties.get("issuer")), string(properties.get("subject"))
        audiences = properties.get("audiences")
        if issuer is None or subject is None or not isinstance(audiences, list) or not all(
                isinstance(a, str) for a in audiences):
            # the message real ARM sends for a FIC lacking these (seen in the field)
            raise bad_request("The request format was unexpected. Federated Identity "
                              "Credential must specify 'issuer', 'subject' and 'audience'.")
        if properties.get("claimsMatchingExpression") is not None:
            raise bad_request("Flexible federated identity credentials "
                              "(claimsMatchingExpression) are not supported for managed "
                              "identities.")
        too_long = [f for f in (issuer, subject, *audiences) if len(f) > CREDENTIAL_FIELD_MAX]
        if too_long:
            raise bad_request(f"Federated identity credential fields are limited to "
                              f"{CREDENTIAL_FIELD_MAX} characters.")
        return FederatedCredential(name, issuer, subject, list(audiences))

    def put_credential(self, group: str, identity_name: str, name: str,
                       body: Any) -> tuple[dict[str, Any], bool]:
        """Directory enforces one audience, unique issuer+subject and at most 20 per identity.

        All three map to 400 BadRequest, the 21st included: the ENTRA "Errors" list keeps 409
        for concurrent writes (a retry helps) and a quota breach is not that; 409 would also
        surface in the SDK as ResourceExistsError, which misleads.
        """
        credential = self.parse_credential(name, body)
        with self._lock:
            identity = self._identity(group, identity_name)  # 404 ResourceNotFound
            credential.name = self._stored_name(identity, name) or name
            try:
                created = self.directory.put_federated_credential(identity.principal, credential)
            except DirectoryError as error:
                raise bad_request(error.message) from error
            return self.credential_json(identity, credential), created

    def get_credential(self, group: str, identity_name: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self.credential_json(*self._credential(group, identity_name, name))

    def delete_credential(self, group: str, identity_name: str, name: str) -> bool:
        with self._lock:
            identity = self._identity(group, identity_name)
            stored = self._stored_name(identity, name)
            return stored is not None and self.directory.delete_federated_credential(
                identity.principal, stored)

    def list_credentials(self, group: str, identity_name: str) -> dict[str, Any]:
        with self._lock:
            identity = self._identity(group, identity_name)
            credentials = list(identity.principal.federated_credentials.values())
            return {"value": [self.credential_json(identity, c) for c in credentials]}
