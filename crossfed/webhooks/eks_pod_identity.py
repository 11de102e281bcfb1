"""amazon-eks-pod-identity-webhook's mutation contract (IRSA path), as its chart configures it.

Covers v0.4.0..v0.6.17 and master (untagged): pkg/handler/handler.go per version, the fixtures of
pkg/handler/testdata/ and the jkroepke chart's values (defaultAwsRegion us-east-1,
stsRegionalEndpoint true); shared/reference/aws-federation-facts.md §5. What changed by version:
- before v0.5.3 the minimum token expiration is 3600 (600 from v0.5.3), and its k8s libraries
  predate sidecar containers: re-serialising the containers drops restartPolicy;
- master (after v0.6.17) leaves a pod alone whose aws-iam-token volume is not its own token.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Any

TOKEN_MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = "token"
VOLUME_NAME = "aws-iam-token"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_EXPIRATION = 86400
MIN_EXPIRATION = 600  # v0.5.3+; 3600 before
LEGACY_MIN_EXPIRATION = 3600
DEFAULT_VERSION = "v0.6.17"  # jkroepke chart 2.6.5
MASTER = "master"  # untagged head: sorts after every tag
# A container that already has one variable of a group gets none of that group (addEnvToContainer).
IDENTITY_KEYS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
REGION_KEYS = ("AWS_DEFAULT_REGION", "AWS_REGION")
ENV_GROUPS = (IDENTITY_KEYS, REGION_KEYS)
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


def version_key(version: str) -> tuple[int, ...]:
    """"v0.5.3" -> (0, 5, 3); master after every tag."""
    if version == MASTER:
        return (10**6,)
    return tuple(int(part) for part in version.lstrip("v").split("."))


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook's flags as the chart sets them by default, and the webhook's version."""

    default_region: str | None = "us-east-1"  # --aws-default-region
    sts_regional_endpoints: bool = True  # --sts-regional-endpoint
    token_audience: str = DEFAULT_AUDIENCE  # --token-audience
    token_expiration: int = DEFAULT_EXPIRATION  # --token-expiration
    token_mount_path: str = TOKEN_MOUNT_PATH  # --token-mount-path
    annotation_prefix: str = "eks.amazonaws.com"  # --annotation-prefix
    # --compose-role-arn (v0.5.0+): a bare role name gets this prefix (IMDS's partition/account)
    compose_role_arn_base: str | None = None
    version: str = DEFAULT_VERSION

    @property
    def min_expiration(self) -> int:
        return MIN_EXPIRATION if version_key(self.version) >= (0, 5, 3) else (
            LEGACY_MIN_EXPIRATION)

    @property
    def keeps_restart_policy(self) -> bool:
        """v0.5.3's sidecar-aware k8s libraries know Container.restartPolicy."""
        return version_key(self.version) >= (0, 5, 3)

    @property
    def checks_foreign_token_volume(self) -> bool:
        return self.version == MASTER

    def role_arn(self, annotation: str) -> str:
        if self.compose_role_arn_base and not annotation.startswith("arn:"):
            return self.compose_role_arn_base + annotation
        return annotation


CHART_DEFAULTS = WebhookSettings()


def parse_go_int(raw: str) -> int | None:
    """strconv.ParseInt(raw, 10, 64): optional sign and digits only, int64 range; else None."""
    if not _GO_INT.fullmatch(raw):
        return None
    value = int(raw)
    return value if _INT64[0] <= value <= _INT64[1] else None


def parse_go_bool(raw: str) -> bool | None:
    """strconv.ParseBool: exactly these spellings; anything else is an error (None)."""
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def is_windows(node_selector: dict[str, str] | None) -> bool:
    """The handler's test: either OS node-selector label says windows."""
    selector = node_selector or {}
    return "windows" in (selector.get("kubernetes.io/os"), selector.get("beta.kubernetes.io/os"))


def token_file_path(mount: str, windows: bool = False) -> str:
    path = f"{mount.rstrip('/')}/{TOKEN_FILE}"
    # The handler rewrites the path for Windows pods: C:\var\run\...\token (mount unchanged).
    return "C:" + path.replace("/", "\\") if windows else path


def skip_containers(annotation: str | None) -> set[str]:
    """skip-containers is one CSV record (encoding/csv, no trimming); a parse error skips none."""
    if not annotation:
        return set()
    try:
        record = next(csv.reader([annotation], strict=True), [])
    except csv.Error:
        return set()
    return set(record)


def injected_env(role_arn: str, settings: WebhookSettings = CHART_DEFAULTS,
                 token_mount_path: str | None = None, windows: bool = False) -> dict[str, str]:
    """The env vars the webhook adds to a bare container of a pod whose SA has role-arn, in
    the order addEnvToContainer appends them: STS endpoints, the region pair, role and token."""
    mount = token_mount_path or settings.token_mount_path
    env: dict[str, str] = {}
    if settings.sts_regional_endpoints:
        env["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    if settings.default_region:
        env["AWS_DEFAULT_REGION"] = settings.default_region
        env["AWS_REGION"] = settings.default_region
    env["AWS_ROLE_ARN"] = role_arn
    env["AWS_WEB_IDENTITY_TOKEN_FILE"] = token_file_path(mount, windows)
    return env


def container_env(container: dict[str, Any], role_arn: str, token_file: str, regional: bool,
                  region: str | None) -> tuple[list[dict[str, Any]], bool]:
    """addEnvToContainer: the container's env after the webhook, and whether it adds the mount.
    A container that has a variable of every group already is left as it is, mount included
    (the early return), even where a flag would add nothing of that group."""
    env = list(container.get("env") or [])
    names = {e.get("name") for e in env}
    identity = bool(names & set(IDENTITY_KEYS))
    has_region = bool(names & set(REGION_KEYS))
    has_sts = "AWS_STS_REGIONAL_ENDPOINTS" in names
    if identity and has_region and has_sts:
        return env, False
    if not has_sts and regional:
        env.append({"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"})
    if not has_region and region:
        env += [{"name": "AWS_DEFAULT_REGION", "value": region},
                {"name": "AWS_REGION", "value": region}]
    if not identity:
        env += [{"name": "AWS_ROLE_ARN", "value": role_arn},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file}]
    return env, True


def token_expiration(sa_annotation: str | None, pod_annotation: str | None,
                     settings: WebhookSettings = CHART_DEFAULTS) -> int:
    """Pod annotation > SA annotation > flag; each unparsable value falls through to the next
    (an invalid pod value keeps the SA's, as parsePodAnnotations does); below minimum ->
    minimum (by version); no maximum."""
    for raw in (pod_annotation, sa_annotation):
        value = parse_go_int(raw) if raw is not None else None
        if value is not None:
            return max(value, settings.min_expiration)
    return max(settings.token_expiration, settings.min_expiration)
