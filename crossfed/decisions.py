"""What a stand-in decided and why, kept so that a failing test can explain itself.

The decision feed (GET on a stand-in's listener) is the harness's, not the cloud's: no real
endpoint has it, so it lives at `/crossfed/decisions/<secret>`, the secret drawn per decision
log (one per stand-in and run) and known only to the harness, which prints the full URL where
it hands a feed out (`crossfed serve`'s `decisions_url`). Any other path under the prefix, the
bare prefix included, answers what an unknown path answers there (404). A secret in the path
rather than a loopback-only rule: the stand-ins may listen on a bridge address for pods, and
any local user can reach loopback too.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from crossfed import jwt_view
from crossfed.redact import fingerprint

CLAIMS_SHOWN = ("iss", "sub", "aud", "exp", "nbf", "iat", "amr", "azp")
FEED_PREFIX = "/crossfed/decisions"


def new_feed_path() -> str:
    return f"{FEED_PREFIX}/{secrets.token_urlsafe(24)}"


def is_feed_path(path: str, feed_path: str) -> bool:
    """Whether a request path names this feed (a trailing slash tolerated), in constant time."""
    return hmac.compare_digest(path.rstrip("/").encode(), feed_path.encode())


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

    def __init__(self, feed_path: str | None = None) -> None:
        self._items: list[Decision] = []
        self._lock = threading.Lock()
        # where a listener serves this log; never printed but as the URL the harness hands out
        self.feed_path = feed_path or new_feed_path()

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


def scenario_saw_issuer(decisions: Sequence[Decision], issuer: str, targets: Collection[str],
                        start: int = 0) -> bool:
    """Whether one scenario's stand-in judged a token of `issuer`: only the decisions recorded
    from index `start` on (the log's length when the scenario began) about one of the
    scenario's `targets` (its role ARN, its client id) count. A log keeps every scenario's
    decisions, so a check over all of them is true for every scenario after the first."""
    return any(d.target in targets and d.token.get("iss") == issuer for d in decisions[start:])
