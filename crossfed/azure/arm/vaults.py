"""Key Vault vaults in the ARM stand-in's model: create/update (opening the data plane),
soft delete (the name stays taken until purged, the vault's role assignments go), deleted
vaults with list/get/purge, and access policies (PUT replaces, accessPolicies/{add|replace|
remove} edits; new or changed entries propagate). A mixin of ResourceManager (resources.py),
which owns the lock, the groups and the ids; see its docstring for the local simplifications.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from crossfed.azure.arm.access_policies import (
    POLICY_KINDS,
    PolicyEntry,
    PolicyKey,
    parse_policies,
    policy_key,
    union,
)
from crossfed.azure.arm.common import (
    ACCESS_POLICY_TYPE,
    DELETED_VAULT_TYPE,
    VAULT_TYPE,
    ArmError,
    bad_request,
    json_object,
    location_name,
    location_of,
    not_found,
    same_location,
    string,
    tags_of,
    timestamp,
)
from crossfed.azure.arm.rbac import RoleAssignments
from crossfed.azure.directory import Directory
from crossfed.azure.keyvault.model import AccessPolicy, RbacVerdict, Vault

# Key Vault: 3-24 chars, starts with a letter, ends with a letter or digit, no "--".
VAULT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
SOFT_DELETE_RETENTION_DAYS = 90  # the default, and what a vault PUT without the field gets
SKU_NAMES = ("standard", "premium")


class VaultHost(Protocol):
    """The Key Vault data plane as ARM drives it (KeyVaultFleet implements it)."""

    def open_vault(self, vault: Vault) -> str:
        """Start serving the vault; returns its data-plane URI."""
        ...

    def close_vault(self, vault: Vault) -> None:
        ...


@dataclass
class VaultResource:
    name: str
    resource_group: str
    vault: Vault
    sku: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)
    retention_days: int = SOFT_DELETE_RETENTION_DAYS
    # keys/certificates/storage permissions per policy; secrets live on vault.access_policies
    other_permissions: dict[PolicyKey, dict[str, list[str]]] = field(default_factory=dict)


@dataclass
class DeletedVault:
    """A soft-deleted vault: its name stays taken until purged."""

    resource: VaultResource
    deletion_date: datetime
    vault_id: str

    @property
    def scheduled_purge_date(self) -> datetime:
        return self.deletion_date + timedelta(days=self.resource.retention_days)


def retention_days(properties: dict[str, Any]) -> int | None:
    """softDeleteRetentionInDays: 7-90, set at creation (facts: soft-delete-overview.md)."""
    value = properties.get("softDeleteRetentionInDays")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 7 <= value <= 90:
        raise bad_request("The parameter properties.softDeleteRetentionInDays must be between 7 "
                          "and 90.")
    return value


class VaultManager:
    """The vault half of ResourceManager."""

    # provided by ResourceManager
    directory: Directory
    subscription_id: str
    vault_host: VaultHost
    rbac: RoleAssignments
    _lock: threading.RLock
    _vaults: dict[str, VaultResource]  # by name: vault names are global
    _deleted_vaults: dict[str, DeletedVault]  # by name, until purged

    def _group_for_read(self, name: str) -> bool:
        raise NotImplementedError

    def _group_for_write(self, name: str, location: str) -> None:
        raise NotImplementedError

    def vault_id(self, group: str, name: str) -> str:
        raise NotImplementedError

    def finished_operation(self) -> str:
        raise NotImplementedError

    @staticmethod
    def _check_location(name: str, current: str, group: str, wanted: str) -> None:
        raise NotImplementedError

    # -- vaults

    def vault_decider(self, object_id: str, action: str, scope: str) -> RbacVerdict:
        """Key Vault's RBAC decision for a data action at a vault (or secret) scope."""
        grant = self.rbac.data_grant(object_id, action, scope)
        if grant is not None:
            return RbacVerdict(True, grant.describe(action))
        waiting = self.rbac.pending_grants(object_id, action, scope)
        if waiting:
            names = ", ".join(f"{a.name} ({a.role.name} at {a.scope})" for a in waiting)
            return RbacVerdict(False, f"role assignment {names} would grant {action} to "
                               f"principal id {object_id} but has not propagated yet; retry")
        return RbacVerdict(False, f"no role assignment of principal id {object_id} at {scope} "
                           f"or above grants {action}; assign Key Vault Secrets User (read) or "
                           "Key Vault Secrets Officer (write) at the vault. Owner and "
                           "Contributor grant no data actions")

    def _vault(self, group: str, name: str) -> VaultResource:
        self._group_for_read(group)
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
                "enableSoftDelete": True, "softDeleteRetentionInDays": resource.retention_days,
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
        body = json_object(body, "the request body")
        location = location_of(body)
        properties = json_object(body.get("properties"), "properties")
        sku = properties.get("sku")
        if string(properties.get("tenantId")) is None:
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
        tags = tags_of(body)
        rbac = properties.get("enableRbacAuthorization") is True
        retention = retention_days(properties)
        with self._lock:
            self._group_for_write(group, location)
            if name.lower() in self._deleted_vaults:  # message as real ARM sends it (field)
                raise ArmError(409, "ConflictError", "A vault with the same name already exists "
                               "in deleted state. You need to either recover or purge existing "
                               "key vault. Follow this link "
                               "https://go.microsoft.com/fwlink/?linkid=2149745 for more "
                               "information on soft delete.")
            resource = self._vaults.get(name.lower())
            if resource is not None and resource.resource_group.lower() != group.lower():
                raise ArmError(409, "VaultAlreadyExists", f"The vault name '{name}' is already "
                               "in use. Vault names are globally unique.")
            if resource is None:
                vault = Vault(name, properties["tenantId"], location,
                              enable_rbac_authorization=rbac,
                              resource_id=self.vault_id(group, name),
                              rbac=self.vault_decider)
                resource = VaultResource(name, group, vault, sku, tags, retention or
                                         SOFT_DELETE_RETENTION_DAYS)
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
        """Closes the data plane and soft-deletes the vault: its name stays taken until purged."""
        with self._lock:
            self._group_for_read(group)
            resource = self._vaults.get(name.lower())
            if resource is None or resource.resource_group.lower() != group.lower():
                return False
            del self._vaults[name.lower()]
            vault_id = self.vault_id(resource.resource_group, resource.name)
            self._deleted_vaults[name.lower()] = DeletedVault(
                resource, datetime.now(UTC).replace(microsecond=0), vault_id)
            # facts (cloud tier, section 4): soft delete removes the vault's role
            # assignments, and recovery would not restore them
            self.rbac.remove_under(vault_id)
        self.vault_host.close_vault(resource.vault)
        return True

    def list_vaults(self, group: str) -> dict[str, Any]:
        with self._lock:
            if not self._group_for_read(group):
                return {"value": []}
            found = [self.vault_json(r) for r in self._vaults.values()
                     if r.resource_group.lower() == group.lower()]
        return {"value": found}

    # -- soft-deleted vaults

    def deleted_vault_json(self, deleted: DeletedVault) -> dict[str, Any]:
        resource = deleted.resource
        location = location_name(resource.vault.location)
        return {
            "id": (f"/subscriptions/{self.subscription_id}/providers/Microsoft.KeyVault/"
                   f"locations/{location}/deletedVaults/{resource.name}"),
            "name": resource.name, "type": DELETED_VAULT_TYPE,
            "properties": {
                "vaultId": deleted.vault_id, "location": location,
                "deletionDate": timestamp(deleted.deletion_date),
                "scheduledPurgeDate": timestamp(deleted.scheduled_purge_date),
                "tags": dict(resource.tags), "purgeProtectionEnabled": False,
            },
        }

    def _deleted_vault(self, location: str, name: str) -> DeletedVault:
        deleted = self._deleted_vaults.get(name.lower())
        if deleted is None or not same_location(deleted.resource.vault.location, location):
            # code and message assumed: real ARM's for a missing deleted vault not found
            raise ArmError(404, "ResourceNotFound", f"The Resource '{DELETED_VAULT_TYPE}/{name}'"
                           f" in location '{location}' was not found.")
        return deleted

    def list_deleted_vaults(self) -> dict[str, Any]:
        with self._lock:
            return {"value": [self.deleted_vault_json(d) for d in self._deleted_vaults.values()]}

    def get_deleted_vault(self, location: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self.deleted_vault_json(self._deleted_vault(location, name))

    def purge_deleted_vault(self, location: str, name: str) -> str:
        """Frees the name for good; returns the id of the finished operation."""
        with self._lock:
            deleted = self._deleted_vault(location, name)
            del self._deleted_vaults[deleted.resource.name.lower()]
            return self.finished_operation()

    # -- access policies

    def _set_policies(self, resource: VaultResource, entries: list[PolicyEntry]) -> None:
        """PUT replaces the whole list; an entry kept unchanged keeps its propagation state,
        a new or changed one takes effect after the propagation delay."""
        effective_at = self.directory.propagation.effective_at()
        with resource.vault.lock:
            before = {policy_key(p.tenant_id, p.object_id, p.application_id): p
                      for p in resource.vault.access_policies}
            policies = []
            for e in entries:
                policy = before.get(e.key)
                if policy is None:
                    policy = AccessPolicy(e.tenant_id, e.object_id, list(e.secrets),
                                          e.application_id, effective_at=effective_at)
                else:
                    policy.tenant_id, policy.object_id = e.tenant_id, e.object_id
                    policy.application_id = e.application_id
                    policy.rewritten(list(e.secrets), effective_at)
                policies.append(policy)
            resource.vault.access_policies = policies
        resource.other_permissions = {e.key: dict(e.others) for e in entries}

    def update_access_policy(self, group: str, name: str, kind: str,
                             body: Any) -> dict[str, Any]:
        """add merges permissions into the matching entry (or appends it); replace sets the
        matching entry's permissions (or appends it); remove drops matching entries. Entries
        match on tenantId + objectId + applicationId. (Semantics of replace/remove assumed.)"""
        if kind.lower() not in POLICY_KINDS:
            raise bad_request(f"The operation kind '{kind}' is invalid; use one of "
                              f"{list(POLICY_KINDS)}.")
        properties = json_object(json_object(body, "the request body").get("properties"),
                                 "properties")
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

    def _apply_policy(self, resource: VaultResource, kind: str, entry: PolicyEntry) -> None:
        effective_at = self.directory.propagation.effective_at()
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
                                             list(entry.secrets), entry.application_id,
                                             effective_at=effective_at))
                resource.other_permissions[entry.key] = dict(entry.others)
                return
            others = resource.other_permissions.setdefault(entry.key, {})
            if kind == "replace":
                match.rewritten(list(entry.secrets), effective_at)
                others.clear()
                others.update(entry.others)
                return
            match.rewritten(union(match.secret_permissions, entry.secrets), effective_at)
            for other_kind, values in entry.others.items():
                others[other_kind] = union(others.get(other_kind, []), values)
