"""azure-workload-identity webhook's mutation contract, per version (pkg/webhook/consts.go and
webhook.go at each tag; shared/reference/azure-federation-facts.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com/"  # trailing slash, as injected
TOKEN_FILE = "azure-identity-token"


@dataclass(frozen=True)
class Contract:
    version: str
    token_dir: str
    token_env: str = "AZURE_FEDERATED_TOKEN_FILE"
    default_expiration: int = 3600

    @property
    def token_path(self) -> str:
        return f"{self.token_dir}/{TOKEN_FILE}"


CONTRACTS = {
    "v1.5.1": Contract("v1.5.1", "/var/run/secrets/azure/tokens"),
    "v1.6.0": Contract("v1.6.0", "/var/run/secrets/azure/wi/token"),
}
DEFAULT_VERSION = "v1.5.1"


def injected_env(client_id: str, tenant_id: str, token_path: str,
                 authority_host: str = PUBLIC_AUTHORITY_HOST) -> dict[str, str]:
    """The variables the webhook adds to a labelled pod's containers (when they lack them)."""
    env = {"AZURE_CLIENT_ID": client_id, "AZURE_TENANT_ID": tenant_id,
           "AZURE_FEDERATED_TOKEN_FILE": token_path, "AZURE_AUTHORITY_HOST": authority_host}
    return {k: v for k, v in env.items() if v}  # v1.5.1+: empty values are not injected
