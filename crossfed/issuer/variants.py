"""Tokens a plan asks for: the projected one, and the faulty ones a verifier must refuse."""

from __future__ import annotations

import secrets
import time

import jwt

from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.learned import LearnedIssuer, SigningKeyUnavailable
from crossfed.issuer.tokens import ServiceAccountRef, sign
from crossfed.plan import TokenVariant

NEEDS_SIGNING_KEY = frozenset({"projected", "expired"})


def token_for(variant: TokenVariant, issuer: Issuer | LearnedIssuer, account: ServiceAccountRef,
              audience: str, expires_in: int = 3600) -> str:
    """The token a plan presents. A learned issuer (a cluster's own key) has no private key
    here: the variants that need one raise SigningKeyUnavailable; the forgeries do not."""
    claims = issuer.claims_for(account, [audience], expires_in)
    if variant in NEEDS_SIGNING_KEY and issuer.key is None:
        raise SigningKeyUnavailable(
            f"the {variant!r} token must be signed by {issuer.url}'s own key, which only its "
            "cluster holds (crossfed learned its public keys through the API server)")
    if variant == "projected":
        return sign(claims, issuer.key)
    if variant == "expired":
        now = int(time.time())
        claims.update(iat=now - 2 * 3600, nbf=now - 2 * 3600, exp=now - 3600)
        return sign(claims, issuer.key)
    if variant == "foreign_key":  # another cluster's key: its own kid, unknown to the issuer
        return sign(claims, SigningKey.generate())
    if variant == "forged_kid":  # a foreign key that claims the issuer's kid
        return jwt.encode(claims, SigningKey.generate().private_key, algorithm="RS256",
                          headers={"kid": issuer.kid})
    if variant == "alg_none":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": issuer.kid})
    if variant == "hs256":  # a shared-secret signature under the issuer's kid
        return jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256",
                          headers={"kid": issuer.kid})
    raise ValueError(f"unknown token variant {variant!r}")
