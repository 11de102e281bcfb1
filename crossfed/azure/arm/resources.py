"""Azure Resource Manager stand-in, the model: user-assigned managed identities, their federated
identity credentials and Key Vault vaults, as the management SDKs see them. No HTTP here: the
handlers take parsed JSON and return JSON-ready dicts, or raise ArmError.

Local simplifications (real ARM behaves otherwise; none of them changes what the SDKs send):
- Resource groups are implicit: any name is accepted and nothing lists or deletes them, so there
  is no ResourceGroupNotFound. Only the subscription is checked (404 SubscriptionNotFound).
- No RBAC: every principal of the tenant with a valid management token acts as Owner.
- Names are case-insensitive, as in ARM; the casing of the first PUT is kept.
- Any date-shaped api-version from the type's first version on is accepted; real ARM answers
  versions it does not know with 400 NoRegisteredProviderFound, we keep no list of them.
- Writes complete at once: a vault PUT answers 201/200 with provisioningState Succeeded, so the
  SDK's poller finishes without polling. FIC writes are serialized by a lock, so the real 409
  ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity never happens.
- Vault delete purges at once (no soft delete): the name is free again immediately.
- Access policies keep key, certificate and storage permissions only for the ARM view; the model
  Vault (what the data plane enforces) holds secret permissions.
- Not served: PATCH on identities and vaults, list by subscription, deleted vaults, operations.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from crossfed.azure.directory import (
    Directory,
    DirectoryError,
    FederatedCredential,
    ServicePrincipal,
)
from crossfed.azure.keyvault.model import SECRET_PERMISSIONS, AccessPolicy, Vault

IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
CREDENTIAL_TYPE = IDENTITY_TYPE + "/federatedIdentityCredentials"
VAULT_TYPE = "Microsoft.KeyVault/vaults"
ACCESS_POLICY_TYPE = VAULT_TYPE + "/accessPolicies"

# First api-version of each type (SPECS msi and keyvault folders); FICs arrived in 2022.
FIRST_API_VERSION = {
    IDENTITY_TYPE: "2015-08-31-preview",
    CREDENTIAL_TYPE: "2022-01-31-preview",
    VAULT_TYPE: "2015-06-01",
    ACCESS_POLICY_TYPE: "2015-06-01",
}
API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")
# properties.isolationScope of an identity exists from this api-version on (SPECS
# stable/2024-11-30 IdentityGet.json): older versions neither take nor return it.
ISOLATION_SCOPE_API_VERSION = "2024-11-30"
ISOLATION_SCOPES = ("None", "Regional")

# ENTRA include: 3-120 alphanumerics, '-' and '_', starting alphanumeric; fields <= 600 chars.
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
CREDENTIAL_FIELD_MAX = 600
# Managed identity names: 3-128 alphanumerics, '-' and '_', starting alphanumeric.
IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")
# Key Vault: 3-24 chars, starts with a letter, ends with a letter or digit, no "--".
VAULT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
SKU_NAMES = ("standard", "premium")
POLICY_KINDS = ("add", "replace", "remove")
OTHER_PERMISSION_KINDS = ("keys", "certificates", "storage")
SECRET_PERMISSION_NAMES = frozenset((*SECRET_PERMISSIONS, "all"))

PolicyKey = tuple[str, str, str]  # (tenant id, object id, application id or "")


class ArmError(Exception):
    """An ARM error response: status, code and message of {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class VaultHost(Protocol):
    """The Key Vault data plane as ARM drives it (KeyVaultFleet implements it)."""

    def open_vault(self, vault: Vault) -> str:
        """Start serving the vault; returns its data-plane URI."""
        ...

    def close_vault(self, vault: Vault) -> None:
        ...


@dataclass
class UserAssignedIdentity:
    name: str
    resource_group: str
    location: str
    principal: ServicePrincipal
    tags: dict[str, str] = field(default_factory=dict)
    isolation_scope: str = "None"


@dataclass
class VaultResource:
    name: str
    resource_group: str
    vault: Vault
    sku: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)
    # keys/certificates/storage permissions per policy; secrets live on vault.access_policies
    other_permissions: dict[PolicyKey, dict[str, list[str]]] = field(default_factory=dict)


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


def bad_request(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)


def not_found(resource_type: str, name: str, group: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource '{resource_type}/{name}' under "
                    f"resource group '{group}' was not found.")


def check_api_version(resource_type: str, api_version: str | None) -> None:
    if not api_version:
        raise bad_request("The api-version query parameter (?api-version=) is required for all "
                          "requests.", "MissingApiVersionParameter")
    match = API_VERSION.match(api_version)
    first = FIRST_API_VERSION[resource_type]
    if match is None or match.group(1) < first[:10]:
        raise bad_request(f"No registered resource provider found for API version "
                          f"'{api_version}' for type '{resource_type}'. This stand-in serves "
                          f"versions from '{first}' on.", "NoRegisteredProviderFound")


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


def _same_location(a: str, b: str) -> bool:
    """ARM treats 'West Europe' and 'westeurope' as one location."""
    return a.replace(" ", "").lower() == b.replace(" ", "").lower()


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"The request content was invalid and could not be deserialized: "
                          f"{what} must be a JSON object.", "InvalidRequestContent")
    return value


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _location(body: dict[str, Any]) -> str:
    location = _string(body.get("location"))
    if location is None:  # ARM code for tracked resources without location (assumed)
        raise bad_request("The location property is required for this definition.",
                          "LocationRequired")
    return location


def _tags(body: dict[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise bad_request("The request content was invalid and could not be deserialized: "
                          "tags must map names to strings.", "InvalidRequestContent")
    return dict(tags)


def _union(current: list[str], added: list[str]) -> list[str]:
    """Permissions are case-insensitive: keep the first spelling, drop repeats."""
    seen = {p.lower() for p in current}
    merged = list(current)
    for permission in added:
        if permission.lower() not in seen:
            seen.add(permission.lower())
            merged.append(permission)
    return merged


def _permission_list(permissions: dict[str, Any], kind: str) -> list[str]:
    values = permissions.get(kind) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise bad_request(f"Access policy permissions.{kind} must be a list of strings.")
    return _union([], values)


def parse_policy(entry: Any) -> PolicyEntry:
    entry = _object(entry, "an access policy entry")
    tenant_id, object_id = _string(entry.get("tenantId")), _string(entry.get("objectId"))
    permissions = entry.get("permissions")
    if tenant_id is None or object_id is None or not isinstance(permissions, dict):
        raise bad_request("An access policy entry must specify 'tenantId', 'objectId' and "
                          "'permissions'.")
    secrets = _permission_list(permissions, "secrets")
    unknown = [p for p in secrets if p.lower() not in SECRET_PERMISSION_NAMES]
    if unknown:
        raise bad_request(f"Invalid secret permissions {unknown}; allowed: "
                          f"{sorted(SECRET_PERMISSION_NAMES)}.")
    others = {kind: _permission_list(permissions, kind) for kind in OTHER_PERMISSION_KINDS
              if kind in permissions}
    return PolicyEntry(tenant_id, object_id, _string(entry.get("applicationId")), secrets,
                       others)


def parse_policies(value: Any) -> list[PolicyEntry]:
    if not isinstance(value, list):
        raise bad_request("The parameter accessPolicies must be a list (it may be empty).")
    return [parse_policy(entry) for entry in value]


class ResourceManager:
    """ARM's view of one subscription; identities are also service principals in Directory."""

    def __init__(self, directory: Directory, tenant_id: str, subscription_id: str,
                 vault_host: VaultHost) -> None:
        self.directory, self.tenant_id = directory, tenant_id
        self.subscription_id, self.vault_host = subscription_id, vault_host
        self._identities: dict[tuple[str, str], UserAssignedIdentity] = {}
        self._vaults: dict[str, VaultResource] = {}  # by name: vault names are global
        self._lock = threading.RLock()

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
        body = _object(body, "the request body")
        location, tags = _location(body), _tags(body)
        scope = _isolation_scope(body) if has_isolation_scope(api_version) else None
        with self._lock:
            identity = self._identities.get((group.lower(), name.lower()))
            if identity is not None:
                self._check_location(identity.name, identity.location, group, location)
                identity.tags = tags
                if scope is not None:
                    identity.isolation_scope = scope
                return self.identity_json(identity, api_version), False
            principal = self.directory.add(ServicePrincipal(self.tenant_id, name))
            identity = UserAssignedIdentity(name, group, location, principal, tags,
                                            scope or "None")
            self._identities[(group.lower(), name.lower())] = identity
            return self.identity_json(identity, api_version), True

    @staticmethod
    def _check_location(name: str, current: str, group: str, wanted: str) -> None:
        if not _same_location(current, wanted):  # status assumed; code seen in the field
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
            identity = self._identities.pop((group.lower(), name.lower()), None)
            if identity is None:
                return False
            self.directory.remove(identity.principal.tenant_id, identity.principal.client_id)
            return True

    def list_identities(self, group: str, api_version: str | None = None) -> dict[str, Any]:
        with self._lock:
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
        properties = _object(body, "the request body").get("properties")
        if not isinstance(properties, dict):
            properties = {}
        issuer, subject = _string(properties.get("issuer")), _string(properties.get("subject"))
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

    # -- vaults

    def _vault(self, group: str, name: str) -> VaultResource:
        resource = self._vaults.get(name.lower())
        if resource is None or resource.resource_group.lower() != group.lower():
            raise not_found(VAULT_TYPE, name, group)
        return resource

    def policies_json(self, resource: VaultResource) -> list[dict[str, Any]]:
        with resource.vault.lock:
            policies = list(resource.vault.access_policies)
        rendered = []
        for policy in policies:
            key = policy_key(policy.tenant_id, policy.object_id, policy.application_id)
            permissions = {**resource.other_permissions.get(key, {}),
                           "secrets": list(policy.secret_permissions)}
            entry: dict[str, Any] = {"tenantId": policy.tenant_id, "objectId": policy.object_id,
                                     "permissions": permissions}
            if policy.application_id:
                entry["applicationId"] = policy.application_id
            rendered.append(entry)
        return rendered

    def vault_json(self, resource: VaultResource) -> dict[str, Any]:
        vault = resource.vault
        return {
            "id": self.vault_id(resource.resource_group, resource.name),
            "name": resource.name, "type": VAULT_TYPE, "location": vault.location,
            "tags": dict(resource.tags),
            "properties": {
                "tenantId": vault.tenant_id, "sku": dict(resource.sku),
                "accessPolicies": self.policies_json(resource),
                "enableRbacAuthorization": vault.enable_rbac_authorization,
                "vaultUri": vault.uri, "provisioningState": "Succeeded",
            },
        }

    @staticmethod
    def _check_vault_name(name: str) -> None:
        if not VAULT_NAME.match(name) or "--" in name:
            raise bad_request(f"The vault name '{name}' is invalid. A vault's name must be "
                              "between 3-24 alphanumeric characters. The name must begin with "
                              "a letter, end with a letter or digit, and not contain "
                              "consecutive hyphens.", "VaultNameNotValid")

    @staticmethod
    def _parse_vault(body: Any) -> tuple[str, dict[str, Any], dict[str, str], list[PolicyEntry]]:
        body = _object(body, "the request body")
        location = _location(body)
        properties = _object(body.get("properties"), "properties")
        sku = properties.get("sku")
        if _string(properties.get("tenantId")) is None:
            raise bad_request("The parameter properties.tenantId is required.")
        if not isinstance(sku, dict) or str(sku.get("family")) != "A" or str(
                sku.get("name", "")).lower() not in SKU_NAMES:
            raise bad_request("The parameter properties.sku must be {\"family\": \"A\", "
                              "\"name\": \"standard\" or \"premium\"}.")
        if "accessPolicies" not in properties:  # SDK doc: required unless createMode recover
            raise bad_request("The parameter properties.accessPolicies is required (it may be "
                              "an empty list).")
        policies = parse_policies(properties["accessPolicies"])
        return location, properties, {"family": "A", "name": str(sku["name"]).lower()}, policies

    def put_vault(self, group: str, name: str, body: Any) -> tuple[dict[str, Any], bool]:
        """Create (register and open on the data plane) or update; returns (resource, created)."""
        self._check_vault_name(name)
        location, properties, sku, policies = self._parse_vault(body)
        tags = _tags(body)
        rbac = properties.get("enableRbacAuthorization") is True
        with self._lock:
            resource = self._vaults.get(name.lower())
            if resource is not None and resource.resource_group.lower() != group.lower():
                raise ArmError(409, "VaultAlreadyExists", f"The vault name '{name}' is already "
                               "in use. Vault names are globally unique.")
            if resource is None:
                vault = Vault(name, properties["tenantId"], location,
                              enable_rbac_authorization=rbac)
                resource = VaultResource(name, group, vault, sku, tags)
                self._set_policies(resource, policies)
                vault.uri = self.vault_host.open_vault(vault)
                self._vaults[name.lower()] = resource
                return self.vault_json(resource), True
            self._check_location(resource.name, resource.vault.location, group, location)
            resource.sku, resource.tags = sku, tags
            with resource.vault.lock:
                resource.vault.tenant_id = properties["tenantId"]
                resource.vault.enable_rbac_authorization = rbac
            self._set_policies(resource, policies)  # PUT replaces the whole list
            return self.vault_json(resource), False

    def get_vault(self, group: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self.vault_json(self._vault(group, name))

    def delete_vault(self, group: str, name: str) -> bool:
        """Closes the data plane and forgets the vault (purged, no soft delete)."""
        with self._lock:
            try:
                resource = self._vault(group, name)
            except ArmError:
                return False
            del self._vaults[name.lower()]
        self.vault_host.close_vault(resource.vault)
        return True

    def list_vaults(self, group: str) -> dict[str, Any]:
        with self._lock:
            found = [self.vault_json(r) for r in self._vaults.values()
                     if r.resource_group.lower() == group.lower()]
        return {"value": found}

    # -- access policies

    @staticmethod
    def _set_policies(resource: VaultResource, entries: list[PolicyEntry]) -> None:
        with resource.vault.lock:
            resource.vault.access_policies = [
                AccessPolicy(e.tenant_id, e.object_id, list(e.secrets), e.application_id)
                for e in entries]
        resource.other_permissions = {e.key: dict(e.others) for e in entries}

    def update_access_policy(self, group: str, name: str, kind: str,
                             body: Any) -> dict[str, Any]:
        """add merges permissions into the matching entry (or appends it); replace sets the
        matching entry's permissions (or appends it); remove drops matching entries. Entries
        match on tenantId + objectId + applicationId. (Semantics of replace/remove assumed.)"""
        if kind.lower() not in POLICY_KINDS:
            raise bad_request(f"The operation kind '{kind}' is invalid; use one of "
                              f"{list(POLICY_KINDS)}.")
        properties = _object(_object(body, "the request body").get("properties"), "properties")
        entries = parse_policies(properties.get("accessPolicies"))
        with self._lock:
            resource = self._vault(group, name)
            for entry in entries:
                self._apply_policy(resource, kind.lower(), entry)
            return {
                "id": self.vault_id(resource.resource_group, resource.name) + "/accessPolicies/",
                "type": ACCESS_POLICY_TYPE,
                "properties": {"accessPolicies": properties["accessPolicies"]},
            }

    @staticmethod
    def _apply_policy(resource: VaultResource, kind: str, entry: PolicyEntry) -> None:
        with resource.vault.lock:
            policies = resource.vault.access_policies
            match = next((p for p in policies if policy_key(
                p.tenant_id, p.object_id, p.application_id) == entry.key), None)
            if kind == "remove":
                if match is not None:
                    policies.remove(match)
                resource.other_permissions.pop(entry.key, None)
                return
            if match is None:
                policies.append(AccessPolicy(entry.tenant_id, entry.object_id,
                                             list(entry.secrets), entry.application_id))
                resource.other_permissions[entry.key] = dict(entry.others)
                return
            others = resource.other_permissions.setdefault(entry.key, {})
            if kind == "replace":
                match.secret_permissions = list(entry.secrets)
                others.clear()
                others.update(entry.others)
                return
            match.secret_permissions = _union(match.secret_permissions, entry.secrets)
            for other_kind, values in entry.others.items():
                others[other_kind] = _union(others.get(other_kind, []), values)
