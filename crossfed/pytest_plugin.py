"""crossfed's pytest plugin: options, markers and the fixtures that stand up a run's environment.

Expensive things (stand-ins, issuers, the cluster attachment) are session scoped; each
scenario's cloud objects and namespace are function scoped and torn down in reverse order, also
when the test fails. The environment is a parameter of the `federation` fixture, so one scenario
runs in every selected environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossfed.cleanup import Teardown
from crossfed.cluster.tools import add_options as add_tool_options
from crossfed.cluster.tools import docker_available
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.keys import SigningKey
from crossfed.plan import FederationPlan
from crossfed.scenario import ScenarioRun, Scenarios

KIND_STATUS = pytest.StashKey[str]()
SCENARIO_OUTCOMES: dict[str, list[tuple[str, str]]] = {}  # environment -> (test id, outcome)
MARKERS = {
    "local": "runs on this machine with the stand-ins (no cloud account needed)",
    "cloud": "needs real cloud accounts (enable with the cloud flags)",
    "aws": "exercises the AWS direction (IRSA-style web identity)",
    "azure": "exercises the Azure direction (workload identity federation)",
    "cluster": "needs a Kubernetes cluster (kind or --kubeconfig)",
}
log = logging.getLogger("crossfed")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crossfed", "crossfed: cross-cloud workload identity federation")
    group.addoption("--crossfed-env", action="append", choices=("process", "kubeconfig"),
                    help="environments to run scenarios in (repeatable; default: process, plus "
                         "kubeconfig when --kubeconfig is given)")
    group.addoption("--crossfed-run-id", default=None,
                    help="run id carried by every created name/tag (default: random)")
    group.addoption("--crossfed-state-dir", default=None,
                    help="where keys, CA and certificates of the run are written "
                         "(default: a pytest temporary directory)")
    group.addoption("--kubeconfig", default=_env("CROSSFED_KUBECONFIG"),
                    help="run the scenarios in pods of this cluster too; its API server must "
                         "sign with --crossfed-issuer-key for --crossfed-issuer-port "
                         "[env CROSSFED_KUBECONFIG]")
    group.addoption("--crossfed-issuer-key", default=_env("CROSSFED_ISSUER_KEY"),
                    help="RSA private key (PEM) the issuer signs with [env CROSSFED_ISSUER_KEY]")
    group.addoption("--crossfed-issuer-port", type=int,
                    default=int(_env("CROSSFED_ISSUER_PORT") or 0),
                    help="issuer port on 127.0.0.1 (0: free) [env CROSSFED_ISSUER_PORT]")
    group.addoption("--crossfed-issuer-url", default=_env("CROSSFED_ISSUER_URL"),
                    help="use an issuer another process serves with --crossfed-issuer-key "
                         "(shared by xdist workers) [env CROSSFED_ISSUER_URL]")
    group.addoption("--crossfed-issuer-ca", default=_env("CROSSFED_ISSUER_CA"),
                    help="CA bundle of --crossfed-issuer-url [env CROSSFED_ISSUER_CA]")
    group.addoption("--crossfed-standin-host", default=_env("CROSSFED_STANDIN_HOST"),
                    help="address the cloud stand-ins listen on: the cluster bridge's address "
                         "for pods (default 127.0.0.1) [env CROSSFED_STANDIN_HOST]")
    group.addoption("--crossfed-node", default=_env("CROSSFED_NODE"),
                    help="node to place pods on when the cluster has no scheduler "
                         "[env CROSSFED_NODE]")
    group.addoption("--crossfed-probe-image", default=_env("CROSSFED_PROBE_IMAGE")
                    or "crossfed/probe:local", help="probe image present on the node")
    add_tool_options(group)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def kind_status(config: pytest.Config) -> str:
    """One line on the kind environment: why it does not run here."""
    reason = docker_available()
    if reason:
        return (f"kind environment skipped: {reason} (install Docker and kind, or pass "
                "--kind-bin; --kubeconfig runs the scenarios on any other cluster)")
    return ("kind environment not run: creating the kind cluster from pytest is not wired yet; "
            "create it with crossfed.cluster.kind and pass --kubeconfig")


def pytest_report_header(config: pytest.Config) -> str:
    status = kind_status(config)
    config.stash[KIND_STATUS] = status
    return f"crossfed: environments {', '.join(selected_environments(config))}; {status}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each scenario's outcome per environment, for the closing summary."""
    callspec = getattr(report, "crossfed_env", None)
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if callspec:
            SCENARIO_OUTCOMES.setdefault(callspec, []).append(
                (_scenario_name(report.nodeid), report.outcome))


def _scenario_name(nodeid: str) -> str:
    """`test_x[kubeconfig-expired-token]` -> `expired-token`; a plain test keeps its name."""
    name = nodeid.split("::")[-1]
    if "[" not in name:
        return name
    params = name[name.index("[") + 1:-1]
    return params.split("-", 1)[1] if "-" in params else name.split("[")[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "crossfed_env_name" in params:
        outcome.get_result().crossfed_env = params["crossfed_env_name"]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for environment, outcomes in SCENARIO_OUTCOMES.items():
        passed = [name for name, outcome in outcomes if outcome == "passed"]
        others = [f"{name} {outcome}" for name, outcome in outcomes if outcome != "passed"]
        where = "in pods" if environment != "process" else "in processes"
        terminalreporter.write_line(
            f"crossfed: {environment}: {len(passed)} of {len(outcomes)} scenarios passed {where}"
            + (f"; not passed: {', '.join(others)}" if others else ""))
        terminalreporter.write_line(f"crossfed: {environment}: passed: {', '.join(passed)}")
    if KIND_STATUS in config.stash:
        terminalreporter.write_line(f"crossfed: {config.stash[KIND_STATUS]}")


def selected_environments(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--crossfed-env")
    if chosen:
        return list(dict.fromkeys(chosen))
    return ["process", "kubeconfig"] if config.getoption("--kubeconfig") else ["process"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "federation" in metafunc.fixturenames:
        environments = selected_environments(metafunc.config)
        metafunc.parametrize("crossfed_env_name", [
            pytest.param(name, marks=[pytest.mark.cluster] if name != "process" else [],
                         id=name) for name in environments], scope="session")


@pytest.fixture(scope="session")
def crossfed_clouds(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIns]:
    """Issuer, AWS and Azure stand-ins and the negative scenarios' issuers, for the session."""
    options = request.config.getoption
    state = options("--crossfed-state-dir")
    state_dir = Path(state) if state else tmp_path_factory.mktemp("crossfed")
    key_path = options("--crossfed-issuer-key")
    key = SigningKey.load(Path(key_path)) if key_path else None
    host = options("--crossfed-standin-host") or "127.0.0.1"
    log.info("crossfed: starting stand-ins in %s (listening on %s)", state_dir, host)
    external = options("--crossfed-issuer-url")
    if external and not options("--crossfed-issuer-ca"):
        raise pytest.UsageError("--crossfed-issuer-url needs --crossfed-issuer-ca")
    clouds = LocalStandIns.start(
        state_dir, options("--crossfed-run-id"), key=key,
        issuer_port=options("--crossfed-issuer-port"), host=host,
        external_issuer=(external, Path(options("--crossfed-issuer-ca"))) if external else None)
    yield clouds
    clouds.stop()


@pytest.fixture(scope="session")
def crossfed_cluster(request: pytest.FixtureRequest, crossfed_clouds: LocalStandIns):
    from crossfed.environments.kubeconfig import KubeconfigCluster, KubeconfigOptions
    from crossfed.webhooks.reference_mutator import MutatorSettings
    from crossfed.workload.pod import PodSettings

    kubeconfig = request.config.getoption("--kubeconfig")
    if not kubeconfig:
        pytest.skip("the kubeconfig environment needs --kubeconfig (or CROSSFED_KUBECONFIG)")
    pods = PodSettings(image=request.config.getoption("--crossfed-probe-image"),
                       node_name=request.config.getoption("--crossfed-node"))
    azure = crossfed_clouds.azure
    mutator = MutatorSettings(azure_tenant_id=azure.tenant_id,
                              azure_authority_host=azure.entra.authority_host + "/")
    cluster = KubeconfigCluster(KubeconfigOptions(kubeconfig, pods), crossfed_clouds.ca,
                                crossfed_clouds.run_id, mutator)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def crossfed_environment(request: pytest.FixtureRequest, crossfed_env_name: str,
                         crossfed_clouds: LocalStandIns) -> Scenarios:
    if crossfed_env_name == "process":
        return Scenarios(crossfed_clouds)
    return Scenarios(crossfed_clouds, request.getfixturevalue("crossfed_cluster"))


class Federation:
    """What a scenario test holds: run a plan, judge it; cleanup is the fixture's job."""

    def __init__(self, environment: Scenarios, teardown: Teardown) -> None:
        self.environment, self.teardown = environment, teardown

    def run(self, plan: FederationPlan) -> ScenarioRun:
        return self.environment.run(plan, self.teardown)

    def check(self, plan: FederationPlan) -> ScenarioRun:
        run = self.run(plan)
        self.environment.verdict(run)
        return run


@pytest.fixture
def federation(crossfed_environment: Scenarios) -> Iterator[Federation]:
    teardown = Teardown()
    try:
        yield Federation(crossfed_environment, teardown)
    finally:
        failures = teardown.run()
        assert not failures, f"teardown left objects behind: {failures}"
