"""crossfed's pytest plugin: options, markers and the fixtures that stand up a run's environment.

Expensive things (stand-ins, issuers) are session scoped; each scenario's cloud objects are
function scoped and torn down in reverse order, also when the test fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossfed.cleanup import Teardown
from crossfed.environments.standins import LocalStandIns
from crossfed.plan import FederationPlan
from crossfed.scenario import ProcessScenarios, ScenarioRun

MARKERS = {
    "local": "runs on this machine with the stand-ins (no cloud account needed)",
    "cloud": "needs real cloud accounts (enable with the cloud flags)",
    "aws": "exercises the AWS direction (IRSA-style web identity)",
    "azure": "exercises the Azure direction (workload identity federation)",
    "cluster": "needs a Kubernetes cluster (kind or --kubeconfig)",
}
ENVIRONMENTS = ("process",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crossfed", "crossfed: cross-cloud workload identity federation")
    group.addoption("--crossfed-env", choices=ENVIRONMENTS, default="process",
                    help="where scenario workloads run (default: process)")
    group.addoption("--crossfed-run-id", default=None,
                    help="run id carried by every created name/tag (default: random)")
    group.addoption("--crossfed-state-dir", default=None,
                    help="where keys, CA and certificates of the run are written "
                         "(default: a pytest temporary directory)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.fixture(scope="session")
def crossfed_clouds(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIns]:
    """Issuer, AWS stand-in and the negative scenarios' issuers, for the whole session."""
    state = request.config.getoption("--crossfed-state-dir")
    state_dir = Path(state) if state else tmp_path_factory.mktemp("crossfed")
    logging.getLogger("crossfed").info("crossfed: starting stand-ins in %s", state_dir)
    clouds = LocalStandIns.start(state_dir, request.config.getoption("--crossfed-run-id"))
    yield clouds
    clouds.stop()


@pytest.fixture(scope="session")
def crossfed_environment(crossfed_clouds: LocalStandIns) -> ProcessScenarios:
    return ProcessScenarios(crossfed_clouds)


class Federation:
    """What a scenario test holds: run a plan, judge it; cleanup is the fixture's job."""

    def __init__(self, environment: ProcessScenarios, teardown: Teardown) -> None:
        self.environment, self.teardown = environment, teardown

    def run(self, plan: FederationPlan) -> ScenarioRun:
        return self.environment.run(plan, self.teardown)

    def check(self, plan: FederationPlan) -> ScenarioRun:
        run = self.run(plan)
        self.environment.verdict(run)
        return run


@pytest.fixture
def federation(crossfed_environment: ProcessScenarios) -> Iterator[Federation]:
    teardown = Teardown()
    try:
        yield Federation(crossfed_environment, teardown)
    finally:
        failures = teardown.run()
        assert not failures, f"teardown left objects behind: {failures}"
