"""crossfed's pytest plugin: options, markers and the fixtures that stand up a run's environment.

Installed, this plugin is loaded by every pytest run in the environment, also in projects that
never use crossfed. So it stays out of the way: importing it imports nothing but pytest, and it
runs nothing (no `docker info`, no header line, no summary) until crossfed is engaged, that is
until a test uses a crossfed fixture, a crossfed option or CROSSFED_* variable is given, or the
`-m` expression names a crossfed marker. Everything heavy is imported inside the fixtures.

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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crossfed.pytest_options import (  # noqa: F401 (hooks: pytest finds them on this module)
    DEPRECATIONS,
    KIND_NAME,
    MARKERS,
    engaged,
    pytest_addoption,
    pytest_load_initial_conftests,
)
from crossfed.pytest_summary import (  # noqa: F401 (hooks: pytest finds them on this module)
    SCENARIO_OUTCOMES,
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    write_summary,
)

if TYPE_CHECKING:
    from crossfed.environments.kind import KindEnvironment, KindSettings
    from crossfed.environments.standins import LocalStandIns
    from crossfed.federation import Federation
    from crossfed.scenario import Scenarios

KIND_STATUS = pytest.StashKey["str | None"]()
KIND_XDIST = pytest.StashKey[Any]()  # the controller's XdistKindRun, or why it failed (str)
USED = pytest.StashKey[bool]()  # a collected test uses the federation fixture
log = logging.getLogger("crossfed")


def pytest_configure(config: pytest.Config) -> None:
    from crossfed import progress
    from crossfed.pytest_summary import remember_config

    progress.use_pytest(config)
    remember_config(config)
    if engaged(config):
        _redact_logs()
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    for text in config.stash.get(DEPRECATIONS, []):
        config.issue_config_time_warning(pytest.PytestDeprecationWarning(text), stacklevel=2)
    name = config.getoption("--kind-cluster-name")
    if not KIND_NAME.match(name):
        raise pytest.UsageError(f"--kind-cluster-name {name!r} must match {KIND_NAME.pattern}")
    if "kind" in (config.getoption("--crossfed-env") or []) and _issuer_given(config):
        raise pytest.UsageError("the kind environment brings its own issuer (key and port kept "
                                "with the cluster): drop --crossfed-issuer-key/-url/-port "
                                "(or CROSSFED_ISSUER_*), or select other environments")
    from crossfed.upgrade_flow import configuration_problem

    problem = configuration_problem(config.getoption, _xdist_workers(config))
    if problem:
        raise pytest.UsageError(problem)
    from crossfed.cloud.options import CloudSettings

    problems = CloudSettings.from_options(config.getoption).problems()
    if problems:
        raise pytest.UsageError("; ".join(problems))
    host = config.getoption("--crossfed-standin-host")
    if host:
        from crossfed.listen import check_listen_host

        try:
            check_listen_host(host)
        except ValueError as exc:
            raise pytest.UsageError(f"--crossfed-standin-host: {exc}") from None


def _redact_logs() -> None:
    """Every log record of this process redacted where it is made (crossfed.log_redaction):
    from the start when crossfed is asked for, else once a crossfed fixture runs. A run that
    never engages crossfed keeps its logging as it is."""
    from crossfed.log_redaction import install

    install()


def _issuer_given(config: pytest.Config) -> bool:
    return any(config.getoption(f"--crossfed-issuer-{what}") for what in ("key", "url", "port"))


def _worker_input(config: pytest.Config) -> dict[str, Any]:
    return getattr(config, "workerinput", {})  # set on pytest-xdist workers only


def _xdist_workers(config: pytest.Config) -> int:
    """How many xdist workers this session runs (0: none), as the controller sees it."""
    if _worker_input(config):
        return int(_worker_input(config).get("workercount", 2))
    numprocesses = getattr(config.option, "numprocesses", None)
    if numprocesses in (None, 0) or not config.pluginmanager.hasplugin("xdist"):
        return 0
    return int(numprocesses) if isinstance(numprocesses, int) else 2  # "auto" / "logical"


XDIST_KIND_NOT_ASKED = (
    "kind environment skipped: under pytest-xdist its issuer is served by the controller, "
    "which serves it only when crossfed is asked for on the command line (--crossfed-env kind, "
    "or -m with a crossfed marker such as local)")


def kind_status(config: pytest.Config) -> str | None:
    """None when the kind environment can run here; else one line: why not, what to install.

    Asked once per run (it runs `docker info`), and only once crossfed is engaged; xdist
    workers take the controller's answer, so that they all collect the same tests.
    """
    if KIND_STATUS not in config.stash:
        worker = _worker_input(config)
        if "crossfed_kind_status" in worker:
            config.stash[KIND_STATUS] = worker["crossfed_kind_status"] or None
        elif worker:  # an xdist worker whose controller did not look
            config.stash[KIND_STATUS] = XDIST_KIND_NOT_ASKED
        else:
            from crossfed.cluster.tools import docker_available, tool_problem
            from crossfed.environments.kind import provider_problem

            reason = (provider_problem() or docker_available()
                      or tool_problem("kind", config.getoption("--crossfed-kind-bin")))
            config.stash[KIND_STATUS] = reason and (
                f"kind environment skipped: {reason} (it needs Docker Engine running on Linux "
                "and kind on PATH or --crossfed-kind-bin; --crossfed-kubeconfig runs the "
                "scenarios on any other cluster)")
    return config.stash[KIND_STATUS]


def pytest_report_header(config: pytest.Config) -> str | None:
    # Only when asked for: a project that has crossfed installed but unused sees nothing.
    # Why kind is skipped is said once, in the closing summary (shown also with -q).
    if not engaged(config):
        return None
    return f"crossfed: environments {', '.join(selected_environments(config))}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = write_summary(terminalreporter, config)
    from crossfed import pytest_report

    written = pytest_report.write(config, lines)
    if written is not None:
        terminalreporter.write_line(f"crossfed: run report: {written}")
    if config.stash.get(USED, False) or SCENARIO_OUTCOMES or engaged(config):
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
    if config.getoption("--crossfed-kubeconfig"):
        environments.append("kubeconfig")
    return environments


CLOUD_ENVIRONMENTS = ("cloud-process", "cloud-cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The environment is a parameter: the local ones (marked `local`) and the cloud tier's
    (marked `cloud`, skipped with the flags to set unless --cloud enables them). A test marked
    `local` itself gets only the local ones, one marked `cloud` only the cloud ones."""
    if "federation" not in metafunc.fixturenames:
        return
    config = metafunc.config
    config.stash[USED] = True
    own = {mark.name for mark in metafunc.definition.iter_markers()}
    params = []
    from crossfed.upgrade_flow import chosen_versions, phase_names

    upgrading = chosen_versions(config.getoption)[1] is not None
    if "cloud" not in own or "local" in own:
        for name in selected_environments(config):
            marks: list[Any] = [pytest.mark.local]
            if name != "process":
                marks.append(pytest.mark.cluster)
            status = kind_status(config) if name == "kind" else None
            if status:  # asked for explicitly, but not usable here: skipped, with the reason
                marks.append(pytest.mark.skip(reason=status))
            for phase_name in phase_names(name, upgrading):  # E, or E@before and E@after
                params.append(pytest.param(phase_name, marks=marks, id=phase_name))
    from crossfed.cloud.options import CloudSettings

    settings = CloudSettings.from_options(config.getoption)
    # Local environments named on the command line, and no --cloud: the cloud ones are left
    # out (not just skipped) since the user said where to run.
    chosen_local_only = bool(config.getoption("--crossfed-env")) and not settings.clouds
    if ("local" not in own or "cloud" in own) and not chosen_local_only:
        directions = [cloud for cloud in ("aws", "azure") if cloud in own]
        direction = directions[0] if len(directions) == 1 else None
        for name in CLOUD_ENVIRONMENTS:
            marks = [pytest.mark.cloud]
            if name == "cloud-cluster":
                marks.append(pytest.mark.cluster)
            reason = settings.skip_reason(direction, name.split("-", 1)[1])
            if reason:
                marks.append(pytest.mark.skip(reason=reason))
            # Only the clusters' pods meet the webhooks: cloud-process runs once.
            for phase_name in phase_names(name, upgrading and name == "cloud-cluster"):
                params.append(pytest.param(phase_name, marks=marks, id=phase_name))
    if "upgrade" in own:  # workloads kept across the upgrade: only where one happens
        params = [param for param in params if "@" in str(param.values[0])]
    metafunc.parametrize("crossfed_env_name", params, scope="session")


# --- the kind environment ---------------------------------------------------------------------

def kind_settings(config: pytest.Config, run_token: str | None = None) -> KindSettings:
    from crossfed.environments.kind import DEFAULT_DOCKERFILE, KindSettings
    from crossfed.upgrade_flow import chosen_versions

    dockerfile = config.getoption("--crossfed-probe-dockerfile")
    archive = config.getoption("--crossfed-probe-image-archive")
    return KindSettings(name=config.getoption("--kind-cluster-name"),
                        node_image=config.getoption("--kind-node-image"),
                        disable_default_cni=config.getoption("--kind-disable-default-cni") or None,
                        probe_archive=Path(archive) if archive else None,
                        webhooks=config.getoption("--crossfed-webhooks") or "real",
                        keep=config.getoption("--crossfed-keep-cluster"),
                        probe_image=config.getoption("--crossfed-probe-image"),
                        dockerfile=Path(dockerfile).resolve() if dockerfile else DEFAULT_DOCKERFILE,
                        run_token=run_token,
                        # attach() installs the first versions; the upgrade flow's @after
                        # environment then upgrades them (crossfed_environment)
                        webhook_versions=chosen_versions(config.getoption)[0])


def _kind_runs(config: pytest.Config) -> bool:
    return "kind" in selected_environments(config) and kind_status(config) is None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """xdist controller: serve the kind issuer for all workers, before they start."""
    config = session.config
    if (not config.pluginmanager.hasplugin("dsession") or not engaged(config)
            or not _kind_runs(config)):
        return
    import uuid

    from crossfed.environments.kind_xdist import XdistKindRun

    token = uuid.uuid4().hex
    pki_dir = _private_run_dir(config, f"kind-issuer-{token[:8]}")
    try:
        run = XdistKindRun(kind_settings(config, run_token=token), pki_dir)
    except Exception as exc:  # the kind scenarios report it; the other environments still run
        log.warning("crossfed kind: %s", exc)
        config.stash[KIND_XDIST] = str(exc)
        return
    config.stash[KIND_XDIST] = run
    config.add_cleanup(lambda: run.finish(_kind_bin(config)))


def _private_run_dir(config: pytest.Config, name: str) -> Path:
    """A 0700 run directory (crossfed.secret_files) for key material, removed when the session
    ends, and by `crossfed sweep --local-state` if the process is killed first."""
    from crossfed.secret_files import release_run_state, run_state_dir

    directory = run_state_dir(name)
    config.add_cleanup(lambda: release_run_state(directory))
    return directory


def _kind_bin(config: pytest.Config) -> Path | None:
    from crossfed.cluster.tools import ToolMissing, find_tool

    try:
        return find_tool("kind", config.getoption("--crossfed-kind-bin"), download=False)
    except ToolMissing:
        return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller, for each worker: the kind status and the shared kind issuer."""
    if not engaged(node.config):
        return  # the workers then leave kind out (XDIST_KIND_NOT_ASKED)
    node.workerinput["crossfed_kind_status"] = kind_status(node.config) or ""
    run = node.config.stash.get(KIND_XDIST, None)
    if run is not None and not isinstance(run, str):
        node.workerinput["crossfed_kind"] = run.worker_input()
    elif run is not None:
        node.workerinput["crossfed_kind"] = {"error": run}


def _runs_kind_scenarios(session: pytest.Session) -> bool:
    return any(getattr(item, "callspec", None) is not None
               and str(item.callspec.params.get("crossfed_env_name")).split("@")[0] == "kind"
               for item in session.items)


@pytest.fixture(scope="session")
def crossfed_kind(request: pytest.FixtureRequest) -> Iterator[KindEnvironment]:
    """The kind cluster, created or reused, with its issuer, kubeconfig and probe image."""
    from crossfed.cluster.tools import find_tools
    from crossfed.environments.kind import KindEnvironment

    config = request.config
    status = kind_status(config)
    if status:
        pytest.skip(status)
    shared = _worker_input(config).get("crossfed_kind")
    if shared and "error" in shared:
        raise RuntimeError(f"kind environment failed on the xdist controller: {shared['error']}")
    run_token = shared["run_token"] if shared else None  # xdist: the controller deletes
    settings = kind_settings(config, run_token)
    tools = find_tools({tool: config.getoption(f"--crossfed-{tool}-bin")
                        for tool in ("kind", "kubectl", "helm")},
                       helm=settings.webhooks == "real")  # the reference mutator needs no helm
    environment = KindEnvironment(settings, tools)
    import uuid

    environment.start(_private_run_dir(config, f"kind-issuer-{uuid.uuid4().hex[:8]}"),
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
def crossfed_clouds(request: pytest.FixtureRequest) -> Iterator[LocalStandIns]:
    """Issuer, AWS and Azure stand-ins and the negative scenarios' issuers, for the session."""
    _redact_logs()
    from crossfed.environments.standins import LocalStandIns, new_run_id
    from crossfed.issuer.keys import SigningKey
    from crossfed.secret_files import release_run_state, run_state_dir

    options = request.config.getoption
    state = options("--crossfed-state-dir")
    run_id = options("--crossfed-run-id") or new_run_id()
    # The run's keys and tokens: a 0700 directory with an owner marker, removed at the end, and
    # by `crossfed sweep --local-state` if this process is killed.
    state_dir = Path(state) if state else run_state_dir(run_id)
    if not state:
        request.addfinalizer(lambda: release_run_state(state_dir))
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
    clouds = LocalStandIns.start(state_dir, run_id, key=key,
                                 issuer_port=issuer_port, host=host, external_issuer=issuer)
    yield clouds
    clouds.stop()


def _connect(options: Any, clouds: LocalStandIns, config: pytest.Config) -> Any:
    """A KubeconfigCluster attached to the run's stand-ins (their CA, tenant, Entra); a cluster
    that signs with a key of its own has its issuer learned and mirrored for the stand-ins."""
    from crossfed.environments.kubeconfig import KubeconfigCluster
    from crossfed.webhooks.pod_drift import watch_from_options

    cluster = KubeconfigCluster.for_clouds(options, clouds)
    watch, planted = watch_from_options(config.getoption, cluster.core)
    if watch is not None:
        cluster.watch_mutations(watch, planted)
    return cluster


@pytest.fixture(scope="session")
def crossfed_cluster(request: pytest.FixtureRequest, crossfed_clouds: LocalStandIns):
    """The `kubeconfig` environment's cluster."""
    from crossfed.environments.kubeconfig import KubeconfigOptions
    from crossfed.workload.pod import PodSettings

    kubeconfig = request.config.getoption("--crossfed-kubeconfig")
    if not kubeconfig:
        pytest.skip("the kubeconfig environment needs --crossfed-kubeconfig "
                    "(or CROSSFED_KUBECONFIG)")
    pods = PodSettings(image=request.config.getoption("--crossfed-probe-image"),
                       node_name=request.config.getoption("--crossfed-node"))
    reference = request.config.getoption("--crossfed-webhooks") != "real"
    cluster = _connect(KubeconfigOptions(kubeconfig, pods, reference_mutator=reference),
                       crossfed_clouds, request.config)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def crossfed_kind_cluster(request: pytest.FixtureRequest, crossfed_kind: KindEnvironment,
                          crossfed_clouds: LocalStandIns):
    """The `kind` environment's cluster: webhooks installed (or the reference mutator)."""
    assert crossfed_kind.state is not None
    if crossfed_clouds.issuer.url != crossfed_kind.state.issuer_url:
        raise RuntimeError(f"the stand-ins trust issuer {crossfed_clouds.issuer.url}, but the "
                           f"kind cluster names {crossfed_kind.state.issuer_url}")
    cluster = crossfed_kind.attach(crossfed_clouds.azure.tenant_id,
                                   lambda options: _connect(options, crossfed_clouds,
                                                            request.config))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def crossfed_cloud_tier(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The cloud tier of the session: accounts, tags, issuers, attached clusters; whatever it
    created is deleted at the end (each scenario's objects already at the scenario's end)."""
    _redact_logs()
    from crossfed.cloud.environment import CloudTier
    from crossfed.cloud.options import CloudSettings
    from crossfed.environments.standins import new_run_id
    from crossfed.issuer.keys import SigningKey
    from crossfed.upgrade_flow import chosen_versions

    options = request.config.getoption
    run_id = options("--crossfed-run-id") or new_run_id()
    state = options("--crossfed-state-dir")
    state_dir = (Path(state) / "cloud" if state
                 else _private_run_dir(request.config, f"cloud-{run_id}"))
    key_path = options("--crossfed-issuer-key")
    tier = CloudTier.start(CloudSettings.from_options(options), run_id, state_dir,
                           key=SigningKey.load(Path(key_path)) if key_path else None,
                           external_issuer=options("--crossfed-issuer-url"),
                           webhook_versions=chosen_versions(options)[0])
    yield tier
    failures = tier.stop()
    if failures:
        log.warning("crossfed cloud: teardown left: %s", "; ".join(failures))


@pytest.fixture(scope="session")
def crossfed_environment(request: pytest.FixtureRequest, crossfed_env_name: str) -> Any:
    from crossfed.scenario import Scenarios
    from crossfed.upgrade_flow import chosen_versions, split, versions_for

    environment, phase = split(crossfed_env_name)
    versions = versions_for(phase, *chosen_versions(request.config.getoption))
    if environment in CLOUD_ENVIRONMENTS:
        from crossfed.cloud.environment import CloudScenarios

        return CloudScenarios(request.getfixturevalue("crossfed_cloud_tier"),
                              environment.split("-", 1)[1], versions, phase)
    clouds = request.getfixturevalue("crossfed_clouds")
    if environment == "process":
        return Scenarios(clouds, name=crossfed_env_name, versions=versions)
    fixture = {"kubeconfig": "crossfed_cluster", "kind": "crossfed_kind_cluster"}
    cluster = request.getfixturevalue(fixture[environment])
    if environment == "kind" and phase == "after":  # the real charts: helm upgrade in place
        from crossfed.progress import progress

        with progress(f"kind: webhook upgrade to {versions}"):
            request.getfixturevalue("crossfed_kind").upgrade_webhooks(clouds.azure.tenant_id,
                                                                      versions)
    return Scenarios(clouds, cluster, name=crossfed_env_name, versions=versions)


@pytest.fixture(scope="session")
def crossfed_kept_runs() -> Iterator[Any]:
    """Workloads kept across a webhook upgrade; removed when the session ends (before the
    stand-ins and clusters they use, which were set up first)."""
    from crossfed.federation import KeptRuns

    kept = KeptRuns()
    yield kept
    failures = kept.release_all()
    if failures:
        log.warning("crossfed: kept workloads' teardown left: %s", "; ".join(failures))


@pytest.fixture
def federation(request: pytest.FixtureRequest,
               crossfed_environment: Scenarios) -> Iterator[Federation]:
    """Run federation plans in the selected environment (`crossfed.Federation`)."""
    from crossfed import pytest_report
    from crossfed.cleanup import Teardown
    from crossfed.federation import Federation

    teardown = Teardown()
    kept = None
    if "@" in crossfed_environment.name:  # the upgrade flow: workloads kept across it
        kept = request.getfixturevalue("crossfed_kept_runs")
    account, token = pytest_report.start(request, crossfed_environment)
    federation = Federation(crossfed_environment, teardown, kept)
    try:
        yield federation
    finally:
        with account.step("teardown"):
            failures = teardown.run()
        pytest_report.finish(request, account, token, federation)
        assert not failures, f"teardown left objects behind: {failures}"


def __getattr__(name: str) -> Any:
    # `from crossfed.pytest_plugin import Federation` (the old home of the class) still works.
    if name == "Federation":
        from crossfed.federation import Federation

        return Federation
    raise AttributeError(name)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """With --upgrade-webhooks-to: per environment, all `before` scenarios, then all `after`;
    without it the tests marked `upgrade` are deselected (they have nothing to check)."""
    if not config.getoption("--upgrade-webhooks-to"):
        unused = [item for item in items if item.get_closest_marker("upgrade")]
        if unused:
            config.hook.pytest_deselected(items=unused)
            items[:] = [item for item in items if not item.get_closest_marker("upgrade")]
        return
    from crossfed.upgrade_flow import order_items

    order_items(items)
