"""When does a cloud's answer count? Right after creation IAM, Entra and Key Vault refuse with
the very codes a misconfiguration gives, so a refusal counts only when the diagnosis (what the
cloud holds) explains it at the step it happened; an unexplained one is propagation, and the
tier asks again. An allowed outcome counts as it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crossfed.cloud.diagnosis import AWS_LIST_CHECKS, AZURE_SECRET_CHECKS
from crossfed.doctor.report import Check
from crossfed.plan import FederationPlan

# On an RBAC vault the local tier's "access_policy" is a role assignment.
RBAC_NAMES = {"access_policy": "role_assignment"}


@dataclass
class Judgement:
    settled: bool  # False: refused, but nothing the cloud holds explains it (propagation)
    passed: bool
    problems: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    why: str = ""


# The answer a failed check predicts, where its lines do not say ("STS would answer X").
ANSWERS = {"permissions": "AccessDenied", "role": "AccessDenied", "access_policy": "Forbidden",
           "role_assignment": "Forbidden", "not_found": "SecretNotFound",
           "tenant": "AADSTS90002", "client": "AADSTS700016"}
WOULD_ANSWER = re.compile(r"would answer (\w+)")


def predicted(check: Check) -> set[str]:
    """The error codes the cloud gives when this check fails; empty: not known."""
    found = set(WOULD_ANSWER.findall(" ".join([check.summary, *check.details])))
    return found or ({ANSWERS[check.name]} if check.name in ANSWERS else set())


def refusals(report: dict[str, Any]) -> dict[str, set[str]]:
    """Where each client/credential was first refused (assume|list, token|secret), with the
    error codes seen there."""
    steps: dict[str, set[str]] = {}
    for result in (report.get("aws") or {}).values():
        for step, key in (("assume", "caller_identity"), ("list", "list_bucket")):
            if not result.get(key, {}).get("ok"):
                steps.setdefault(step, set()).add(str(result.get(key, {}).get("error_code")))
                break
    for result in (report.get("azure") or {}).values():
        for step, key in (("token", "token"), ("secret", "secret")):
            if not result.get(key, {}).get("ok"):
                steps.setdefault(step, set()).add(str(result.get(key, {}).get("error_code")))
                break
    return steps


def succeeded_steps(report: dict[str, Any]) -> set[str]:
    steps: set[str] = set()
    for result in (report.get("aws") or {}).values():
        steps |= {"assume"} if result.get("caller_identity", {}).get("ok") else set()
        steps |= {"list"} if result.get("list_bucket", {}).get("ok") else set()
    for result in (report.get("azure") or {}).values():
        steps |= {"token"} if result.get("token", {}).get("ok") else set()
        steps |= {"secret"} if result.get("secret", {}).get("ok") else set()
    return steps


def _explaining(step: str, codes: set[str], checks: list[Check],
                lagging: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    """The failed checks of this step that predict the very codes seen there: a refusal with
    another code (a provider not found yet, where the trust policy would say AccessDenied) is
    the cloud still propagating, not this check. A check that predicts no code explains
    nothing, but for `presented` (the workload presented other claims than those judged),
    which explains any refusal. `lagging`: checks of objects the tier just created, whose
    "not found" is a read that lags their creation."""
    if step == "list":
        names = AWS_LIST_CHECKS
    elif step == "secret":
        names = AZURE_SECRET_CHECKS
    else:
        names = None
    later = AWS_LIST_CHECKS | AZURE_SECRET_CHECKS | {"presented"}
    found = set()
    for check in checks:
        if check.status != "FAIL":
            continue
        if check.name == "presented":
            found.add(check.name)
            continue
        if check.name in lagging:
            continue
        if names is not None and check.name not in names:
            continue
        if names is None and check.name in later:
            continue
        answers = predicted(check)
        if answers and codes <= answers:
            found.add(check.name)
    return found


def judge(plan: FederationPlan, report: dict[str, Any], problems: list[str],
          diagnose: Callable[[], list[Check]], rbac: bool = False,
          lagging: set[str] | None = None) -> Judgement:
    steps = refusals(report)
    if not steps:
        if not problems:
            return Judgement(True, True, why="as expected")
        return Judgement(True, False, problems, why="allowed where a refusal was expected")
    checks = diagnose()
    explained = set().union(*(_explaining(step, codes, checks, lagging or set())
                              for step, codes in steps.items()))
    if not explained:
        return Judgement(False, False, problems, checks,
                         why=f"refused at {', '.join(sorted(steps))}, but what the cloud holds "
                         "allows it: still propagating")
    if problems:
        return Judgement(True, False, problems, checks,
                         why=f"what the cloud holds explains it: {', '.join(sorted(explained))}")
    expected = plan.expect.failed_check
    if expected and rbac:
        expected = RBAC_NAMES.get(expected, expected)
    if expected and expected not in explained:
        return Judgement(True, False, [f"diagnosis: expected the cloud's configuration to fail "
                                       f"check '{expected}', it fails {sorted(explained)}"],
                         checks, why="explained by another check")
    return Judgement(True, True, [], checks, why=f"explained by {', '.join(sorted(explained))}")
