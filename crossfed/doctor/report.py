"""Checks as `crossfed doctor` prints them: one line each, `ok`, `FAIL` (with the fix) or
`skip` (a check that needs one that failed), then any detail lines indented below it.

Shared by the AWS doctor and, later, the Azure one; nothing here knows a cloud.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

OK, FAIL, SKIP = "ok", "FAIL", "skip"


class UsageError(Exception):
    """Bad input or environment (flag, token file, credentials): one line, exit status 2."""


@dataclass(frozen=True)
class Check:
    name: str  # the verifier's own name for the step (provider, audience, trust_policy...)
    status: str  # OK | FAIL | SKIP
    summary: str  # ok: what holds; FAIL: why; skip: what it needs
    fix: str = ""  # FAIL only: what to change
    details: tuple[str, ...] = field(default=())  # indented lines below, e.g. a policy's why

    def line(self) -> str:
        if self.status == FAIL:
            fix = f"; fix: {self.fix}" if self.fix else ""
            return f"FAIL {self.name}: {self.summary}{fix}"
        return f"{self.status:<4} {self.name}: {self.summary}"


def ok(name: str, summary: str, details: Iterable[str] = ()) -> Check:
    return Check(name, OK, summary, details=tuple(details))


def fail(name: str, why: str, fix: str, details: Iterable[str] = ()) -> Check:
    return Check(name, FAIL, why, fix, tuple(details))


def skip(name: str, needs: str) -> Check:
    return Check(name, SKIP, f"not checked: {needs}")


def one_line(text: str) -> str:
    return " ".join(text.split())


def print_report(checks: Iterable[Check], out: TextIO) -> int:
    """Print every check; 1 if any failed, else 0."""
    failed = False
    for check in checks:
        print(check.line(), file=out)
        for detail in check.details:
            print(f"       {detail}", file=out)
        failed = failed or check.status == FAIL
    return 1 if failed else 0
