"""`crossfed sweep`: what a killed run left in a cluster is found by its run-id label and deleted.

The cluster tests need --kubeconfig (CROSSFED_KUBECONFIG; `.ci/run` brings one up); the usage
errors run anywhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from crossfed.webhooks.reference_mutator import webhook_configuration
from crossfed.workload.pod import RUN_LABEL

pytestmark = [pytest.mark.local]


def crossfed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossfed.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, client.ApiClient]]:
    kubeconfig = request.config.getoption("--crossfed-kubeconfig")
    if not kubeconfig:
        pytest.skip("needs a cluster: --crossfed-kubeconfig (or CROSSFED_KUBECONFIG)")
    yield kubeconfig, config.new_client_from_config(config_file=kubeconfig)


def _leave_behind(api_client: client.ApiClient, run_id: str) -> tuple[str, str]:
    """What a run killed mid-scenario leaves: a labelled namespace with a service account, and
    the reference mutator's webhook configuration pointing at a server that is gone."""
    core = client.CoreV1Api(api_client)
    namespace = f"cf-{run_id}-left"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={RUN_LABEL: run_id})))
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="workload")))
    webhook = f"crossfed-{run_id}"
    client.AdmissionregistrationV1Api(api_client).create_mutating_webhook_configuration(
        webhook_configuration(webhook, "https://127.0.0.1:9/mutate", b"not a CA",
                              (RUN_LABEL, run_id)))
    return namespace, webhook


def _gone_or_terminating(api_client: client.ApiClient, namespace: str, webhook: str) -> bool:
    core = client.CoreV1Api(api_client)
    try:
        phase = core.read_namespace(namespace).status.phase
    except ApiException as exc:
        phase = "gone" if exc.status == 404 else f"error {exc.status}"
    try:
        client.AdmissionregistrationV1Api(api_client).read_mutating_webhook_configuration(webhook)
        webhook_gone = False
    except ApiException as exc:
        webhook_gone = exc.status == 404
    return phase in ("gone", "Terminating") and webhook_gone


@pytest.mark.cluster
def test_sweep_deletes_a_killed_runs_objects_and_spares_young_ones(
        api: tuple[str, client.ApiClient]) -> None:
    kubeconfig, api_client = api
    run_id = uuid.uuid4().hex[:8]
    namespace, webhook = _leave_behind(api_client, run_id)
    try:
        listed = crossfed("sweep", "--kubeconfig", kubeconfig, "--older-than", "0", "--dry-run")
        assert listed.returncode == 0, listed.stderr
        assert f"would delete namespace/{namespace} (run {run_id}" in listed.stdout
        assert f"would delete mutatingwebhookconfiguration/{webhook}" in listed.stdout

        # Without --run-id, objects younger than --older-than belong to a run that may be live.
        spared = crossfed("sweep", "--kubeconfig", kubeconfig, "--older-than", "60")
        assert spared.returncode == 0, spared.stderr
        assert namespace not in spared.stdout
        assert not _gone_or_terminating(api_client, namespace, webhook)

        swept = crossfed("sweep", "--kubeconfig", kubeconfig, "--run-id", run_id)
        assert swept.returncode == 0, swept.stderr
        assert f"deleted mutatingwebhookconfiguration/{webhook}" in swept.stdout
        assert f"deleted namespace/{namespace}" in swept.stdout
        assert _gone_or_terminating(api_client, namespace, webhook)

        again = crossfed("sweep", "--kubeconfig", kubeconfig, "--run-id", run_id)
        assert again.returncode == 0 and "nothing to delete" in again.stdout, again.stdout
    finally:
        crossfed("sweep", "--kubeconfig", kubeconfig, "--run-id", run_id)


def test_sweep_names_an_unusable_kubeconfig(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("this is: [not a kubeconfig")
    result = crossfed("sweep", "--kubeconfig", str(broken))
    assert result.returncode == 2
    assert f"cannot load --kubeconfig {broken}" in result.stderr
    assert "Traceback" not in result.stderr


def test_sweep_refuses_a_negative_age() -> None:
    result = crossfed("sweep", "--kubeconfig", "/dev/null", "--older-than", "-5")
    assert result.returncode == 2 and "--older-than must be 0 or more" in result.stderr


def test_sweep_names_an_unreachable_api_server(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {token: abc}}]\n")
    started = time.monotonic()
    result = crossfed("sweep", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2, result.stdout
    assert "cannot list crossfed's objects through the API server" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60
