"""azure-workload-identity webhook's mutation contract, per version.

Covers v1.5.x (v1.5.0, v1.5.1) and v1.6.x (v1.6.0), from pkg/webhook/consts.go, webhook.go and
webhook_test.go at those tags; shared/reference/azure-federation-facts.md §6. v1.5.1 mounts
volume azure-identity-token at /var/run/secrets/azure/tokens, finds its volume by the token's
projection path (whatever the volume's name) and keeps a same-named mount; v1.6.0 names the
volume after a hash of the pod name, mounts the directory /var/run/secrets/azure/wi with the
token at token/azure-identity-token, and replaces a same-named volume and mount.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com/"  # trailing slash, as injected
# go-autorest's ActiveDirectoryEndpoint per AZURE_ENVIRONMENT (the chart's azureEnvironment)
AUTHORITY_HOSTS = {
    "AzurePublicCloud": PUBLIC_AUTHORITY_HOST,
    "AzureChinaCloud": "https://login.chinacloudapi.cn/",
    "AzureUSGovernmentCloud": "https://login.microsoftonline.us/",
    "AzureGermanCloud": "https://login.microsoftonline.de/",
}
TOKEN_FILE = "azure-identity-token"
LEGACY_VOLUME = "azure-identity-token"
RESERVED_VOLUME_PREFIX = "azure-workload-identity-reserved-"  # v1.6.0 (#1720)
MIN_EXPIRATION, MAX_EXPIRATION = 3600, 86400  # outside: the pod is denied (400)
PROXY_INIT_NAME, PROXY_SIDECAR_NAME = "azwi-proxy-init", "azwi-proxy"
DEFAULT_PROXY_PORT = 8000
IMAGE_REGISTRY = "mcr.microsoft.com/oss/azure/workload-identity"
_GO_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Contract:
    version: str
    mount_path: str  # the volumeMount's mountPath
    projection_path: str  # the serviceAccountToken projection's path inside the volume
    token_env: str = "AZURE_FEDERATED_TOKEN_FILE"
    default_expiration: int = 3600
    # v1.6.0 names the volume after a hash of the pod name instead of azure-identity-token,
    # and replaces a volume or mount of that name where v1.5.1 keeps what it finds.
    hashed_volume_name: bool = False

    @property
    def token_path(self) -> str:
        return f"{self.mount_path}/{self.projection_path}"

    @property
    def token_dir(self) -> str:
        return self.token_path.rsplit("/", 1)[0]

    @property
    def replaces_existing(self) -> bool:
        return self.hashed_volume_name

    def volume_name(self, pod_metadata: dict[str, Any]) -> str:
        if not self.hashed_volume_name:
            return LEGACY_VOLUME
        # Handle(): the pod name, or "<generateName> (prefix)" before the API server names it.
        name = pod_metadata.get("name") or f"{pod_metadata.get('generateName') or ''} (prefix)"
        digest = hashlib.sha256(name.encode()).hexdigest()
        return RESERVED_VOLUME_PREFIX + digest[:63 - len(RESERVED_VOLUME_PREFIX)]  # DNS label

    def proxy_image(self, name: str) -> str:
        return f"{IMAGE_REGISTRY}/{name}:{self.version}"


CONTRACTS = {
    "v1.5.1": Contract("v1.5.1", "/var/run/secrets/azure/tokens", TOKEN_FILE),
    "v1.6.0": Contract("v1.6.0", "/var/run/secrets/azure/wi", f"token/{TOKEN_FILE}",
                       hashed_volume_name=True),
}
CONTRACTS["v1.5.0"] = CONTRACTS["v1.5.1"]  # same layout; v1.5.0 still injected empty values
DEFAULT_VERSION = "v1.5.1"


def authority_host(cloud: str | None) -> str:
    """getAzureAuthorityHost; an unknown cloud name stops the webhook from starting."""
    if not cloud:
        return PUBLIC_AUTHORITY_HOST
    if cloud not in AUTHORITY_HOSTS:
        raise ValueError(f'autorest/azure: There is no cloud environment matching the name '
                         f'"{cloud.upper()}"')
    return AUTHORITY_HOSTS[cloud]


def go_quote(value: str) -> str:
    """strconv.Quote for the printable values annotations hold."""
    return json.dumps(value, ensure_ascii=False)


def not_found(namespace: str, name: str) -> str:
    """The API server's NotFound error for the pod's ServiceAccount, as the webhook returns it."""
    return f'serviceaccounts "{name}" not found'


def injected_env(client_id: str, tenant_id: str, token_path: str,
                 authority_host: str = PUBLIC_AUTHORITY_HOST) -> dict[str, str]:
    """The variables the webhook adds to a labelled pod's containers (when they lack them)."""
    env = {"AZURE_CLIENT_ID": client_id, "AZURE_TENANT_ID": tenant_id,
           "AZURE_FEDERATED_TOKEN_FILE": token_path, "AZURE_AUTHORITY_HOST": authority_host}
    return {k: v for k, v in env.items() if v}  # v1.5.1+: empty values are not injected


def _go_parse_int(raw: str, bits: int = 64) -> int:
    """strconv.ParseInt(raw, 10, bits); ValueError worded as Go's *NumError."""
    if not _GO_INT.fullmatch(raw):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(raw)}: invalid syntax")
    value = int(raw)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(raw)}: value out of range")
    return value


def token_expiration(pod_annotation: str | None, sa_annotation: str | None,
                     default: int = 3600) -> int:
    """Non-empty pod annotation > non-empty SA annotation > default. Raises ValueError (the
    webhook's 400 denial) for an unparsable value or one outside 3600..86400."""
    raw = pod_annotation or sa_annotation
    value = default if not raw else _go_parse_int(raw)
    if not MIN_EXPIRATION <= value <= MAX_EXPIRATION:
        raise ValueError(f"token expiration {value} not valid. Expected value to be between "
                         f"{MIN_EXPIRATION} and {MAX_EXPIRATION}")
    return value


def skip_containers(annotation: str | None) -> set[str]:
    """skip-containers: names separated by ";", each trimmed (getSkipContainers)."""
    return {name.strip() for name in annotation.split(";")} if annotation else set()


def proxy_port(annotation: str | None) -> int:
    """proxy-sidecar-port (default 8000); ValueError (a 400 denial) when not an int32."""
    if annotation is None:
        return DEFAULT_PROXY_PORT
    try:
        return _go_parse_int(annotation, 32)
    except ValueError as exc:  # errors.Wrap
        raise ValueError(f"failed to parse proxy sidecar port: {exc}") from exc


def proxy_init_container(contract: Contract, port: int,
                         image: str | None = None) -> dict[str, Any]:
    """azwi-proxy-init: privileged, NET_ADMIN, redirects IMDS traffic to the sidecar."""
    return {"name": PROXY_INIT_NAME, "image": image or contract.proxy_image("proxy-init"),
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                "privileged": True, "runAsNonRoot": False, "runAsUser": 0},
            "env": [{"name": "PROXY_PORT", "value": str(port)}]}


def proxy_sidecar_container(contract: Contract, port: int, native: bool,
                            log_level: str = "info", image: str | None = None) -> dict[str, Any]:
    """azwi-proxy, at the webhook's log level; a native sidecar (restartPolicy Always in
    initContainers) when `native`."""
    container: dict[str, Any] = {
        "name": PROXY_SIDECAR_NAME, "image": image or contract.proxy_image("proxy"),
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--proxy-port={port}", f"--log-level={log_level}"],
        "ports": [{"containerPort": port}],
        "lifecycle": {"postStart": {"exec": {"command": [
            "/proxy", f"--proxy-port={port}", "--probe", f"--log-level={log_level}"]}}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "privileged": False,
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True}}
    if native:
        container["restartPolicy"] = "Always"
    return container
