"""The closing summary of a crossfed run: each scenario's outcome per environment, recorded
as the reports come in (also from xdist workers), and the lines written at the end.

Split from crossfed/pytest_plugin.py, which imports the hooks so that pytest finds them on the
plugin module.
"""

from __future__ import annotations

from typing import Any

import pytest

SCENARIO_OUTCOMES: dict[str, list[tuple[str, str]]] = {}  # environment -> (test id, outcome)
_CONFIG: list[pytest.Config] = []  # the session's config (pytest_runtest_logreport has none)


def remember_config(config: pytest.Config) -> None:
    _CONFIG[:] = [config]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each scenario's outcome per environment, for the closing summary, and its
    account, for the run report."""
    if report.when == "teardown" and report.user_properties and _CONFIG:
        from crossfed.pytest_report import collect

        collect(_CONFIG[0], report)
    callspec = getattr(report, "crossfed_env", None)
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if callspec:
            SCENARIO_OUTCOMES.setdefault(callspec, []).append(
                (_scenario_name(report.nodeid, callspec), report.outcome))


def _scenario_name(nodeid: str, environment: str = "") -> str:
    """`test_x[kubeconfig-expired-token]` -> `expired-token`; a plain test keeps its name."""
    name = nodeid.split("::")[-1]
    if "[" not in name:
        return name
    params = name[name.index("[") + 1:-1]
    if environment and params.startswith(environment + "-"):
        return params[len(environment) + 1:]
    if params == environment:
        return name.split("[")[0]
    return params.split("-", 1)[1] if "-" in params else name.split("[")[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "crossfed_env_name" in params:
        outcome.get_result().crossfed_env = params["crossfed_env_name"]
        from crossfed.pytest_report import remember_call

        remember_call(item, outcome.get_result())


def write_summary(terminalreporter: Any, config: pytest.Config) -> list[str]:
    """The closing lines: per environment the scenarios passed, the upgrade table and
    contract diff, the cloud tier's propagation waits, and which tiers ran; returned too
    (the run report shows them)."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        terminalreporter.write_line(line)

    for environment, outcomes in SCENARIO_OUTCOMES.items():
        passed = [name for name, outcome in outcomes if outcome == "passed"]
        if environment.startswith("cloud-") and not passed and all(
                outcome == "skipped" for _, outcome in outcomes):
            from crossfed.cloud.options import CloudSettings

            settings = CloudSettings.from_options(config.getoption)
            where = environment.split("-", 1)[1]
            reasons = [settings.skip_reason(cloud, where) for cloud in (None, "aws", "azure")]
            reason = next((r for r in reasons if r), "see -rs")
            say(f"crossfed: {environment}: {len(outcomes)} cloud scenarios skipped: {reason}")
            continue
        where = ("in processes" if environment.split("@")[0].endswith("process")
                 else "in pods")
        # Counted: the scenarios that ran; a scenario skipped here (one that belongs to another
        # environment) is named apart.
        ran = [(name, outcome) for name, outcome in outcomes if outcome != "skipped"]
        skipped = [name for name, outcome in outcomes if outcome == "skipped"]
        failed = [f"{name} {outcome}" for name, outcome in ran if outcome != "passed"]
        say(f"crossfed: {environment}: {len(passed)} of {len(ran)} scenarios passed {where}"
            + (f"; not passed: {', '.join(failed)}" if failed else "")
            + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
        if passed:
            say(f"crossfed: {environment}: passed: {', '.join(passed)}")
    from crossfed.upgrade_flow import before_after_table, chosen_versions, summary_lines

    if SCENARIO_OUTCOMES:
        for line in (*before_after_table(SCENARIO_OUTCOMES),
                     *summary_lines(*chosen_versions(config.getoption))):
            say(f"crossfed: {line}")
    import sys

    tier = sys.modules.get("crossfed.cloud.environment")  # imported only if the tier ran
    for line in tier.propagation_summary() if tier is not None else []:
        say(f"crossfed: cloud propagation: {line}")
    from crossfed.tiers import tier_lines

    for line in tier_lines(SCENARIO_OUTCOMES, config.getoption):
        say(f"crossfed: {line}")
    return lines
