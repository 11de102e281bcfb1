"""amazon-eks-pod-identity-webhook's mutation contract (IRSA path), as its chart configures it.

Source: the webhook's pkg/handler/handler.go (v0.4.0..v0.6.17) and the jkroepke chart's values
(defaultAwsRegion us-east-1, stsRegionalEndpoint true); shared/reference/aws-federation-facts.md §5.
"""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = "token"
VOLUME_NAME = "aws-iam-token"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_EXPIRATION = 86400
MIN_EXPIRATION = 600


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook's flags as the chart sets them by default."""

    default_region: str | None = "us-east-1"
    sts_regional_endpoints: bool = True
    token_audience: str = DEFAULT_AUDIENCE
    token_expiration: int = DEFAULT_EXPIRATION
    token_mount_path: str = TOKEN_MOUNT_PATH


CHART_DEFAULTS = WebhookSettings()


def injected_env(role_arn: str, settings: WebhookSettings = CHART_DEFAULTS,
                 token_mount_path: str | None = None) -> dict[str, str]:
    """The env vars the webhook adds to each container of a pod whose SA has role-arn."""
    mount = token_mount_path or settings.token_mount_path
    env = {"AWS_ROLE_ARN": role_arn, "AWS_WEB_IDENTITY_TOKEN_FILE": f"{mount}/{TOKEN_FILE}"}
    if settings.sts_regional_endpoints:
        env["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
    if settings.default_region:
        env["AWS_DEFAULT_REGION"] = settings.default_region
        env["AWS_REGION"] = settings.default_region
    return env


def token_expiration(sa_annotation: str | None, pod_annotation: str | None,
                     settings: WebhookSettings = CHART_DEFAULTS) -> int:
    """Pod annotation > SA annotation > flag; unparsable -> flag; below minimum -> minimum."""
    for raw in (pod_annotation, sa_annotation):
        if raw is not None:
            try:
                return max(int(raw), MIN_EXPIRATION)
            except ValueError:
                break
    return max(settings.token_expiration, MIN_EXPIRATION)
