"""A scenario's account: what ran where, each step's start, duration and outcome, and the
federation chain as the scenario met it (issuer -> token claims -> exchange -> identity ->
resource), for the JUnit properties and the HTML run report (issue 14).

Nothing secret is kept: the token's claims as the probe reports them (header and claims, no
signature), the trust policy or federated credential crossfed applied, the names and paths of
the pod's mutation, and pod events and logs only after crossfed.redact.scrub_text.

Steps are recorded through `step(name)` on the scenario's account, found through a context
variable that the `federation` fixture sets for the test: code that runs a scenario records
its steps without passing the account around, and records nothing outside a test.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from crossfed.redact import scrub_text

# The links of a chain, per direction, as the picture draws them.
LINKS = {"aws": ("issuer", "token claims", "STS exchange", "identity", "S3 resource"),
         "azure": ("issuer", "token claims", "Entra exchange", "identity",
                   "Key Vault resource")}
# Which link a stand-in's (or cloud's) failed check belongs to; others are the exchange's.
ISSUER_CHECKS = {"provider", "keys", "thumbprint", "signature", "issuer", "discovery", "jwks",
                 "kid", "oidc"}
CLAIM_CHECKS = {"audience", "claims", "expiry", "not_before", "algorithm", "malformed",
                "token", "lifetime"}
RESOURCE_CHECKS = {"access", "permission", "policy", "bucket", "vault", "secret", "rbac",
                   "access_policy", "role_assignment"}


@dataclass
class Step:
    name: str  # apply, workload, mutation, token exchange, resource call, verdict, teardown
    started: float  # seconds since the epoch
    seconds: float | None
    outcome: str  # passed, failed, denied (as the plan expects), skipped
    detail: str = ""  # the diagnosis, when one exists (scrubbed)


@dataclass
class Link:
    name: str
    outcome: str  # passed, failed, denied (expected), not reached
    check: str = ""  # the failed check, on the failing (or denying) link
    fix: str = ""  # what to change, on the failing link


@dataclass
class ScenarioAccount:
    test_id: str
    environment: str
    cluster: str = ""  # "" in a process; else the cluster or context
    clouds: str = ""  # local stand-ins, an endpoint (crossfed serve), or the real clouds
    webhook: str = ""  # what mutated the pod, and its versions
    plan: str = ""
    direction: str = ""  # aws or azure
    expected: str = ""  # allowed, or the error code and check the plan expects
    steps: list[Step] = field(default_factory=list)
    chain: list[Link] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    trust: str = ""  # the trust policy or federated credential crossfed applied (JSON)
    mutation: str = ""  # what the pod (or process) was given: env names, token path, mounts
    events: str = ""  # pod events and logs, kept on failure (scrubbed)
    outcome: str = ""  # passed, failed, skipped
    failed_check: str = ""
    fix: str = ""
    message: str = ""  # the failure's first lines (scrubbed)

    @property
    def seconds(self) -> float:
        return round(sum(s.seconds or 0.0 for s in self.steps), 3)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScenarioAccount:
        data = json.loads(text)
        data["steps"] = [Step(**s) for s in data.get("steps", [])]
        data["chain"] = [Link(**c) for c in data.get("chain", [])]
        return cls(**data)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Time a step; its outcome is `failed` (with the error's first line) if it raises."""
        started = time.time()
        clock = time.monotonic()
        recorded = Step(name, round(started, 3), None, "passed")
        try:
            yield recorded
        except BaseException as exc:
            recorded.outcome = "skipped" if type(exc).__name__ == "Skipped" else "failed"
            recorded.detail = recorded.detail or first_lines(str(exc), 2)
            raise
        finally:
            recorded.seconds = round(time.monotonic() - clock, 3)
            self.steps.append(recorded)

    def add_step(self, name: str, seconds: float | None, outcome: str, detail: str = "",
                 started: float | None = None) -> None:
        self.steps.append(Step(name, round(started or time.time(), 3), seconds, outcome,
                               scrub_text(detail)))


CURRENT: contextvars.ContextVar[ScenarioAccount | None] = contextvars.ContextVar(
    "crossfed_account", default=None)


@contextmanager
def step(name: str) -> Iterator[Step | None]:
    """A step of the current test's scenario; nothing is recorded outside a test."""
    account = CURRENT.get()
    if account is None:
        yield None
        return
    with account.step(name) as recorded:
        yield recorded


def current() -> ScenarioAccount | None:
    return CURRENT.get()


def first_lines(text: str, count: int = 3) -> str:
    lines = [line for line in scrub_text(text).splitlines() if line.strip()]
    return "\n".join(lines[:count])[:600]
