"""Trust policies as users write them for IRSA, and the names IAM derives from an issuer URL."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Any


def provider_key(issuer_url: str) -> str:
    """IAM's name for a provider: its URL without the scheme (condition-key prefix, ARN tail)."""
    return issuer_url.split("://", 1)[-1]


def irsa_trust_policy(provider_arn: str, issuer_url: str, subject: str,
                      audience: str) -> dict[str, Any]:
    key = provider_key(issuer_url)
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{key}:sub": subject, f"{key}:aud": audience}},
        }],
    }


def render_template(path: Path, provider_arn: str, issuer_url: str, subject: str,
                    audience: str) -> dict[str, Any]:
    """A policy kept as JSON with ${PROVIDER_ARN}, ${PROVIDER}, ${SUBJECT}, ${AUDIENCE}."""
    text = Template(Path(path).read_text()).substitute(
        PROVIDER_ARN=provider_arn, PROVIDER=provider_key(issuer_url), SUBJECT=subject,
        AUDIENCE=audience)
    return json.loads(text)
