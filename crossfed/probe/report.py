"""How the probe reports a failed step: code, operation and a message scrubbed of tokens."""

from __future__ import annotations

import os
from typing import Any

TOKEN_FILE_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE")


def _tokens() -> list[str]:
    found = []
    for variable in TOKEN_FILE_VARIABLES:
        path = os.environ.get(variable)
        try:
            token = open(path).read().strip() if path else ""
        except OSError:
            token = ""
        if len(token) > 8:
            found.append(token)
    return found


def scrub(text: str) -> str:
    for token in _tokens():
        text = text.replace(token, "<token>")
    return text


def timed(started: float, step: dict[str, Any]) -> dict[str, Any]:
    """The step with how long it took (`seconds`, from `started`, a time.monotonic()): the
    run report's step timings (token exchange, resource call) come from here."""
    import time

    return {**step, "seconds": round(time.monotonic() - started, 3)}


def failure(code: str, operation: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "operation": operation,
            "message": scrub(message)[:500], **extra}


CLAIMS_SHOWN = ("iss", "sub", "aud", "exp", "iat", "nbf")


def token_claims() -> dict[str, Any]:
    """The header and claims of each token file the workload was given, and a digest: what a
    diagnosis needs to judge the token, never the token itself (its signature is not shown)."""
    import base64
    import hashlib
    import json

    def part(text: str) -> dict[str, Any]:
        decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return decoded if isinstance(decoded, dict) else {}

    found: dict[str, Any] = {}
    for variable in TOKEN_FILE_VARIABLES:
        path = os.environ.get(variable)
        if not path:
            continue
        try:
            token = open(path).read().strip()
            header, claims = (part(p) for p in token.split(".")[:2])
        except (OSError, ValueError, UnicodeDecodeError):
            found[variable] = {"readable": False}
            continue
        found[variable] = {
            "header": {k: header.get(k) for k in ("alg", "kid", "typ") if k in header},
            "claims": {k: claims[k] for k in CLAIMS_SHOWN if k in claims},
            "sha256": hashlib.sha256(token.encode()).hexdigest()[:12],
        }
    return found
