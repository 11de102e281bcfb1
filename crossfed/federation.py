"""What a scenario test holds: the `federation` fixture's value (`crossfed.Federation`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from crossfed.cleanup import Teardown

if TYPE_CHECKING:
    from crossfed.plan import FederationPlan
    from crossfed.scenario import KeptRun, ScenarioRun, Scenarios
    from crossfed.webhooks.versions import WebhookVersions


class Federation:
    """Run a plan, judge it; cleanup is the fixture's job.

    `check(plan)` applies the plan's cloud side, runs the workload, and fails the test with the
    stand-ins' (or the cloud's) diagnosis when the outcome is not the plan's expectation.
    `run(plan)` does the same without judging, for tests that assert on the result themselves.
    """

    def __init__(self, environment: Scenarios, teardown: Teardown,
                 kept: KeptRuns | None = None) -> None:
        self.environment, self.teardown, self.kept = environment, teardown, kept
        self.last_run: ScenarioRun | None = None  # what the run report describes
        self.described = False  # the last run's account is filled (by check)

    @property
    def upgrade_phase(self) -> str | None:
        """"before" or "after" a webhook upgrade (--upgrade-webhooks-to); None without one."""
        name, sep, phase = self.environment.name.partition("@")
        return phase if sep else None

    def keep_across_upgrade(self, plans: Sequence[FederationPlan]) -> list[ScenarioRun]:
        """Before the upgrade: apply each plan and start its workload, kept until the session
        ends; each first result is judged now."""
        if self.kept is None or self.upgrade_phase != "before":
            raise RuntimeError("keep_across_upgrade() belongs to the @before phase of a run "
                               "with --upgrade-webhooks-to")
        self._skip_without_kept_workloads()
        runs = []
        for plan in plans:
            kept = self.environment.keep(plan, self.kept.teardown_for(self.environment_name))
            self.kept.add(self.environment_name, kept)
            self.judge(kept.run)
            runs.append(kept.run)
        return runs

    def check_kept(self) -> list[ScenarioRun]:
        """After the upgrade: the workloads kept from before, asked again and judged."""
        if self.kept is None or self.upgrade_phase != "after":
            raise RuntimeError("check_kept() belongs to the @after phase of a run with "
                               "--upgrade-webhooks-to")
        self._skip_without_kept_workloads()
        kept = self.kept.of(self.environment_name)
        if not kept:
            raise RuntimeError(f"no workload was kept in {self.environment_name}@before "
                               "(its test failed or did not run)")
        runs = []
        try:
            for one in kept:
                run = self.environment.reprobe(one)
                self.judge(run)
                runs.append(run)
        finally:  # checked: their objects go now, before other scenarios meet them
            failures = self.kept.release(self.environment_name)
            assert not failures, f"kept workloads' teardown left: {failures}"
        return runs

    def _skip_without_kept_workloads(self) -> None:
        if not hasattr(self.environment, "keep"):
            pytest.skip(f"{self.environment.name}: workloads kept across the upgrade are built "
                        "for the local environments (process, kind, kubeconfig) only; here "
                        "every scenario runs again on new pods after the upgrade")

    @property
    def environment_name(self) -> str:
        """Where the workload runs: "process", "kind" or "kubeconfig" (without the upgrade
        flow's @before/@after: `webhook_versions` says which versions are in force)."""
        return self.environment.name.split("@")[0]

    @property
    def webhook_versions(self) -> WebhookVersions:
        return self.environment.versions

    def run(self, plan: FederationPlan) -> ScenarioRun:
        from crossfed.issuer.learned import SigningKeyUnavailable

        try:
            run = self.environment.run(plan, self.teardown)
        except SigningKeyUnavailable as exc:  # a cluster with its own key: the variant needs it
            pytest.skip(str(exc))
        self.last_run, self.described = run, False
        return run

    def check(self, plan: FederationPlan) -> ScenarioRun:
        run = self.run(plan)
        self.judge(run)
        return run

    def judge(self, run: ScenarioRun) -> None:
        """The verdict on `run`, recorded as a step of the scenario's account with the chain
        it met (crossfed.report)."""
        from crossfed.report.account import current, step
        from crossfed.report.describe import describe

        account = current()
        try:
            with step("verdict"):
                self.environment.verdict(run)
        except AssertionError as exc:
            if account is not None:
                describe(account, self.environment, run, passed=False, failure=str(exc))
                self.last_run, self.described = run, True
            raise
        if account is not None:
            describe(account, self.environment, run, passed=True)
            self.last_run, self.described = run, True


class KeptRuns:
    """The session's workloads kept across a webhook upgrade, per environment, and the
    teardowns that remove them and their cloud objects: once checked after the upgrade, or
    when the session ends. While they exist no other scenario of that environment runs (the
    upgrade tests go last before the upgrade and first after it): an OIDC provider they keep
    would meet the scenarios that need none."""

    def __init__(self) -> None:
        self._teardowns: dict[str, Teardown] = {}
        self._kept: dict[str, list[KeptRun]] = {}

    def teardown_for(self, environment: str) -> Teardown:
        return self._teardowns.setdefault(environment, Teardown())

    def add(self, environment: str, kept: KeptRun) -> None:
        self._kept.setdefault(environment, []).append(kept)

    def of(self, environment: str) -> list[KeptRun]:
        return list(self._kept.get(environment, []))

    def release(self, environment: str) -> list[str]:
        """Remove one environment's kept workloads and their objects; the failures."""
        self._kept.pop(environment, None)
        teardown = self._teardowns.pop(environment, None)
        return teardown.run() if teardown is not None else []

    def release_all(self) -> list[str]:
        return [failure for name in list(self._teardowns) for failure in self.release(name)]
