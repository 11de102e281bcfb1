"""crossfed's pytest plugin: options, markers and the fixtures that stand up a run's environment.

Expensive things (stand-ins, issuers, the cluster attachment) are session scoped; each
scenario's cloud objects and namespace are function scoped and torn down in reverse order, also
when the test fails. The environment is a parameter of the `federation` fixture, so one scenario
runs in every selected environment.

The kind environment is started before the stand-ins (they listen on its bridge and trust the
issuer its API server names). Under pytest-xdist the controller serves that issuer for the
whole run and deletes a cluster its workers created once they are all done.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossfed.cleanup import Teardown
from crossfed.cluster.kind import NAME_PATTERN
from crossfed.cluster.tools import (
    ToolMissing,
    docker_available,
    find_tool,
    find_tools,
    tool_problem,
)
from crossfed.cluster.tools import add_options as add_tool_options
from crossfed.environments.kind import (
    DEFAULT_DOCKERFILE,
    KindEnvironment,
    KindSettings,
    XdistKindRun,
    provider_problem,
)
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.learned import SigningKeyUnavailable
from crossfed.plan import FederationPlan
from crossfed.scenario import ScenarioRun, Scenarios

KIND_STATUS = pytest.StashKey["str | None"]()
KIND_XDIST = pytest.StashKey["XdistKindRun | str"]()  # the controller's run, or why it failed
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
    group.addoption("--crossfed-env", action="append",
                    choices=("process", "kind", "kubeconfig"),
                    help="environments to run scenarios in (repeatable; default: process, plus "
                         "kind when Docker and kind are usable and no --crossfed-issuer-* is "
                         "given, plus kubeconfig when --kubeconfig is given)")
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
    group.addoption("--crossfed-webhooks", choices=("real", "reference"), default=None,
                    help="what mutates the pods: the real webhook charts (kind: installed with "
                         "helm; kubeconfig: the cluster's own) or crossfed's reference mutator "
                         "(default: real on kind, reference on kubeconfig)")
    group.addoption("--kind-cluster-name", default="crossfed",
                    help="kind cluster to create or reuse (default: crossfed); its key and "
                         "issuer port are kept in ~/.cache/crossfed/tools/kind/<name>")
    group.addoption("--keep-cluster", action="store_true",
                    help="do not delete the kind cluster at the end, even if this run created it")
    group.addoption("--crossfed-probe-dockerfile", default=None,
                    help="Dockerfile of the probe image the kind environment builds, with the "
                         f"repository as context (default: {DEFAULT_DOCKERFILE})")
    add_tool_options(group)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    name = config.getoption("--kind-cluster-name")
    if not NAME_PATTERN.match(name):
        raise pytest.UsageError(f"--kind-cluster-name {name!r} must match {NAME_PATTERN.pattern}")
    if "kind" in (config.getoption("--crossfed-env") or []) and _issuer_given(config):
        raise pytest.UsageError("the kind environment brings its own issuer (key and port kept "
                                "with the cluster): drop --crossfed-issuer-key/-url/-port "
                                "(or CROSSFED_ISSUER_*), or select other environments")


def _issuer_given(config: pytest.Config) -> bool:
    return any(config.getoption(f"--crossfed-issuer-{what}") for what in ("key", "url", "port"))


def _worker_input(config: pytest.Config) -> dict[str, Any]:
    return getattr(config, "workerinput", {})  # set on pytest-xdist workers only


def kind_status(config: pytest.Config) -> str | None:
    """None when the kind environment can run here; else one line: why not, what to install.

    Asked once per run (it runs `docker info`); xdist workers take the controller's answer, so
    that they all collect the same tests.
    """
    if KIND_STATUS not in config.stash:
        worker = _worker_input(config)
        if "crossfed_kind_status" in worker:
            config.stash[KIND_STATUS] = worker["crossfed_kind_status"] or None
        else:
            reason = (provider_problem() or docker_available()
                      or tool_problem("kind", config.getoption("--kind-bin")))
            config.stash[KIND_STATUS] = reason and (
                f"kind environment skipped: {reason} (it needs Docker running and kind on "
                "PATH or --kind-bin; --kubeconfig runs the scenarios on any other cluster)")
    return config.stash[KIND_STATUS]


def pytest_report_header(config: pytest.Config) -> str:
    # Why kind is skipped is said once, in the closing summary (shown also with -q).
    return f"crossfed: environments {', '.join(selected_environments(config))}"


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
    status = kind_status(config)
    if status:
        terminalreporter.write_line(f"crossfed: {status}")


def selected_environments(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--crossfed-env")
    if chosen:
        return list(dict.fromkeys(chosen))
    environments = ["process"]
    if not _issuer_given(config) and kind_status(config) is None:
        environments.append("kind")
    if config.getoption("--kubeconfig"):
        environments.append("kubeconfig")
    return environments


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "federation" in metafunc.fixturenames:
        params = []
        for name in selected_environments(metafunc.config):
            marks: list[Any] = [] if name == "process" else [pytest.mark.cluster]
            status = kind_status(metafunc.config) if name == "kind" else None
            if status:  # asked for explicitly, but not usable here: skipped, with the reason
                marks.append(pytest.mark.skip(reason=status))
            params.append(pytest.param(name, marks=marks, id=name))
        metafunc.parametrize("crossfed_env_name", params, scope="session")


# --- the kind environment ---------------------------------------------------------------------

def kind_settings(config: pytest.Config, run_token: str | None = None) -> KindSettings:
    dockerfile = config.getoption("--crossfed-probe-dockerfile")
    return KindSettings(name=config.getoption("--kind-cluster-name"),
                        webhooks=config.getoption("--crossfed-webhooks") or "real",
                        keep=config.getoption("--keep-cluster"),
                        probe_image=config.getoption("--crossfed-probe-image"),
                        dockerfile=Path(dockerfile).resolve() if dockerfile else DEFAULT_DOCKERFILE,
                        run_token=run_token)


def _kind_runs(config: pytest.Config) -> bool:
    return "kind" in selected_environments(config) and kind_status(config) is None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """xdist controller: serve the kind issuer for all workers, before they start."""
    config = session.config
    if not config.pluginmanager.hasplugin("dsession") or not _kind_runs(config):
        return
    pki_dir = Path(tempfile.mkdtemp(prefix="crossfed-kind-issuer-"))
    config.add_cleanup(lambda: shutil.rmtree(pki_dir, ignore_errors=True))
    try:
        run = XdistKindRun(kind_settings(config, run_token=uuid.uuid4().hex), pki_dir)
    except Exception as exc:  # the kind scenarios report it; the other environments still run
        log.warning("crossfed kind: %s", exc)
        config.stash[KIND_XDIST] = str(exc)
        return
    config.stash[KIND_XDIST] = run
    config.add_cleanup(lambda: run.finish(_kind_bin(config)))


def _kind_bin(config: pytest.Config) -> Path | None:
    try:
        return find_tool("kind", config.getoption("--kind-bin"), download=False)
    except ToolMissing:
        return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller, for each worker: the kind status and the shared kind issuer."""
    node.workerinput["crossfed_kind_status"] = kind_status(node.config) or ""
    run = node.config.stash.get(KIND_XDIST, None)
    if isinstance(run, XdistKindRun):
        node.workerinput["crossfed_kind"] = run.worker_input()
    elif run is not None:
        node.workerinput["crossfed_kind"] = {"error": run}


def _runs_kind_scenarios(session: pytest.Session) -> bool:
    return any(getattr(item, "callspec", None) is not None
               and item.callspec.params.get("crossfed_env_name") == "kind"
               for item in session.items)


@pytest.fixture(scope="session")
def crossfed_kind(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindEnvironment]:
    """The kind cluster, created or reused, with its issuer, kubeconfig and probe image."""
    config = request.config
    status = kind_status(config)
    if status:
        pytest.skip(status)
    shared = _worker_input(config).get("crossfed_kind")
    if shared and "error" in shared:
        raise RuntimeError(f"kind environment failed on the xdist controller: {shared['error']}")
    run_token = shared["run_token"] if shared else None  # xdist: the controller deletes
    settings = kind_settings(config, run_token)
    tools = find_tools({tool: config.getoption(f"--{tool}-bin")
                        for tool in ("kind", "kubectl", "helm")},
                       helm=settings.webhooks == "real")  # the reference mutator needs no helm
    environment = KindEnvironment(settings, tools)
    environment.start(tmp_path_factory.mktemp("kind-issuer"),
                      (shared["issuer_url"], Path(shared["issuer_ca"])) if shared else None)
    yield environment
    environment.stop()


def _kind_for_clouds(request: pytest.FixtureRequest) -> KindEnvironment | None:
    """The kind environment when this session runs kind scenarios (started first: the stand-ins
    take its key, issuer and bridge). If it fails, the other environments still run; the kind
    scenarios then report the failure themselves (pytest keeps the fixture's error)."""
    if kind_status(request.config) or not _runs_kind_scenarios(request.session):
        return None
    try:
        return request.getfixturevalue("crossfed_kind")
    except Exception as exc:
        log.warning("crossfed kind: not available, the kind scenarios will fail: %s", exc)
        return None


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
    external = options("--crossfed-issuer-url")
    if external and not options("--crossfed-issuer-ca"):
        raise pytest.UsageError("--crossfed-issuer-url needs --crossfed-issuer-ca")
    issuer = (external, Path(options("--crossfed-issuer-ca"))) if external else None
    issuer_port = options("--crossfed-issuer-port")
    kind = _kind_for_clouds(request)
    if kind is not None:  # the issuer its API server names, and its bridge
        assert kind.state is not None and kind.bridge is not None
        key, issuer, issuer_port = kind.state.key, kind.issuer, 0
        host = options("--crossfed-standin-host") or kind.bridge
    log.info("crossfed: starting stand-ins in %s (listening on %s)", state_dir, host)
    clouds = LocalStandIns.start(state_dir, options("--crossfed-run-id"), key=key,
                                 issuer_port=issuer_port, host=host, external_issuer=issuer)
    yield clouds
    clouds.stop()


def _connect(options: Any, clouds: LocalStandIns) -> Any:
    """A KubeconfigCluster attached to the run's stand-ins (their CA, tenant, Entra); a cluster
    that signs with a key of its own has its issuer learned and mirrored for the stand-ins."""
    from crossfed.environments.kubeconfig import KubeconfigCluster

    return KubeconfigCluster.for_clouds(options, clouds)


@pytest.fixture(scope="session")
def crossfed_cluster(request: pytest.FixtureRequest, crossfed_clouds: LocalStandIns):
    """The `kubeconfig` environment's cluster."""
    from crossfed.environments.kubeconfig import KubeconfigOptions
    from crossfed.workload.pod import PodSettings

    kubeconfig = request.config.getoption("--kubeconfig")
    if not kubeconfig:
        pytest.skip("the kubeconfig environment needs --kubeconfig (or CROSSFED_KUBECONFIG)")
    pods = PodSettings(image=request.config.getoption("--crossfed-probe-image"),
                       node_name=request.config.getoption("--crossfed-node"))
    reference = request.config.getoption("--crossfed-webhooks") != "real"
    cluster = _connect(KubeconfigOptions(kubeconfig, pods, reference_mutator=reference),
                       crossfed_clouds)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def crossfed_kind_cluster(crossfed_kind: KindEnvironment, crossfed_clouds: LocalStandIns):
    """The `kind` environment's cluster: webhooks installed (or the reference mutator)."""
    assert crossfed_kind.state is not None
    if crossfed_clouds.issuer.url != crossfed_kind.state.issuer_url:
        raise RuntimeError(f"the stand-ins trust issuer {crossfed_clouds.issuer.url}, but the "
                           f"kind cluster names {crossfed_kind.state.issuer_url}")
    cluster = crossfed_kind.attach(crossfed_clouds.azure.tenant_id,
                                   lambda options: _connect(options, crossfed_clouds))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def crossfed_environment(request: pytest.FixtureRequest, crossfed_env_name: str,
                         crossfed_clouds: LocalStandIns) -> Scenarios:
    if crossfed_env_name == "process":
        return Scenarios(crossfed_clouds)
    fixture = {"kubeconfig": "crossfed_cluster", "kind": "crossfed_kind_cluster"}
    return Scenarios(crossfed_clouds, request.getfixturevalue(fixture[crossfed_env_name]),
                     name=crossfed_env_name)


class Federation:
    """What a scenario test holds: run a plan, judge it; cleanup is the fixture's job."""

    def __init__(self, environment: Scenarios, teardown: Teardown) -> None:
        self.environment, self.teardown = environment, teardown

    def run(self, plan: FederationPlan) -> ScenarioRun:
        try:
            return self.environment.run(plan, self.teardown)
        except SigningKeyUnavailable as exc:  # a cluster with its own key: the variant needs it
            pytest.skip(str(exc))

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
