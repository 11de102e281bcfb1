"""A JWT read once: header, claims and the signed bytes; signatures checked with PyJWT's
algorithm objects.

Why not jwt.decode each time: PyJWT re-parses the token on every call and validates its base64
character by character in Python; with three or four reads per request that dominated the
stand-ins' cost per token exchange. The cryptography stays in the library.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jwt.algorithms import get_default_algorithms

ALGORITHMS = get_default_algorithms()


class MalformedJwt(ValueError):
    pass


@dataclass(frozen=True)
class JwtView:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _b64url(segment: str) -> bytes:
    try:
        return base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_",
                                validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedJwt(f"invalid base64url segment: {exc}") from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MalformedJwt(f"the {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedJwt(f"the {what} is not a JSON object")
    return value


def parse(token: str) -> JwtView:
    """Split and decode without verifying; MalformedJwt if it is not a compact JWS."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise MalformedJwt("not enough segments" if len(parts) < 3 else "too many segments")
    header = _json_object(_b64url(parts[0]), "header")
    claims = _json_object(_b64url(parts[1]), "payload")
    return JwtView(header, claims, f"{parts[0]}.{parts[1]}".encode(), _b64url(parts[2]))


@lru_cache(maxsize=256)
def _key(jwk_json: str, alg: str) -> Any:
    return ALGORITHMS[alg].from_jwk(jwk_json)


def signature_valid(view: JwtView, alg: str, jwk: dict[str, Any]) -> bool:
    """True if `jwk` verifies the token under `alg` (a key of the wrong type is just False)."""
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        return False
    try:
        key = _key(json.dumps(jwk, sort_keys=True), alg)
        return bool(algorithm.verify(view.signing_input, key, view.signature))
    except Exception:  # a malformed or mismatched JWK cannot verify anything
        return False
