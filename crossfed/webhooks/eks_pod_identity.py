"""amazon-eks-pod-identity-webhook's mutation contract (IRSA path), as its chart configures it.

Source: the webhook's pkg/handler/handler.go (v0.4.0..v0.6.17) and the jkroepke chart's values
(defaultAwsRegion us-east-1, stsRegionalEndpoint true); shared/reference/aws-federation-facts.md §5.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

TOKEN_MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = "token"
VOLUME_NAME = "aws-iam-token"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_EXPIRATION = 86400
MIN_EXPIRATION = 600
# A container that already has one variable of a group gets none of that group (addEnvToContainer).
IDENTITY_KEYS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
REGION_KEYS = ("AWS_DEFAULT_REGION", "AWS_REGION")
ENV_GROUPS = (IDENTITY_KEYS, REGION_KEYS)
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook's flags as the chart sets them by default."""

    default_region: str | None = "us-east-1"
    sts_regional_endpoints: bool = True
    token_audience: str = DEFAULT_AUDIENCE
    token_expiration: int = DEFAULT_EXPIRATION
    token_mount_path: str = TOKEN_MOUNT_PATH


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
    """The env vars the webhook adds to each container of a pod whose SA has role-arn."""
    mount = token_mount_path or settings.token_mount_path
    env = {"AWS_ROLE_ARN": role_arn,
           "AWS_WEB_IDENTITY_TOKEN_FILE": token_file_path(mount, windows)}
    if settings.sts_regional_endpoints:
        env["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    if settings.default_region:
        env["AWS_DEFAULT_REGION"] = settings.default_region
        env["AWS_REGION"] = settings.default_region
    return env


def token_expiration(sa_annotation: str | None, pod_annotation: str | None,
                     settings: WebhookSettings = CHART_DEFAULTS) -> int:
    """Pod annotation > SA annotation > flag; each unparsable value falls through to the next
    (an invalid pod value keeps the SA's, as parsePodAnnotations does); below minimum ->
    minimum; no maximum."""
    for raw in (pod_annotation, sa_annotation):
        value = parse_go_int(raw) if raw is not None else None
        if value is not None:
            return max(value, MIN_EXPIRATION)
    return max(settings.token_expiration, MIN_EXPIRATION)
