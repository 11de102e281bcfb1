"""Access tokens the Entra stand-in issues (v1.0 shape, what Key Vault and ARM accept), and the
check a resource server makes on them.

Claims follow the decoded example in Key Vault's REST error docs: aud, iss
`https://sts.windows.net/{tid}/`, iat/nbf/exp, appid, appidacr, idp, oid, sub = oid, tid, uti,
ver 1.0; header kid and x5t equal.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from crossfed.azure.directory import ServicePrincipal
from crossfed.issuer.keys import SigningKey

TOKEN_LIFETIME = 3599  # like Entra's example responses; > 300 s so azure-identity caches it
# Managed identities get day-long tokens from Entra (facts file, section 1: Azure/login#441,
# AWI faq.md); azure-identity then refreshes them at half their lifetime.
MANAGED_IDENTITY_TOKEN_LIFETIME = 86399
LEEWAY = 300  # resource servers accept five minutes of clock skew (UNDOC: our choice)


def v1_issuer(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


def resource_of(scope: str) -> str:
    """`https://vault.azure.net/.default` -> `https://vault.azure.net` (the token's aud)."""
    return scope.removesuffix("/.default").removesuffix("/")


class AccessTokenError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)  # the claims say what it is
    claims: dict[str, Any]
    expires_in: int


class AccessTokenSigner:
    def __init__(self, key: SigningKey | None = None) -> None:
        self.key = key or SigningKey.generate()

    def issue(self, principal: ServicePrincipal, audience: str, appidacr: str = "2",
              lifetime: int | None = None) -> AccessToken:
        """appidacr: 1 = client secret, 2 = certificate or federated assertion; lifetime None
        is Entra's: 24 h for a managed identity, 1 h for an application."""
        if lifetime is None:
            lifetime = (MANAGED_IDENTITY_TOKEN_LIFETIME if principal.kind == "managed_identity"
                        else TOKEN_LIFETIME)
        now = int(time.time())
        issuer = v1_issuer(principal.tenant_id)
        claims = {
            "aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "appid": principal.client_id, "appidacr": appidacr, "idp": issuer,
            "oid": principal.object_id, "sub": principal.object_id,
            "tid": principal.tenant_id, "uti": uuid.uuid4().hex[:22], "ver": "1.0",
        }
        token = jwt.encode(claims, self.key.private_key, algorithm="RS256",
                           headers={"typ": "JWT", "kid": self.key.kid, "x5t": self.key.kid})
        return AccessToken(token, claims, lifetime)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk()]}

    def verify(self, token: str, audiences: tuple[str, ...], now: float | None = None,
               ) -> dict[str, Any]:
        """What a resource server checks: our signature, one of its audiences, lifetime."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AccessTokenError("malformed", f"the bearer token is not a JWT: {exc}") from exc
        if header.get("alg") != "RS256" or header.get("kid") != self.key.kid:
            raise AccessTokenError("signature", "the bearer token was not issued by this "
                                   "directory's token service (unknown key or algorithm)")
        try:
            claims = jwt.decode(token, self.key.private_key.public_key(), algorithms=["RS256"],
                                options={"verify_aud": False, "verify_exp": False,
                                         "verify_nbf": False, "verify_iat": False})
        except jwt.InvalidSignatureError as exc:
            raise AccessTokenError("signature", "the bearer token's signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise AccessTokenError("malformed", f"the bearer token is malformed: {exc}") from exc
        current = time.time() if now is None else now
        wanted = {a.rstrip("/") for a in audiences}
        if str(claims.get("aud", "")).rstrip("/") not in wanted:
            raise AccessTokenError("audience", f"the bearer token's audience "
                                   f"{claims.get('aud')!r} is not {sorted(wanted)}")
        if current > claims.get("exp", 0) + LEEWAY:
            raise AccessTokenError("expired", "the bearer token has expired")
        if current + LEEWAY < claims.get("nbf", 0):
            raise AccessTokenError("not_yet_valid", "the bearer token is not yet valid")
        return claims
