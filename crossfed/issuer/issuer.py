"""An OIDC issuer: a URL, its signing keys, the documents it publishes and the tokens it mints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims, sign

JWKS_PATH = "/openid/v1/jwks"  # where kube-apiserver publishes its keys


@dataclass
class Issuer:
    url: str
    key: SigningKey
    # Keys published besides the signing key (rotation); the signing key is always published.
    extra_public_keys: list[SigningKey] = field(default_factory=list)

    @property
    def kid(self) -> str:
        return self.key.kid

    @property
    def jwks_uri(self) -> str:
        return self.url.rstrip("/") + JWKS_PATH

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in [self.key, *self.extra_public_keys]]}

    def claims_for(
        self, account: ServiceAccountRef, audiences: Sequence[str], expires_in: int = 3600
    ) -> dict[str, Any]:
        return service_account_claims(self.url, account, audiences, expires_in)

    def mint(
        self, account: ServiceAccountRef, audiences: Sequence[str], expires_in: int = 3600
    ) -> str:
        return sign(self.claims_for(account, audiences, expires_in), self.key)
