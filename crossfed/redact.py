"""Show secrets the way crossfed is allowed to show them: digest and last characters only."""

from __future__ import annotations

import hashlib


def fingerprint(secret: str | bytes, tail: int = 6) -> str:
    """A stable, non-reversible label for a token, key or secret value."""
    raw = secret.encode() if isinstance(secret, str) else secret
    digest = hashlib.sha256(raw).hexdigest()[:12]
    text = raw.decode(errors="replace")
    return f"sha256:{digest}…{text[-tail:]}" if len(text) > tail * 3 else f"sha256:{digest}"


def scrub(text: str, *secrets: str | None) -> str:
    """Replace every occurrence of the given secrets in text with their fingerprints."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, f"<{fingerprint(secret)}>")
    return text
