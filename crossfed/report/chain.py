"""The federation chain a scenario met, link by link, from what the probe reported and what
the stand-ins (or the cloud's answer) said: which link held, which one denied (as the plan
expects) or failed, with the check that failed and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crossfed.report.account import (
    CLAIM_CHECKS,
    ISSUER_CHECKS,
    LINKS,
    RESOURCE_CHECKS,
    Link,
    first_lines,
)

EXCHANGE, RESOURCE = 2, 4  # link indexes


def link_of_check(check: str) -> int:
    """Which link a failed check belongs to (0 issuer, 1 token claims, 2 exchange, 4 resource)."""
    name = check.lower()
    if name in ISSUER_CHECKS:
        return 0
    if name in CLAIM_CHECKS:
        return 1
    if name in RESOURCE_CHECKS:
        return RESOURCE
    return EXCHANGE


def _reached(direction: str, report: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the exchange step, the resource step) of the first client the probe reported."""
    if direction == "aws":
        clients = report.get("aws") or {}
        first = next(iter(clients.values()), {})
        return first.get("caller_identity") or {}, first.get("list_bucket") or {}
    credentials = report.get("azure") or {}
    first = credentials.get("workload") or next(iter(credentials.values()), {})
    return first.get("token") or {}, first.get("secret") or {}


def chain_for(direction: str, report: Mapping[str, Any], denials: Sequence[Any],
              passed: bool, expected_check: str = "", expected_step: str = "",
              failure: str = "") -> tuple[list[Link], str, str]:
    """(links, failed check, fix). `denials`: the stand-ins' decisions that denied (each with
    .check, .code, .detail); `passed`: the scenario's verdict; `failure`: its message."""
    names = LINKS[direction]
    exchange, resource = _reached(direction, report)
    denial = next(iter(denials), None)
    check = getattr(denial, "check", "") or ""
    fix = first_lines(getattr(denial, "detail", "") or "", 2)
    if not report:  # the workload did not report: nothing of the chain is known
        at, code = EXCHANGE, "no report"
    elif exchange.get("ok") and resource.get("ok"):
        at, code = None, ""
    elif exchange.get("ok"):
        at, code = RESOURCE, str(resource.get("error_code") or "")
    else:
        at = link_of_check(check) if check else EXCHANGE
        code = str(exchange.get("error_code") or "")
    if at is None and not passed:  # every link held, but the plan expected a denial
        at = link_of_check(expected_check) if expected_check else (
            RESOURCE if expected_step in ("list", "secret") else EXCHANGE)
        check = expected_check or expected_step or "expectation"
        fix = first_lines(failure, 2) or "the chain let through what the plan expects denied"
        return _links(names, at, "failed", check, fix, held_after=True), check, fix
    if at is None:
        return [Link(name, "passed") for name in names], "", ""
    check = check or code or "workload"
    if not passed:
        fix = fix or first_lines(failure, 2)
    return _links(names, at, "denied" if passed else "failed", check, fix), \
        ("" if passed else check), ("" if passed else fix)


def _links(names: Sequence[str], at: int, outcome: str, check: str, fix: str,
           held_after: bool = False) -> list[Link]:
    links = []
    for index, name in enumerate(names):
        if index < at:
            links.append(Link(name, "passed"))
        elif index == at:
            links.append(Link(name, outcome, check, fix))
        else:
            links.append(Link(name, "passed" if held_after else "not reached"))
    return links
