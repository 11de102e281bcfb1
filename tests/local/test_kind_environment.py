"""The kind environment's orchestration: which commands it runs, in which order, and what it
creates, reuses, deletes and keeps.

There is no Docker daemon, kind or registry here, so every kind/docker/helm/kubectl invocation
goes to `FakeTools`, which answers as those tools do (output shapes from
shared/reference/kind-and-charts-facts.md) and keeps the state they would keep (clusters,
images, releases). What these tests prove is the orchestration and the exact argv: create vs
reuse, one creator under the real file lock, deletion rules, the helm sequence, tear-down after
a failure, the persisted key and port. They do not prove that kind, Docker or the charts behave
as answered; the issuer, the lock files and the pytest plugin runs below are real.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kind_fakes import IPAM, FakeTools

from crossfed.cluster.kind import bridge_gateway
from crossfed.cluster.tools import RELEASES, Tools, tool_problem
from crossfed.environments.kind import (
    DEFAULT_DOCKERFILE,
    KindEnvironment,
    KindSettings,
    KindSetupError,
    KindState,
)
from crossfed.environments.kind_xdist import XdistKindRun
from crossfed.webhooks import charts

pytestmark = [pytest.mark.local]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = Tools(kind=Path("/fake/bin/kind"), kubectl=Path("/fake/bin/kubectl"),
              helm=Path("/fake/bin/helm"), docker=Path("/fake/bin/docker"))
TENANT = "8a1d5c1e-0000-4000-8000-00000000cafe"
# `docker network inspect kind --format '{{json .IPAM.Config}}'`: the IPv6 entry comes first.
def environment(tmp_path: Path, fake: FakeTools, **settings: Any) -> KindEnvironment:
    sleeps: list[float] = []
    env = KindEnvironment(KindSettings(state_dir=tmp_path / "state", **settings), TOOLS,
                          runner=fake, sleep=sleeps.append)
    env.sleeps = sleeps  # type: ignore[attr-defined]
    return env


def connect_recorder() -> tuple[list[Any], Any]:
    connected: list[Any] = []

    def connect(options: Any) -> str:
        connected.append(options)
        return "cluster"

    return connected, connect


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


# --- create, reuse, delete, keep ------------------------------------------------------------

def test_first_start_creates_the_cluster_for_crossfeds_issuer_and_loads_the_probe(tmp_path):
    fake = FakeTools()
    env = environment(tmp_path, fake).start(tmp_path / "pki")
    state = env.state
    assert state is not None and env.cluster is not None and env.cluster.created

    state_dir = tmp_path / "state"
    [get, create] = fake.of("kind")[:2]
    assert get == ["get", "clusters"]
    assert create == ["create", "cluster", "--name", "crossfed",
                      "--config", str(state_dir / "kind-config.yaml"),
                      "--kubeconfig", str(state_dir / "kubeconfig"), "--wait", "3m"]
    patch = yaml.safe_load(fake.clusters["crossfed"]["config"]["kubeadmConfigPatches"][0])
    flags = patch["apiServer"]["extraArgs"]
    assert flags["service-account-issuer"] == state.issuer_url == env.issuer[0]
    assert flags["api-audiences"] == (f"{state.issuer_url},sts.amazonaws.com,"
                                      "api://AzureADTokenExchange")

    # the issuer the cluster names is served, with the state's key, over HTTPS
    discovery = requests.get(state.issuer_url + "/.well-known/openid-configuration",
                             verify=str(env.issuer[1]), timeout=10).json()
    jwks = requests.get(discovery["jwks_uri"], verify=str(env.issuer[1]), timeout=10).json()
    assert [k["kid"] for k in jwks["keys"]] == [state.key.kid]

    assert env.kubeconfig == state_dir / "kubeconfig"
    assert stat.S_IMODE(env.kubeconfig.stat().st_mode) == 0o600
    assert env.bridge == "172.18.0.1"  # the IPv4 entry, not item 0

    docker = fake.of("docker")
    assert docker[0][:3] == ["network", "inspect", "kind"]
    assert docker[1][:2] == ["image", "inspect"]  # missing -> built, from the package
    [build] = [c for c in docker if c[0] == "build"]
    assert build[:5] == ["build", "--file", str(DEFAULT_DOCKERFILE), "--tag",
                         "crossfed/probe:local"]
    # the context held only the probe's sources (FakeTools lists them) and is gone afterwards
    assert fake.contexts == [["crossfed/__init__.py", "crossfed/probe/__init__.py",
                              "crossfed/probe/__main__.py", "crossfed/probe/aws.py",
                              "crossfed/probe/azure.py", "crossfed/probe/report.py"]]
    assert not Path(build[-1]).exists()
    image_id = fake.images["crossfed/probe:local"][0]
    assert ["save", "--output", str(state_dir / "probe-image.tar"),
            "crossfed/probe:local"] in docker
    assert fake.of("kind")[-1] == ["load", "image-archive", str(state_dir / "probe-image.tar"),
                                   "--name", "crossfed"]
    assert fake.clusters["crossfed"]["loaded"] == [image_id]
    assert not (state_dir / "probe-image.tar").exists()  # loaded, then removed

    assert env.stop() == []
    assert fake.of("kind")[-1] == ["delete", "cluster", "--name", "crossfed",
                                   "--kubeconfig", str(state_dir / "kubeconfig")]
    assert fake.clusters == {} and port_is_closed(state.issuer_port)


def test_a_listed_cluster_is_reused_without_rebuilding_or_reloading_and_not_deleted(tmp_path):
    fake = FakeTools()
    first = environment(tmp_path, fake, keep=True).start(tmp_path / "pki1")
    first.stop()
    assert "crossfed" in fake.clusters  # kept
    fake.calls.clear()

    second = environment(tmp_path, fake).start(tmp_path / "pki2")
    assert second.cluster is not None and not second.cluster.created
    assert ["get", "clusters"] in fake.of("kind")
    assert not [c for c in fake.of("kind") if c[0] in ("create", "load")]
    assert not [c for c in fake.of("docker") if c[0] in ("build", "save")]
    second.stop()
    assert "crossfed" in fake.clusters
    assert not [c for c in fake.of("kind") if c[0] == "delete"]


def test_a_recreated_cluster_gets_the_probe_image_again(tmp_path):
    fake = FakeTools()
    environment(tmp_path, fake).start(tmp_path / "pki1").stop()  # created, then deleted
    env = environment(tmp_path, fake).start(tmp_path / "pki2")
    assert env.cluster is not None and env.cluster.created
    assert len(fake.clusters["crossfed"]["loaded"]) == 1  # new node: loaded again
    assert len([c for c in fake.of("docker") if c[0] == "build"]) == 1  # image up to date
    env.stop()


def test_a_stale_probe_image_is_rebuilt(tmp_path):
    fake = FakeTools()
    fake.images["crossfed/probe:local"] = ("sha256:" + "0" * 64, "built-from-older-sources")
    env = environment(tmp_path, fake).start(tmp_path / "pki")
    assert [c[0] for c in fake.of("docker")].count("build") == 1
    assert fake.clusters["crossfed"]["loaded"] == [fake.images["crossfed/probe:local"][0]]
    env.stop()


@pytest.mark.parametrize(("keep", "deleted"), [(False, True), (True, False)])
def test_a_created_cluster_is_deleted_unless_kept(tmp_path, keep, deleted):
    fake = FakeTools()
    env = environment(tmp_path, fake, keep=keep).start(tmp_path / "pki")
    env.attach(TENANT, connect_recorder()[1])
    assert env.stop() == []
    assert ("crossfed" not in fake.clusters) is deleted
    assert any(c[0] == "delete" for c in fake.of("kind")) is deleted


def test_a_cluster_naming_another_issuer_is_refused_and_left_alone(tmp_path):
    fake = FakeTools()
    environment(tmp_path / "other", fake, keep=True).start(tmp_path / "pki1").stop()
    env = environment(tmp_path, fake)  # another state dir: another key and port
    with pytest.raises(KindSetupError, match="was not created from .*kind delete cluster "
                                             "--name crossfed"):
        env.start(tmp_path / "pki2")
    assert "crossfed" in fake.clusters
    assert env.state is not None and port_is_closed(env.state.issuer_port)


# --- one creator under the lock ---------------------------------------------------------------

def test_two_concurrent_workers_create_once_and_share_the_state(tmp_path):
    """As pytest-xdist workers do: same state dir, the controller's issuer, real file locks."""
    fake = FakeTools(create_delay=0.5)
    state = KindState.load_or_create(tmp_path / "state")
    server, bundle = state.serve_issuer(tmp_path / "pki")
    try:
        workers = [environment(tmp_path, fake) for _ in range(2)]
        errors: list[BaseException] = []

        def start(env: KindEnvironment) -> None:
            try:
                env.start(tmp_path / "unused", (server.url, bundle))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert len([c for c in fake.of("kind") if c[:2] == ["create", "cluster"]]) == 1
        assert sorted(w.cluster.created for w in workers) == [False, True]  # type: ignore
        assert {w.state.key.kid for w in workers} == {state.key.kid}  # type: ignore
        assert len(fake.clusters["crossfed"]["loaded"]) == 1  # the second found it loaded
    finally:
        server.stop()


# --- webhooks ---------------------------------------------------------------------------------

def test_real_webhooks_are_installed_in_order_with_the_tenant_then_checked(tmp_path):
    fake = FakeTools(polls_without_ca=1)
    env = environment(tmp_path, fake).start(tmp_path / "pki")
    connected, connect = connect_recorder()
    assert env.attach(TENANT, connect) == "cluster"

    kubeconfig = str(tmp_path / "state" / "kubeconfig")
    helm = fake.of("helm")
    assert [c[2] for c in helm] == ["cert-manager", "amazon-eks-pod-identity-webhook",
                                    "workload-identity-webhook"]
    for call, (chart, repo, version, namespace) in zip(helm, [
            ("cert-manager", charts.CERT_MANAGER_REPO, charts.CERT_MANAGER_VERSION,
             "cert-manager"),
            ("amazon-eks-pod-identity-webhook", charts.EKS_WEBHOOK_REPO,
             charts.EKS_WEBHOOK_VERSION, "pod-identity-webhook"),
            ("workload-identity-webhook", charts.AZWI_REPO, charts.AZWI_VERSION,
             "azure-workload-identity-system")], strict=True):
        values = str(tmp_path / "state" / "helm" / f"{chart}.values.yaml")
        assert call == ["upgrade", "--install", chart, chart, "--repo", repo,
                        "--version", version, "--namespace", namespace, "--create-namespace",
                        "--values", values, "--wait", "--timeout", "5m0s",
                        "--kubeconfig", kubeconfig]
    azwi_values = yaml.safe_load((tmp_path / "state" / "helm" /
                                  "workload-identity-webhook.values.yaml").read_text())
    assert azwi_values["azureTenantID"] == TENANT

    # the caBundle came one poll late: checked again after a pause
    checks = [c for c in fake.of("kubectl") if c[1] == "mutatingwebhookconfigurations"]
    assert len(checks) == 2 and env.sleeps == [3]  # type: ignore[attr-defined]
    [options] = connected
    assert options.reference_mutator is False
    assert options.kubeconfig == kubeconfig and options.mutator_host == "172.18.0.1"
    assert options.pods.image == "crossfed/probe:local"

    # a second run on the kept cluster finds them installed: no helm, same check
    env.settings = replace(env.settings, keep=True)
    env.stop()
    fake.calls.clear()
    again = environment(tmp_path, fake).start(tmp_path / "pki2")
    again.attach("another-runs-tenant", connect)
    assert fake.of("helm") == []
    again.stop()


def test_reference_webhooks_need_no_helm(tmp_path):
    fake = FakeTools()
    env = environment(tmp_path, fake, webhooks="reference").start(tmp_path / "pki")
    connected, connect = connect_recorder()
    env.attach(TENANT, connect)
    assert fake.of("helm") == []
    assert not [c for c in fake.of("kubectl") if "mutatingwebhookconfigurations" in c]
    [options] = connected
    assert options.reference_mutator is True and options.mutator_host == "172.18.0.1"
    env.stop()


def test_reference_mode_refuses_a_cluster_with_the_real_webhooks(tmp_path):
    fake = FakeTools()
    real = environment(tmp_path, fake, keep=True).start(tmp_path / "pki1")
    real.attach(TENANT, connect_recorder()[1])
    real.stop()
    env = environment(tmp_path, fake, webhooks="reference").start(tmp_path / "pki2")
    with pytest.raises(KindSetupError, match="has the real webhooks installed"):
        env.attach(TENANT, connect_recorder()[1])
    assert "crossfed" in fake.clusters  # reused, so not deleted


def test_webhooks_never_ready_fail_with_the_problems(tmp_path):
    fake = FakeTools(polls_without_ca=100)
    env = environment(tmp_path, fake, webhook_checks=3).start(tmp_path / "pki")
    with pytest.raises(KindSetupError, match="amazon-eks-pod-identity-webhook.*empty caBundle"):
        env.attach(TENANT, connect_recorder()[1])
    assert env.sleeps == [3, 3]  # type: ignore[attr-defined]
    assert fake.clusters == {}  # created by this run: torn down


# --- tear-down after a failure ----------------------------------------------------------------

def test_helm_failure_tears_down_the_created_cluster_and_the_issuer(tmp_path):
    fake = FakeTools(helm_failures={"amazon-eks-pod-identity-webhook":
                                    "context deadline exceeded"})
    env = environment(tmp_path, fake).start(tmp_path / "pki")
    assert env.state is not None
    connected, connect = connect_recorder()
    with pytest.raises(KindSetupError) as caught:
        env.attach(TENANT, connect)
    assert str(caught.value) == ("helm install of amazon-eks-pod-identity-webhook "
                                 f"{charts.EKS_WEBHOOK_VERSION} failed (exit 1): Error: UPGRADE "
                                 "FAILED: context deadline exceeded")
    assert [c[2] for c in fake.of("helm")] == ["cert-manager", "amazon-eks-pod-identity-webhook"]
    assert fake.of("kind")[-1][:2] == ["delete", "cluster"] and fake.clusters == {}
    assert port_is_closed(env.state.issuer_port) and connected == []
    assert env.stop() == []  # nothing left to undo


def test_build_failure_tears_down_the_created_cluster(tmp_path):
    fake = FakeTools(build_fails=True)
    env = environment(tmp_path, fake)
    with pytest.raises(KindSetupError, match="docker build of the probe image failed .*pip"):
        env.start(tmp_path / "pki")
    assert fake.clusters == {}


def test_a_failure_keeps_the_cluster_when_asked_to_keep_it(tmp_path):
    fake = FakeTools(build_fails=True)
    with pytest.raises(KindSetupError):
        environment(tmp_path, fake, keep=True).start(tmp_path / "pki")
    assert "crossfed" in fake.clusters


# --- the persisted state ----------------------------------------------------------------------

def test_state_key_is_private_and_reused_with_its_port(tmp_path):
    fake = FakeTools()
    first = environment(tmp_path, fake, keep=True).start(tmp_path / "pki1")
    first.stop()
    second = environment(tmp_path, fake).start(tmp_path / "pki2")
    assert first.state is not None and second.state is not None
    assert second.state.key.kid == first.state.key.kid
    assert second.state.issuer_port == first.state.issuer_port
    state_dir = tmp_path / "state"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for key_file in ("sa-signer.key", "sa-signer.pub"):
        assert stat.S_IMODE((state_dir / "issuer" / key_file).stat().st_mode) == 0o600
    assert json.loads((state_dir / "state.json").read_text()) == {
        "issuer_port": first.state.issuer_port}
    second.stop()


def test_default_state_dir_is_in_the_tools_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert KindSettings(name="dev").directory == (
        tmp_path / ".cache" / "crossfed" / "tools" / "kind" / "dev")


def test_a_busy_issuer_port_is_reported_with_what_to_do(tmp_path):
    state = KindState.load_or_create(tmp_path / "state")
    server, _ = state.serve_issuer(tmp_path / "pki1")
    try:
        with pytest.raises(KindSetupError, match=f"127.0.0.1:{state.issuer_port}.*another "
                                                 "crossfed run"):
            state.serve_issuer(tmp_path / "pki2")
    finally:
        server.stop()


# --- pytest-xdist: the controller's part ------------------------------------------------------

def test_xdist_controller_serves_the_issuer_and_deletes_what_a_worker_created(tmp_path):
    settings = KindSettings(state_dir=tmp_path / "state", run_token="run-1")
    run = XdistKindRun(settings, tmp_path / "pki")
    shared = run.worker_input()
    assert shared["run_token"] == "run-1"
    discovery = requests.get(shared["issuer_url"] + "/.well-known/openid-configuration",
                             verify=shared["issuer_ca"], timeout=10).json()
    assert discovery["issuer"] == shared["issuer_url"]

    fake = FakeTools()
    worker = KindEnvironment(settings, TOOLS, runner=fake)
    worker.start(tmp_path / "unused", (shared["issuer_url"], Path(shared["issuer_ca"])))
    assert worker.cluster is not None and worker.cluster.created
    assert worker.stop() == []
    assert "crossfed" in fake.clusters  # other workers may still use it

    # only the run whose worker created the cluster deletes it
    run.settings = replace(settings, run_token="run-2")
    assert run.finish(TOOLS.kind, runner=fake) is False and "crossfed" in fake.clusters
    assert port_is_closed(KindState.load_or_create(tmp_path / "state").issuer_port)

    run = XdistKindRun(settings, tmp_path / "pki2")
    assert run.finish(TOOLS.kind, runner=fake) is True and fake.clusters == {}
    assert not (tmp_path / "state" / "created-by-run").exists()


# --- building blocks: bridge address, tool status ---------------------------------------------

def test_bridge_gateway_takes_the_ipv4_entry_or_its_first_host() -> None:
    assert bridge_gateway(IPAM) == "172.18.0.1"
    assert bridge_gateway([{"Subnet": "fc00::/64"}, {"Subnet": "172.19.0.0/16"}]) == "172.19.0.1"
    with pytest.raises(ValueError, match="no IPv4 subnet"):
        bridge_gateway([{"Subnet": "fc00::/64", "Gateway": "fc00::1"}])


def test_tool_problem_accepts_a_fetchable_release_and_names_what_is_missing(tmp_path) -> None:
    empty = str(tmp_path / "empty")
    assert tool_problem("kind", path_env=empty, cache_dir=tmp_path, plat=("linux", "amd64")) is None
    reason = tool_problem("kind", path_env=empty, cache_dir=tmp_path, plat=("plan9", "386"))
    assert reason is not None and "--crossfed-kind-bin" in reason
    reason = tool_problem("kind", tmp_path / "nope", plat=("linux", "amd64"))
    assert reason is not None and "is not an executable file" in reason
    assert ("linux", "amd64") in RELEASES["kind"].sha256


# --- the pytest plugin on a machine without Docker --------------------------------------------

def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess whose PATH has no docker and no kind: a laptop without them."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSFED_", "PYTEST_"))}
    env.update(PATH=str(empty), HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("verbosity", [["-q"], []], ids=["quiet", "default"])
def test_without_docker_one_line_says_why_kind_is_skipped(tmp_path, verbosity) -> None:
    result = run_pytest(tmp_path, "--collect-only", *verbosity, "tests/e2e")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "kind" in line.lower()
             and "environment" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("crossfed: kind environment skipped: docker: no docker binary "
                               "on PATH")
    assert "--crossfed-kind-bin" in lines[0]
    assert "[kind-" not in result.stdout  # the default is process only


def test_asking_for_kind_without_docker_skips_its_scenarios(tmp_path) -> None:
    result = run_pytest(tmp_path, "-q", "-rs", "--crossfed-env", "kind",
                        "tests/e2e/test_aws_federation.py")
    assert result.returncode == 0, result.stdout + result.stderr
    # the 13 kind scenarios (named environments and no --cloud: no cloud-tier parameters)
    assert "13 skipped" in result.stdout and "error" not in result.stdout.lower()
    assert "SKIPPED [12] crossfed/suite/test_aws.py" in result.stdout  # the suite's own file
    assert "kind environment skipped: docker: no docker binary on PATH" in result.stdout


WORKER_TEST = '''
import requests

def test_worker_gets_the_controllers_kind_issuer(request):
    shared = request.config.workerinput["crossfed_kind"]
    assert request.config.workerinput["crossfed_kind_status"] == ""
    discovery = requests.get(shared["issuer_url"] + "/.well-known/openid-configuration",
                             verify=shared["issuer_ca"], timeout=10).json()
    assert discovery["issuer"] == shared["issuer_url"]
'''


def _xdist_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest -n 2 with a docker that answers `info` (and logs each call) and a kind on PATH."""
    pytest.importorskip("xdist", reason="needs pytest-xdist (pip install pytest-xdist)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls"
    for name, body in (("docker", f'echo "$*" >> {calls}; echo "28.2.2"'), ("kind", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "test_worker.py").write_text(WORKER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSFED_", "PYTEST_"))}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
                           "-q", *args, "test_worker.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_xdist_workers_get_the_issuer_the_controller_serves(tmp_path) -> None:
    """The plugin's hooks under `-n 2`, asked for kind, with docker and kind answering."""
    result = _xdist_run(tmp_path, "--crossfed-env", "kind")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    state = json.loads((tmp_path / ".cache/crossfed/tools/kind/crossfed/state.json").read_text())
    assert port_is_closed(state["issuer_port"])  # stopped when the run ended


def test_xdist_controller_does_nothing_when_crossfed_is_not_asked_for(tmp_path) -> None:
    """Installed but unused: no `docker info`, no kind state, no header line under xdist."""
    result = _xdist_run(tmp_path, "-k", "not worker_gets")
    assert result.returncode == 5, result.stdout + result.stderr  # nothing selected
    assert not (tmp_path / "docker-calls").exists()
    assert not (tmp_path / ".cache" / "crossfed").exists()
    assert "crossfed" not in result.stdout
