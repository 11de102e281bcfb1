"""Applies the Azure side of a plan with the management SDKs: the same code runs against real
Azure (with its ARM endpoint and credential) and against the local ARM stand-in.

User-assigned managed identity -> federated identity credential -> vault -> secret, with the
vault's permission model chosen by AzureAccount.keyvault_authorization:

- "access-policy" (default): access policies (the identity's principal id gets the plan's
  secret permissions, the administrator gets what it needs to write the secret);
- "rbac": enableRbacAuthorization, no access policies; Key Vault Secrets Officer for the
  harness's own principal and, when the plan grants "get", Key Vault Secrets User for the
  identity, both at the vault's scope. Role assignments propagate (up to 10 min in Azure), so
  writing the secret is retried on 403 until it takes effect, and the wait is measured
  (AppliedAzure.propagation).

Each create registers its undo at once, in the Teardown, the moment it exists. Everything
created carries the provisioner's tags. Deleting a vault soft-deletes it; it is purged when
AzureAccount.purge_vaults, else (or when the purge is refused) one log line says until when
its name stays reserved. ensure_resource_group() is for callers that own the resource group's
lifecycle (the cloud tier); apply() does not call it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from crossfed.cleanup import Teardown
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.plan import AzureTarget

log = logging.getLogger("crossfed.azure")
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
PERMISSION_MODELS = ("access-policy", "rbac")
# Built-in role definition GUIDs (rbac-guide.md; the same in every tenant).
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
HARNESS_WAIT = "keyvault role assignment (harness)"
MAX_BACKOFF, PROGRESS_EVERY = 2.0, 10.0


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
    keyvault_authorization: str = "access-policy"  # or "rbac" (PERMISSION_MODELS)
    purge_vaults: bool = True  # purge soft-deleted vaults at teardown (needs purge rights)

    def __post_init__(self) -> None:
        if self.keyvault_authorization not in PERMISSION_MODELS:
            raise ValueError(f"keyvault_authorization must be one of {PERMISSION_MODELS}, "
                             f"got {self.keyvault_authorization!r}")


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
    vault_id: str = ""  # the vault's ARM id (the scope of its role assignments)
    rbac: bool = False  # the vault uses Azure RBAC (enableRbacAuthorization)
    # what had to wait for propagation, and how long it took (s)
    propagation: dict[str, float] = field(default_factory=dict)
    # the federated identity credential, as created (issuer, subject, audiences)
    federated_credential: dict[str, Any] = field(default_factory=dict)


def vault_name(run_id: str, plan_name: str) -> str:
    """3-24 alphanumerics/hyphens, globally unique in Azure: run id plus a digest of the plan."""
    digest = hashlib.sha256(plan_name.encode()).hexdigest()[:10]
    return f"cf{run_id}{digest}"[:24]


def identity_name(run_id: str, plan_name: str) -> str:
    return f"crossfed-{run_id}-{plan_name}"[:128]


def principal_type(claims: dict[str, Any]) -> str:
    """A role assignment's principalType for the principal a token names: the optional idtyp
    claim when present, else User for a delegated token (scp), else ServicePrincipal."""
    kind = str(claims.get("idtyp", "")).lower()
    if kind == "user" or (not kind and "scp" in claims):
        return "User"
    return "ServicePrincipal"


def _refused_by_rbac(exc: HttpResponseError) -> bool:
    """403 Forbidden (innererror ForbiddenByRbac): the assignment has not propagated yet."""
    code = getattr(exc.error, "code", None)
    return exc.status_code == 403 and (code == "Forbidden" or "ForbiddenByRbac" in str(exc))


class AzureProvisioner:
    def __init__(self, account: AzureAccount, run_id: str, tags: dict[str, str] | None = None,
                 propagation_timeout: float = 300) -> None:
        """tags: on every identity, vault and created resource group (default
        {"crossfed-run-id": run_id}; the cloud tier passes CloudTags(...).as_dict()).
        propagation_timeout: how long (s) to wait for a role assignment to take effect."""
        self.account, self.run_id = account, run_id
        self.propagation_timeout = float(propagation_timeout)
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
        self.authorization = AuthorizationManagementClient(
            account.credential, account.subscription_id, **common)
        self.resources = ResourceManagementClient(account.credential, account.subscription_id,
                                                  **common)
        self.tags = dict(tags) if tags is not None else {"crossfed-run-id": run_id}

    def _admin_claims(self) -> dict[str, Any]:
        token = self.account.credential.get_token(MANAGEMENT_SCOPE).token
        return dict(jwt.decode(token, options={"verify_signature": False}))

    def admin_object_id(self) -> str:
        """The provisioning principal's object id, read from its own management token."""
        return str(self._admin_claims()["oid"])

    # -- the resource group

    def ensure_resource_group(self, teardown: Teardown) -> bool:
        """Use account.resource_group if it exists (never deleting it: False); else create it
        in account.location with the tags and register its deletion (True)."""
        group = self.account.resource_group
        if self.resources.resource_groups.check_existence(group):
            return False
        self.resources.resource_groups.create_or_update(
            group, {"location": self.account.location, "tags": self.tags})
        teardown.add(f"resource group {group}",
                     lambda: self.resources.resource_groups.begin_delete(group).result())
        return True

    # -- the plan

    def apply(self, target: AzureTarget, plan_name: str, issuer_url: str,
              trusted: ServiceAccountRef, teardown: Teardown) -> AppliedAzure:
        group, name = self.account.resource_group, identity_name(self.run_id, plan_name)
        rbac = self.account.keyvault_authorization == "rbac"
        identity = self.msi.user_assigned_identities.create_or_update(
            group, name, {"location": self.account.location, "tags": self.tags})
        teardown.add(f"identity {name}",
                     lambda: self.msi.user_assigned_identities.delete(group, name))
        credential_name = f"crossfed-{self.run_id}-fic"
        credential = {"issuer": target.credential_issuer or issuer_url,
                      "subject": trusted.subject, "audiences": [target.credential_audience]}
        self.msi.federated_identity_credentials.create_or_update(
            group, name, credential_name, dict(credential))
        teardown.add(f"federated credential {credential_name}",
                     lambda: self.msi.federated_identity_credentials.delete(
                         group, name, credential_name))
        admin = self._admin_claims()
        vault = self._vault(vault_name(self.run_id, plan_name), identity.principal_id,
                            target.secret_permissions, teardown, rbac, str(admin["oid"]))
        if rbac:
            self._assign(vault.id, str(admin["oid"]), principal_type(admin),
                         KEY_VAULT_SECRETS_OFFICER, "harness", teardown)
            # CHOICE: Secrets User (getSecret, readMetadata) stands for the plan's "get";
            # other permissions have no role here, so a plan without "get" gets none.
            if "get" in {p.lower() for p in target.secret_permissions}:
                self._assign(vault.id, identity.principal_id, "ServicePrincipal",
                             KEY_VAULT_SECRETS_USER, "identity", teardown)
        digest, waited = "", {}
        if target.create_secret:
            value = secrets.token_urlsafe(24)
            from crossfed.log_redaction import remember

            remember(value)  # random: no pattern knows it, so every log record is told it
            digest = hashlib.sha256(value.encode()).hexdigest()
            client = self._secret_client(vault.properties.vault_uri)
            # Both models propagate: a new vault's access policy, like a role assignment,
            # takes effect only after a while (403 Forbidden meanwhile).
            label = HARNESS_WAIT if rbac else "keyvault access policy (harness)"
            from crossfed.progress import progress

            with progress(f"azure: waiting for the {label} to propagate (secret write)",
                          eager=False) as waiting:
                waited[label] = self._set_when_propagated(client, target.secret, value,
                                                          waiting.started)
        return AppliedAzure(name, identity.client_id, identity.principal_id,
                            self.account.tenant_id, vault.name, vault.properties.vault_uri,
                            target.secret, digest, vault.id, rbac, waited,
                            federated_credential=credential)

    def _vault(self, name: str, principal_id: str, permissions: tuple[str, ...],
               teardown: Teardown, rbac: bool, admin_object_id: str) -> Any:
        # azure-mgmt-keyvault sends a plain dict as it is: ARM's camelCase wire names.
        policies: list[dict[str, Any]] = []
        if not rbac:
            policies.append({"tenantId": self.account.tenant_id, "objectId": admin_object_id,
                             "permissions": {"secrets": ["get", "list", "set", "delete"]}})
            if permissions:
                policies.append({"tenantId": self.account.tenant_id, "objectId": principal_id,
                                 "permissions": {"secrets": list(permissions)}})
        group = self.account.resource_group
        # enableRbacAuthorization always explicit: since API 2026-02-01 its default is true
        # (cloud-tier facts, section 4). Purge protection stays off, or the name is held.
        vault = self.vaults.vaults.begin_create_or_update(group, name, {
            "location": self.account.location, "tags": self.tags,
            "properties": {"tenantId": self.account.tenant_id,
                           "sku": {"family": "A", "name": "standard"},
                           "enableRbacAuthorization": rbac,
                           "accessPolicies": policies}}).result()
        teardown.add(f"vault {name}", lambda: self._delete_vault(group, name))
        return vault

    def _assign(self, scope: str, principal_id: str, kind: str, role: str, who: str,
                teardown: Teardown) -> None:
        """A role assignment at `scope` under a new GUID name; its deletion registered at once.
        principalType is always given: a principal created seconds ago may not be found yet
        (PrincipalNotFound)."""
        name = str(uuid.uuid4())
        definition = (f"/subscriptions/{self.account.subscription_id}/providers/"
                      f"Microsoft.Authorization/roleDefinitions/{role}")
        self.authorization.role_assignments.create(scope, name, {"properties": {
            "roleDefinitionId": definition, "principalId": principal_id,
            "principalType": kind}})
        teardown.add(f"role assignment {name} ({who})",
                     lambda: self.authorization.role_assignments.delete(scope, name))

    def _set_when_propagated(self, client: SecretClient, name: str, value: str,
                             on_wait: Callable[[], None] = lambda: None) -> float:
        """set_secret, retried while Key Vault refuses it by RBAC (the new assignment has not
        propagated), with backoff capped at MAX_BACKOFF s, until propagation_timeout; returns
        the seconds waited."""
        start = time.monotonic()
        last_progress, pause = start, 0.25
        while True:
            try:
                client.set_secret(name, value)
                return round(time.monotonic() - start, 3)
            except HttpResponseError as exc:
                now = time.monotonic()
                if not _refused_by_rbac(exc):
                    raise
                on_wait()  # refused: now it is a wait, and says so
                if now - start >= self.propagation_timeout:
                    raise TimeoutError(
                        f"Key Vault still refuses secret writes {now - start:.0f} s after the "
                        "harness was assigned Key Vault Secrets Officer (403 Forbidden, "
                        "ForbiddenByRbac); raise the propagation timeout or check the "
                        "assignment with az role assignment list --scope <vault id>") from exc
                if now - last_progress >= PROGRESS_EVERY:
                    log.warning("crossfed: waiting for Key Vault role assignment to propagate "
                                "(%.0f s)", now - start)
                    last_progress = now
                time.sleep(min(pause, max(0.0, start + self.propagation_timeout - now)))
                pause = min(pause * 2, MAX_BACKOFF)

    def _delete_vault(self, group: str, name: str) -> None:
        """Delete soft-deletes (mandatory since Feb 2025): purge, or say how long the name
        stays reserved."""
        self.vaults.vaults.delete(group, name)
        if not self.account.purge_vaults:
            self._log_reserved(name, "purging is off")
            return
        try:
            self.vaults.vaults.begin_purge_deleted(name, self.account.location).result()
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise
            code = getattr(exc.error, "code", None) or "403"
            self._log_reserved(name, f"the purge was refused ({code}; it needs Owner or Key "
                               "Vault Purge Operator on the subscription)")

    def _log_reserved(self, name: str, why: str) -> None:
        until = "its scheduledPurgeDate (the deleted vault could not be read)"
        try:
            deleted = self.vaults.vaults.get_deleted(name, self.account.location)
            props = deleted.properties
            until = (f"{props.scheduled_purge_date:%Y-%m-%dT%H:%M:%SZ} (deleted "
                     f"{props.deletion_date:%Y-%m-%dT%H:%M:%SZ})")
        except (HttpResponseError, ResourceNotFoundError, AttributeError, TypeError):
            pass
        log.warning("crossfed: vault name %s stays reserved until %s: %s", name, until, why)

    def _secret_client(self, vault_url: str) -> SecretClient:
        kwargs: dict[str, Any] = {}
        if self.account.ca_bundle:
            kwargs["connection_verify"] = self.account.ca_bundle
        verify = not self.account.skip_challenge_resource_check
        return SecretClient(vault_url, self.account.credential,
                            verify_challenge_resource=verify, **kwargs)
