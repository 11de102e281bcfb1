"""What a stand-in decided and why, kept so that a failing test can explain itself."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from crossfed import jwt_view
from crossfed.redact import fingerprint

CLAIMS_SHOWN = ("iss", "sub", "aud", "exp", "nbf", "iat", "amr", "azp")


def token_summary(token: str) -> dict[str, Any]:
    """Header and claims without verification, and a fingerprint instead of the token."""
    summary: dict[str, Any] = {"fingerprint": fingerprint(token)}
    try:
        view = jwt_view.parse(token)
    except jwt_view.MalformedJwt as exc:
        summary["unparsable"] = str(exc)
        return summary
    summary["alg"], summary["kid"] = view.header.get("alg"), view.header.get("kid")
    summary.update({k: view.claims[k] for k in CLAIMS_SHOWN if k in view.claims})
    return summary


@dataclass
class Decision:
    request_id: str
    action: str
    target: str  # what was asked for: a role ARN, a client id, a vault secret
    token: dict[str, Any]
    allowed: bool
    code: str = ""
    message: str = ""
    check: str = ""  # the step that failed: provider, audience, keys, thumbprint, signature, ...
    detail: str = ""  # the diagnosis
    session_name: str = ""
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def explain(self) -> str:
        if self.allowed:
            return f"{self.action} for {self.target}: allowed ({self.token.get('sub')})"
        lines = [
            f"{self.action} for {self.target} denied: {self.code} at check '{self.check}'",
            f"  message: {self.message}",
            f"  token: {self.token}",
        ]
        if self.detail:
            lines += ["  why: " + line for line in self.detail.splitlines()]
        return "\n".join(lines)


class DecisionLog:
    """Thread-safe, append-only; readers filter by role or subject."""

    def __init__(self) -> None:
        self._items: list[Decision] = []
        self._lock = threading.Lock()

    def record(self, decision: Decision) -> None:
        with self._lock:
            self._items.append(decision)

    def all(self) -> list[Decision]:
        with self._lock:
            return list(self._items)

    def for_target(self, target: str) -> list[Decision]:
        return [d for d in self.all() if d.target == target]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(d) for d in self.all()]
