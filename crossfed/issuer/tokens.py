"""Service-account tokens with the claims kube-apiserver puts in a projected token.

Minting is kept apart from serving: the same claims are what a real API server signs with
the issuer's key once a cluster is configured with it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from crossfed.issuer.keys import SigningKey


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> ServiceAccountRef:
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"service account must be NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name)


@dataclass(frozen=True)
class PodRef:
    name: str = "crossfed-probe"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))


def service_account_claims(
    issuer: str,
    account: ServiceAccountRef,
    audiences: Sequence[str],
    expires_in: int = 3600,
    now: int | None = None,
    pod: PodRef | None = None,
) -> dict[str, Any]:
    """The claim set of a bound, projected service-account token (Kubernetes 1.2x+)."""
    issued = int(time.time()) if now is None else now
    pod = pod or PodRef()
    return {
        "aud": list(audiences),
        "exp": issued + expires_in,
        "iat": issued,
        "nbf": issued,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "sub": account.subject,
        "kubernetes.io": {
            "namespace": account.namespace,
            "pod": {"name": pod.name, "uid": pod.uid},
            "serviceaccount": {
                "name": account.name,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, account.subject)),
            },
        },
    }


def sign(claims: dict[str, Any], key: SigningKey) -> str:
    """RS256 with the kube-style kid, as kube-apiserver signs: its header is alg and kid only
    (go-jose signer without options), so PyJWT's default typ is left out."""
    return jwt.encode(claims, key.private_key, algorithm="RS256",
                      headers={"kid": key.kid, "typ": None})
