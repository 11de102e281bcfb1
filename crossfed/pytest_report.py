"""The run report, pytest side: an account per scenario test (crossfed.report.account), kept
on the test's user_properties so that it reaches the controller under pytest-xdist and
pytest's JUnit file as testcase properties; at the end, `--crossfed-report PATH` writes the
HTML page from every account collected.

Split from crossfed/pytest_plugin.py, which calls these from its fixture and hooks.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

import pytest

from crossfed.report.account import CURRENT, ScenarioAccount, first_lines

ACCOUNT_PROPERTY = "crossfed.account"  # the whole account, JSON
ACCOUNTS = pytest.StashKey["list[ScenarioAccount]"]()
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def start(request: pytest.FixtureRequest, environment: Any
          ) -> tuple[ScenarioAccount, contextvars.Token[ScenarioAccount | None]]:
    from crossfed.tiers import cloud_endpoints

    name = environment.name
    account = ScenarioAccount(request.node.nodeid, name)
    cluster = getattr(environment, "cluster", None)
    if cluster is not None:
        options = cluster.options
        account.cluster = f"{options.kubeconfig}" + (f" ({options.context})"
                                                     if options.context else "")
    if name.startswith("cloud-"):
        endpoints = cloud_endpoints(request.config.getoption)
        account.clouds = ", ".join(endpoints[c] for c in dict.fromkeys(
            request.config.getoption("--cloud") or []))
        if "cluster" in name:
            settings = environment.tier.settings
            account.cluster = ", ".join(dict.fromkeys(
                c for c in (settings.aks_context, settings.eks_context) if c))
    else:
        account.clouds = "crossfed's stand-ins, started by this run"
    return account, CURRENT.set(account)


def finish(request: pytest.FixtureRequest, account: ScenarioAccount,
           token: contextvars.Token[ScenarioAccount | None], federation: Any) -> None:
    """After the scenario's teardown: its outcome, an account for a run nobody judged, and
    the properties on the test (read by junitxml at the teardown report)."""
    from crossfed.report.describe import describe

    CURRENT.reset(token)
    call = request.node.stash.get(CALL_REPORT, None)
    passed = call is not None and call.passed
    account.outcome = ("skipped" if call is not None and call.skipped else
                       "passed" if passed else "failed")
    failure = first_lines(call.longreprtext, 12) if call is not None and call.failed else ""
    if federation.last_run is not None and not federation.described:
        describe(account, federation.environment, federation.last_run, passed, failure)
    elif failure and not account.message:
        account.message = failure
    for name, value in junit_properties(account):
        request.node.user_properties.append((name, value))


def junit_properties(account: ScenarioAccount) -> list[tuple[str, str]]:
    """Flat properties a CI dashboard shows without opening logs, then the whole account."""
    properties = [("crossfed.environment", account.environment),
                  ("crossfed.cluster", account.cluster),
                  ("crossfed.clouds", account.clouds),
                  ("crossfed.webhook", account.webhook),
                  ("crossfed.plan", account.plan),
                  ("crossfed.expected", account.expected),
                  ("crossfed.outcome", account.outcome),
                  ("crossfed.failed_check", account.failed_check),
                  ("crossfed.fix", account.fix)]
    properties += [(f"crossfed.step.{step.name.replace(' ', '_')}.seconds",
                    "" if step.seconds is None else f"{step.seconds:.3f}")
                   for step in account.steps]
    properties.append((ACCOUNT_PROPERTY, account.to_json()))
    return [(name, value) for name, value in properties if value != ""]


def remember_call(item: pytest.Item, report: pytest.TestReport) -> None:
    if report.when == "call":
        item.stash[CALL_REPORT] = report


def collect(config: pytest.Config, report: pytest.TestReport) -> None:
    """Each account once, from the teardown report (the controller's copy under xdist)."""
    if report.when != "teardown":
        return
    for name, value in getattr(report, "user_properties", []):
        if name == ACCOUNT_PROPERTY:
            config.stash.setdefault(ACCOUNTS, []).append(ScenarioAccount.from_json(value))


def write(config: pytest.Config, run_lines: list[str]) -> Path | None:
    """The HTML report, when asked for, on the controller (not on xdist workers)."""
    target = config.getoption("--crossfed-report")
    if not target or getattr(config, "workerinput", None) is not None:
        return None
    from crossfed.report.html import write_report

    path = Path(target)
    write_report(path, config.stash.get(ACCOUNTS, []), run_lines)
    return path
