"""What a scenario test holds: the `federation` fixture's value (`crossfed.Federation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from crossfed.cleanup import Teardown
    from crossfed.plan import FederationPlan
    from crossfed.scenario import ScenarioRun, Scenarios
    from crossfed.webhooks.versions import WebhookVersions


class Federation:
    """Run a plan, judge it; cleanup is the fixture's job.

    `check(plan)` applies the plan's cloud side, runs the workload, and fails the test with the
    stand-ins' (or the cloud's) diagnosis when the outcome is not the plan's expectation.
    `run(plan)` does the same without judging, for tests that assert on the result themselves.
    """

    def __init__(self, environment: Scenarios, teardown: Teardown) -> None:
        self.environment, self.teardown = environment, teardown

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
            return self.environment.run(plan, self.teardown)
        except SigningKeyUnavailable as exc:  # a cluster with its own key: the variant needs it
            pytest.skip(str(exc))

    def check(self, plan: FederationPlan) -> ScenarioRun:
        run = self.run(plan)
        self.environment.verdict(run)
        return run
