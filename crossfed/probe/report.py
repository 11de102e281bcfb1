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


def failure(code: str, operation: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "operation": operation,
            "message": scrub(message)[:500], **extra}
