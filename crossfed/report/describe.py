"""Fill a scenario's account from its run: plan, expectation, chain, claims, what was applied
and what the workload was given; events and logs only when it failed."""

from __future__ import annotations

import json
from typing import Any

from crossfed.redact import scrub_text
from crossfed.report.account import ScenarioAccount, Step
from crossfed.report.chain import chain_for

# What the workload's env says about the webhook's mutation (names and paths, never values
# that are secret: the token itself never is in the env, only its file's path).
MUTATION_ENV = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS", "AZURE_CLIENT_ID",
                "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST")


def describe(account: ScenarioAccount, environment: Any, run: Any, passed: bool,
             failure: str = "") -> None:
    """`environment`: the Scenarios (or CloudScenarios) that ran `run` (a ScenarioRun)."""
    plan = run.plan
    account.plan = plan.name
    account.direction = "aws" if run.applied is not None or plan.azure is None else "azure"
    expect = plan.expect
    account.expected = ("allowed" if expect.allowed else
                        f"{expect.error_code} at {expect.step}"
                        + (f" (check {expect.failed_check})" if expect.failed_check else ""))
    versions = getattr(environment, "versions", None)
    account.webhook = _webhook(account.environment, environment, versions)
    result = run.result
    report = result.report if result is not None else {}
    decisions = _decisions(environment, run)
    denials = [d for d in decisions if not getattr(d, "allowed", True)]
    account.chain, account.failed_check, account.fix = chain_for(
        account.direction, report, denials, passed, expect.failed_check or "",
        expect.step if not expect.allowed else "", failure)
    if not passed:
        _failure_kind(account, failure)
    tokens = report.get("tokens") or {}
    account.claims = {name: {"header": t.get("header", {}), "claims": t.get("claims", {}),
                             "sha256": t.get("sha256", "")}
                      for name, t in tokens.items() if isinstance(t, dict)}
    account.trust = _trust(run)
    if result is not None:
        given = {k: v for k, v in result.env.items() if k in MUTATION_ENV}
        account.mutation = scrub_text(json.dumps(given, indent=1, sort_keys=True))
        _mutation_step(account)
        _probe_steps(account, report)
        if not passed:
            account.events = _failure_record(environment, run) or scrub_text(
                result.stderr or "")[-4000:]
    if not passed:
        account.message = scrub_text(failure)[:2000]


DRIFT = "the pod's mutation differs from the contract"
TEMPLATE = "did not meet its success condition"


def _failure_kind(account: ScenarioAccount, failure: str) -> None:
    """Failures the chain does not show: a pod's mutation that drifted from the contract (the
    chain may have held), and a team's workload that missed its success condition."""
    lines = [line.strip() for line in failure.splitlines() if line.strip()]
    if DRIFT in failure:
        account.failed_check = "contract drift (the pod's mutation)"
        after = lines[next(i for i, line in enumerate(lines) if DRIFT in line) + 1:]
        account.fix = scrub_text(after[0] if after else lines[0])[:600]
        for link in account.chain:  # the exchange ran on what the pod got: shown as met
            if link.outcome == "failed" and link.check == "expectation":
                link.outcome, link.check, link.fix = "passed", "", ""
    elif TEMPLATE in failure:
        account.failed_check = "workload success condition"
        diagnosis = [line for line in lines if line.startswith("diagnosis:")]
        account.fix = scrub_text((diagnosis or lines[1:2] or lines[:1])[0])[:600]


def _webhook(name: str, environment: Any, versions: Any) -> str:
    if name.split("@")[0].endswith("process"):
        return f"none: a process given the contract of {versions}"
    cluster = getattr(environment, "cluster", None)
    if cluster is not None:
        reference = cluster.options.reference_mutator
    else:  # the cloud tier's clusters
        reference = environment.tier.settings.reference_mutator
    return f"{'reference mutator' if reference else 'real webhooks'} at {versions}"


def _failure_record(environment: Any, run: Any) -> str:
    """A failed pod's events and logs, read while it still exists (before the teardown)."""
    cluster = getattr(environment, "cluster", None)
    runner = getattr(cluster, "runner", None)
    if runner is None or not hasattr(runner, "failure_record"):
        return ""
    try:
        return runner.failure_record(run.plan.workload.namespace)[-4000:]
    except Exception as exc:  # an account never fails a scenario
        return f"(events and logs not read: {type(exc).__name__})"


def _decisions(environment: Any, run: Any) -> list[Any]:
    find = getattr(environment, "decisions", None)
    try:
        return list(find(run)) if find is not None else []
    except Exception:  # an account never fails a scenario
        return []


def _trust(run: Any) -> str:
    if run.applied is not None and getattr(run.applied, "trust_policy", None):
        return json.dumps(run.applied.trust_policy, indent=1, sort_keys=True)
    applied = run.applied_azure
    if applied is not None and getattr(applied, "federated_credential", None):
        return json.dumps(applied.federated_credential, indent=1, sort_keys=True)
    return ""


def _probe_steps(account: ScenarioAccount, report: dict[str, Any]) -> None:
    """The token exchange and the resource call as the probe timed them (first client)."""
    if account.direction == "aws":
        first = next(iter((report.get("aws") or {}).values()), {})
        parts = (("token exchange", first.get("caller_identity")),
                 ("resource call", first.get("list_bucket")))
    else:
        credentials = report.get("azure") or {}
        first = credentials.get("workload") or next(iter(credentials.values()), {})
        parts = (("token exchange", first.get("token")), ("resource call", first.get("secret")))
    expected_denied = account.expected != "allowed"
    found = []
    for name, result in parts:
        if not isinstance(result, dict):
            continue
        outcome = "passed" if result.get("ok") else ("denied" if expected_denied else "failed")
        detail = "" if result.get("ok") else f"{result.get('error_code')}: {result.get('message')}"
        found.append(Step(name, 0.0, result.get("seconds"), outcome, scrub_text(detail)))
    _after_workload(account, found)


def _mutation_step(account: ScenarioAccount) -> None:
    """What the pod received (or, in a process, what crossfed gave it as the contract);
    failed when it drifted from the contract."""
    detail = ", ".join(sorted(json.loads(account.mutation or "{}"))) or "no variables"
    drifted = account.failed_check.startswith("contract drift")
    _after_workload(account, [Step("mutation received", 0.0, None,
                                   "failed" if drifted else "passed",
                                   account.fix if drifted else detail)], before=True)


def _after_workload(account: ScenarioAccount, steps: list[Step], before: bool = False) -> None:
    """Insert `steps` right after the workload's step (they happened inside it), stamped
    with its start."""
    index = next((i for i, s in enumerate(account.steps) if s.name.endswith("start and run")),
                 None)
    if index is None:
        account.steps.extend(steps)
        return
    for step in steps:
        step.started = account.steps[index].started
    at = index + 1 if before or not _has_mutation(account) else index + 2
    account.steps[at:at] = steps


def _has_mutation(account: ScenarioAccount) -> bool:
    return any(s.name == "mutation received" for s in account.steps)
