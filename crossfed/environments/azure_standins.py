"""The Azure stand-ins of a run: one directory and token signer shared by Entra ID (token
endpoint), ARM (identities, federated credentials, vaults) and the Key Vault data plane."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field

from azure.identity import ClientSecretCredential

from crossfed.azure.arm.server import ArmStandIn
from crossfed.azure.directory import Directory, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.azure.entra.server import EntraStandIn
from crossfed.azure.keyvault.server import KeyVaultFleet
from crossfed.azure.propagation import Propagation
from crossfed.azure.provision import AzureAccount
from crossfed.cleanup import Teardown
from crossfed.https_server import LOOPBACK
from crossfed.pki import RunCA

RESOURCE_GROUP = "crossfed"  # resource groups are implicit in the ARM stand-in
LOCATION = "westeurope"


@dataclass
class AzureStandIns:
    tenant_id: str
    subscription_id: str
    directory: Directory
    signer: AccessTokenSigner
    entra: EntraStandIn
    arm: ArmStandIn
    vaults: KeyVaultFleet
    admin: ServicePrincipal
    admin_secret: str = field(repr=False)  # never in a repr: `pytest -l`, tracebacks
    ca_bundle: str

    @classmethod
    def start(cls, ca: RunCA, teardown: Teardown, host: str = LOOPBACK,
              trusted_roots: str | None = None,
              propagation_delay: float = 0.0) -> AzureStandIns:
        """trusted_roots: what the token endpoint trusts when it fetches issuers' keys
        (default: the run's CA). propagation_delay: seconds before a new federated credential
        or access policy takes effect (crossfed/azure/propagation.py)."""
        directory = Directory(Propagation(propagation_delay))
        signer = AccessTokenSigner()
        tenant_id = directory.add_tenant()
        subscription_id = str(uuid.uuid4())
        admin_secret = secrets.token_urlsafe(30)
        admin = directory.add(ServicePrincipal(tenant_id, "crossfed-admin", kind="application",
                                               client_secrets=[admin_secret]))
        trusted = str(ca.bundle_path)
        entra = EntraStandIn(ca, directory, signer, trusted_roots=trusted_roots or trusted,
                             host=host).start()
        teardown.add("entra stand-in", entra.stop)
        vaults = KeyVaultFleet(ca, signer, entra.authority_host, host=host)
        teardown.add("key vault stand-in", vaults.stop)
        arm = ArmStandIn(ca, directory, signer, tenant_id, subscription_id, vaults,
                         host=host).start()
        teardown.add("arm stand-in", arm.stop)
        return cls(tenant_id, subscription_id, directory, signer, entra, arm, vaults, admin,
                   admin_secret, trusted)

    def admin_credential(self) -> ClientSecretCredential:
        """The administrator as a user would sign in with azure-identity (client secret)."""
        return ClientSecretCredential(
            self.tenant_id, self.admin.client_id, self.admin_secret,
            authority=self.entra.authority_host, connection_verify=self.ca_bundle,
            disable_instance_discovery=True)  # the stand-in is not a known Microsoft cloud

    def account(self) -> AzureAccount:
        return AzureAccount(self.admin_credential(), self.tenant_id, self.subscription_id,
                            RESOURCE_GROUP, LOCATION, arm_endpoint=self.arm.endpoint,
                            ca_bundle=self.ca_bundle, skip_challenge_resource_check=True)
