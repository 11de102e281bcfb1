"""`crossfed sweep --azure`: find what crossfed left in a subscription, by its tags, and delete
it in the order ARM and Key Vault need.

- resource groups carrying crossfed-run-id: only crossfed creates a group with that tag
  (AzureProvisioner.ensure_resource_group), so such a group is deleted whole (its identities,
  credentials and vaults with it);
- in every other group: user-assigned identities carrying the tag (their federated identity
  credentials deleted first), and vaults carrying it (deleting one soft-deletes it);
- last, soft-deleted vaults whose tags (deletedVaults properties.tags) are crossfed's and
  selected are purged, so their names are free again; this includes the vaults the steps
  above just deleted.
Never an object without crossfed-run-id (a group without it is only looked into).

Azure is reached the standard way only: DefaultAzureCredential (AZURE_TENANT_ID, AZURE_CLIENT_ID,
AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST, workload identity, az login...), --azure-subscription
or AZURE_SUBSCRIPTION_ID, REQUESTS_CA_BUNDLE as the CA, and a non-public cloud through
--azure-arm-endpoint's /metadata/endpoints, read as `crossfed doctor azure` reads it
(crossfed.doctor.azure.cloud_from).

CHOICE: in a dry run, the vaults the sweep would delete are listed once (as vaults, "then
purged"), not a second time as deleted vaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from crossfed.cloud.sweep import Leftover, Selector, SweepUsageError, delete_all, one_line


@dataclass
class AzureClients:
    resources: Any
    msi: Any
    keyvault: Any
    subscription: str


def clients(subscription: str | None, arm_endpoint: str | None) -> AzureClients:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from crossfed.doctor import azure as doctor_azure
    from crossfed.doctor.report import UsageError

    subscription = subscription or os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not subscription:
        raise SweepUsageError("no subscription: give --azure-subscription or set "
                              "AZURE_SUBSCRIPTION_ID")
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or None
    try:
        cloud = doctor_azure.cloud_from(arm_endpoint, ca)
    except UsageError as exc:
        raise SweepUsageError(str(exc)) from exc
    verify: dict[str, Any] = {"connection_verify": ca} if ca else {}
    credential = DefaultAzureCredential(
        authority=cloud.authority_host, **verify,
        **({} if doctor_azure._known_authority(cloud.authority_host) else
           {"disable_instance_discovery": True}))
    common = {"base_url": cloud.arm_endpoint, "credential_scopes": [cloud.scope], **verify}
    return AzureClients(ResourceManagementClient(credential, subscription, **common),
                        ManagedServiceIdentityClient(credential, subscription, **common),
                        KeyVaultManagementClient(credential, subscription, **common),
                        subscription)


def _call(what: str, call: Callable[[], Any]) -> Any:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
    )
    from azure.identity import CredentialUnavailableError

    try:
        return call()
    except (CredentialUnavailableError, ClientAuthenticationError) as exc:
        raise SweepUsageError("DefaultAzureCredential found no usable credential "
                              f"({one_line(str(exc), 200)}); set AZURE_TENANT_ID, "
                              "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or az login)") from exc
    except HttpResponseError as exc:
        code = getattr(exc.error, "code", None) or exc.status_code
        raise SweepUsageError(f"ARM refused to list {what} ({code}: "
                              f"{one_line(str(exc.message or exc), 200)}); the sweeping "
                              "principal needs Contributor (and Key Vault purge rights) on "
                              "the subscription") from exc
    except ServiceRequestError as exc:
        raise SweepUsageError(f"cannot reach ARM listing {what}: {one_line(str(exc), 200)}; "
                              "check --azure-arm-endpoint and REQUESTS_CA_BUNDLE") from exc


def _group_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""


def _delete_identity(az: AzureClients, group: str, name: str) -> None:
    for fic in list(az.msi.federated_identity_credentials.list(group, name)):
        az.msi.federated_identity_credentials.delete(group, name, fic.name)
    az.msi.user_assigned_identities.delete(group, name)


def find(az: AzureClients, selector: Selector) -> list[Leftover]:
    """crossfed's groups, then identities and vaults in other groups (purges come after:
    deleted_vaults)."""
    leftovers: list[Leftover] = []
    groups = _call("the resource groups", lambda: list(az.resources.resource_groups.list()))
    swept_groups: set[str] = set()
    for group in groups:
        tags = dict(group.tags or {})
        if selector.selects(tags):
            swept_groups.add(group.name.lower())
            leftovers.append(Leftover(
                "resource group", group.name, tags,
                lambda name=group.name: az.resources.resource_groups.begin_delete(name)
                .result(), note="with everything in it"))
    for group in groups:
        if group.name.lower() in swept_groups:
            continue
        identities = _call(f"the identities of {group.name}", lambda g=group.name: list(
            az.msi.user_assigned_identities.list_by_resource_group(g)))
        for identity in identities:
            tags = dict(identity.tags or {})
            if selector.selects(tags):
                leftovers.append(Leftover(
                    "identity", f"{group.name}/{identity.name}", tags,
                    lambda g=group.name, n=identity.name: _delete_identity(az, g, n),
                    note="its federated credentials first"))
        vaults = _call(f"the vaults of {group.name}", lambda g=group.name: list(
            az.keyvault.vaults.list_by_resource_group(g)))
        for vault in vaults:
            tags = dict(vault.tags or {})
            if selector.selects(tags):
                leftovers.append(Leftover(
                    "vault", f"{group.name}/{vault.name}", tags,
                    lambda g=group.name, n=vault.name: az.keyvault.vaults.delete(g, n),
                    note="soft-deleted, then purged"))
    return leftovers


def deleted_vaults(az: AzureClients, selector: Selector,
                   skip: set[str] | None = None) -> list[Leftover]:
    """Soft-deleted vaults with crossfed's selected tags, to purge (skip: lower-case names
    already listed as vaults to delete, in a dry run)."""
    skip = skip or set()
    found: list[Leftover] = []
    deleted = _call("the deleted vaults", lambda: list(az.keyvault.vaults.list_deleted()))
    for vault in deleted:
        properties = vault.properties
        tags = dict(getattr(properties, "tags", None) or {})
        if not selector.selects(tags) or vault.name.lower() in skip:
            continue
        location = str(getattr(properties, "location", "") or "")
        found.append(Leftover(
            "deleted vault", f"{location}/{vault.name}", tags,
            lambda n=vault.name, loc=location: az.keyvault.vaults.begin_purge_deleted(
                n, loc).result(), note="purge"))
    return found


def sweep(az: AzureClients, selector: Selector, dry_run: bool, out: TextIO,
          err: TextIO) -> int:
    """Groups, identities, vaults, then the purges; returns how many could not be deleted."""
    leftovers = find(az, selector)
    if dry_run:
        doomed = {leftover.name.split("/")[-1].lower() for leftover in leftovers
                  if leftover.kind == "vault"}
        leftovers += deleted_vaults(az, selector, doomed)
    failures = delete_all("azure", leftovers, dry_run, out, err) if leftovers else 0
    # Purged last, so that the vaults just deleted (also those in deleted groups) go too.
    purges = [] if dry_run else deleted_vaults(az, selector)
    if purges:
        failures += delete_all("azure (purge)", purges, False, out, err)
    if not leftovers and not purges:
        print("crossfed sweep: azure: nothing to delete", file=out)
    return failures
