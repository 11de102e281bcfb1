"""Applies the Azure side of a plan with the management SDKs: the same code runs against real
Azure (with its ARM endpoint and credential) and against the local ARM stand-in.

User-assigned managed identity -> federated identity credential -> vault with access policies
(the identity's principal id gets the plan's secret permissions, the administrator gets what
it needs to write the secret) -> secret. Each create registers its undo at once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from azure.core.credentials import TokenCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from crossfed.cleanup import Teardown
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.plan import AzureTarget

log = logging.getLogger("crossfed.azure")
MANAGEMENT_SCOPE = "https://management.azure.com/.default"


@dataclass(frozen=True)
class AzureAccount:
    """Where and as whom to provision."""

    credential: TokenCredential
    tenant_id: str
    subscription_id: str
    resource_group: str
    location: str = "westeurope"
    arm_endpoint: str | None = None  # None: public Azure
    ca_bundle: str | None = None  # the stand-ins' CA; None against real Azure
    # Local stand-ins only: loopback vault URLs cannot match the vault.azure.net challenge.
    skip_challenge_resource_check: bool = False


@dataclass(frozen=True)
class AppliedAzure:
    identity_name: str
    client_id: str
    principal_id: str
    tenant_id: str
    vault_name: str
    vault_url: str
    secret_name: str
    secret_sha256: str


def vault_name(run_id: str, plan_name: str) -> str:
    """3-24 alphanumerics/hyphens, globally unique in Azure: run id plus a digest of the plan."""
    digest = hashlib.sha256(plan_name.encode()).hexdigest()[:10]
    return f"cf{run_id}{digest}"[:24]


def identity_name(run_id: str, plan_name: str) -> str:
    return f"crossfed-{run_id}-{plan_name}"[:128]


class AzureProvisioner:
    def __init__(self, account: AzureAccount, run_id: str) -> None:
        self.account, self.run_id = account, run_id
        common: dict[str, Any] = {}
        if account.arm_endpoint:
            common["base_url"] = account.arm_endpoint
        if account.ca_bundle:
            common["connection_verify"] = account.ca_bundle
        self._common = common
        self.msi = ManagedServiceIdentityClient(account.credential, account.subscription_id,
                                                **common)
        self.vaults = KeyVaultManagementClient(account.credential, account.subscription_id,
                                               **common)
        self.tags = {"crossfed-run-id": run_id}

    def admin_object_id(self) -> str:
        """The provisioning principal's object id, read from its own management token."""
        token = self.account.credential.get_token(MANAGEMENT_SCOPE).token
        return str(jwt.decode(token, options={"verify_signature": False})["oid"])

    def apply(self, target: AzureTarget, plan_name: str, issuer_url: str,
              trusted: ServiceAccountRef, teardown: Teardown) -> AppliedAzure:
        group, name = self.account.resource_group, identity_name(self.run_id, plan_name)
        identity = self.msi.user_assigned_identities.create_or_update(
            group, name, {"location": self.account.location, "tags": self.tags})
        teardown.add(f"identity {name}",
                     lambda: self.msi.user_assigned_identities.delete(group, name))
        credential_name = f"crossfed-{self.run_id}-fic"
        self.msi.federated_identity_credentials.create_or_update(
            group, name, credential_name, {
                "issuer": target.credential_issuer or issuer_url,
                "subject": trusted.subject,
                "audiences": [target.credential_audience],
            })
        teardown.add(f"federated credential {credential_name}",
                     lambda: self.msi.federated_identity_credentials.delete(
                         group, name, credential_name))
        vault = self._vault(vault_name(self.run_id, plan_name), identity.principal_id,
                            target.secret_permissions, teardown)
        digest = ""
        if target.create_secret:
            value = secrets.token_urlsafe(24)
            digest = hashlib.sha256(value.encode()).hexdigest()
            self._secret_client(vault.properties.vault_uri).set_secret(target.secret, value)
        return AppliedAzure(name, identity.client_id, identity.principal_id,
                            self.account.tenant_id, vault.name, vault.properties.vault_uri,
                            target.secret, digest)

    def _vault(self, name: str, principal_id: str, permissions: tuple[str, ...],
               teardown: Teardown) -> Any:
        # azure-mgmt-keyvault sends a plain dict as it is: ARM's camelCase wire names.
        policies = [{"tenantId": self.account.tenant_id, "objectId": self.admin_object_id(),
                     "permissions": {"secrets": ["get", "list", "set", "delete"]}}]
        if permissions:
            policies.append({"tenantId": self.account.tenant_id, "objectId": principal_id,
                             "permissions": {"secrets": list(permissions)}})
        group = self.account.resource_group
        vault = self.vaults.vaults.begin_create_or_update(group, name, {
            "location": self.account.location, "tags": self.tags,
            "properties": {"tenantId": self.account.tenant_id,
                           "sku": {"family": "A", "name": "standard"},
                           "accessPolicies": policies}}).result()
        teardown.add(f"vault {name}", lambda: self._delete_vault(group, name))
        return vault

    def _delete_vault(self, group: str, name: str) -> None:
        """Delete soft-deletes (mandatory since Feb 2025): purge, or the name stays taken."""
        self.vaults.vaults.delete(group, name)
        self.vaults.vaults.begin_purge_deleted(name, self.account.location).result()

    def _secret_client(self, vault_url: str) -> SecretClient:
        kwargs: dict[str, Any] = {}
        if self.account.ca_bundle:
            kwargs["connection_verify"] = self.account.ca_bundle
        verify = not self.account.skip_challenge_resource_check
        return SecretClient(vault_url, self.account.credential,
                            verify_challenge_resource=verify, **kwargs)
