"""The cloud tier's webhook install and upgrade with helm (--install-webhooks and
--upgrade-webhooks-to), with a helm on PATH that records its argv and succeeds or fails as
told. It proves the commands and their order, not that the charts behave so: no registry here
serves the webhook images, and no managed cluster is reachable."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from crossfed.cloud import clusters
from crossfed.cloud.accounts import CloudSetupError
from crossfed.cloud.options import CloudSettings
from crossfed.webhooks import charts
from crossfed.webhooks.versions import WebhookVersions

pytestmark = [pytest.mark.local]
OLD = WebhookVersions("v0.5.2", "v1.5.1")
NEW = WebhookVersions("v0.6.17", "v1.6.0")
FAKE_HELM = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_HELM_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
fail = os.environ.get("FAKE_HELM_FAIL")
if fail and fail in sys.argv:
    sys.stderr.write("Error: UPGRADE FAILED: timed out waiting for the condition\\n")
    sys.exit(1)
"""


@pytest.fixture
def helm_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helm = bin_dir / "helm"
    helm.write_text(FAKE_HELM)
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "helm.log"
    monkeypatch.setenv("FAKE_HELM_LOG", str(log))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def settings(**changed: object) -> CloudSettings:
    given = {"--cloud": ["aws", "azure"], "--crossfed-kubeconfig": "/k/config",
             "--aks-context": "both", "--eks-context": "both", "--install-webhooks": True,
             **changed}
    return CloudSettings.from_options(lambda name: given.get(name))


class Kube:
    """What upgrade_webhooks asks of the attached cluster: the versions in force, and the
    MutatingWebhookConfigurations (both webhooks present)."""

    def __init__(self) -> None:
        self.versions: list[WebhookVersions] = []
        hooks = [SimpleNamespace(name="iam-for-pods.amazonaws.com", client_config=SimpleNamespace(
                     service=SimpleNamespace(namespace=charts.EKS_WEBHOOK_NAMESPACE))),
                 SimpleNamespace(name="mutation.azure-workload-identity.io",
                                 client_config=SimpleNamespace(service=SimpleNamespace(
                                     namespace=charts.AZWI_NAMESPACE)))]
        listed = SimpleNamespace(items=[SimpleNamespace(webhooks=hooks)])
        self.admission = SimpleNamespace(list_mutating_webhook_configuration=lambda: listed)

    def use_webhook_versions(self, versions: WebhookVersions) -> None:
        self.versions.append(versions)


def installed(context: str = "both") -> clusters.CloudCluster:
    """A cluster as attach() leaves it after --install-webhooks at OLD."""
    done = clusters._install(("aws", "azure"), settings(), "tenant", context, OLD)
    return clusters.CloudCluster(context, Kube(), None, None, done)  # type: ignore[arg-type]


def test_the_install_puts_the_first_versions_charts_in_order_on_the_context(helm_log):
    cluster = installed()
    argvs = calls(helm_log)
    assert [argv[2] for argv in argvs] == ["cert-manager", "amazon-eks-pod-identity-webhook",
                                           "workload-identity-webhook"]
    assert [argv[argv.index("--version") + 1] for argv in argvs] == [
        charts.CERT_MANAGER_VERSION, "2.1.3", "1.5.1"]
    for argv in argvs:
        assert argv[:2] == ["upgrade", "--install"] and "--wait" in argv
        assert argv[argv.index("--kube-context") + 1] == "both"
        assert argv[argv.index("--kubeconfig") + 1] == "/k/config"
        assert "--reset-values" not in argv
    assert cluster.installed == {"cert-manager": charts.CERT_MANAGER_VERSION,
                                 "amazon-eks-pod-identity-webhook": "2.1.3",
                                 "workload-identity-webhook": "1.5.1"}


def test_the_upgrade_runs_helm_upgrade_of_the_changed_charts_only(helm_log):
    cluster = installed()
    before = len(calls(helm_log))
    upgraded = clusters.upgrade_webhooks(cluster, ("aws", "azure"), settings(), "tenant", NEW)
    argvs = calls(helm_log)[before:]
    assert upgraded == ["amazon-eks-pod-identity-webhook 2.6.5",
                        "workload-identity-webhook 1.6.0"]
    assert [argv[2] for argv in argvs] == ["amazon-eks-pod-identity-webhook",
                                           "workload-identity-webhook"]
    for argv in argvs:
        assert "--reset-values" in argv and "--wait" in argv
        assert argv[argv.index("--kube-context") + 1] == "both"
    assert cluster.kube.versions == [NEW]
    assert cluster.installed["amazon-eks-pod-identity-webhook"] == "2.6.5"
    # the same versions again: nothing to run
    assert clusters.upgrade_webhooks(cluster, ("aws", "azure"), settings(), "tenant",
                                     NEW) == []
    assert len(calls(helm_log)) == before + 2


def test_only_the_direction_of_the_context_is_upgraded(helm_log):
    done = clusters._install(("azure",), settings(), "tenant", "eks", OLD)
    cluster = clusters.CloudCluster("eks", Kube(), None, None, done)  # type: ignore[arg-type]
    clusters.upgrade_webhooks(cluster, ("azure",), settings(), "tenant", NEW)
    assert [argv[2] for argv in calls(helm_log)] == ["workload-identity-webhook"] * 2


def test_a_failed_upgrade_names_the_release_and_helms_words(helm_log, monkeypatch):
    cluster = installed()
    monkeypatch.setenv("FAKE_HELM_FAIL", "workload-identity-webhook")
    with pytest.raises(CloudSetupError) as caught:
        clusters.upgrade_webhooks(cluster, ("aws", "azure"), settings(), "tenant", NEW)
    assert "helm upgrade of workload-identity-webhook 1.6.0 failed" in str(caught.value)
    assert "timed out waiting for the condition" in str(caught.value)
    # what went through stays recorded, the failed one does not: a re-run upgrades only it
    assert cluster.installed["amazon-eks-pod-identity-webhook"] == "2.6.5"
    assert cluster.installed["workload-identity-webhook"] == "1.5.1"


def test_the_reference_mutator_switches_contract_without_helm(helm_log):
    kube = Kube()
    cluster = clusters.CloudCluster("both", kube, None, None)  # type: ignore[arg-type]
    reference = settings(**{"--crossfed-webhooks": "reference", "--install-webhooks": None})
    assert clusters.upgrade_webhooks(cluster, ("aws", "azure"), reference, "t", NEW) == []
    assert kube.versions == [NEW] and calls(helm_log) == []


def test_webhooks_crossfed_did_not_install_are_not_upgraded(helm_log):
    cluster = clusters.CloudCluster("both", Kube(), None, None)  # type: ignore[arg-type]
    with pytest.raises(CloudSetupError, match="does not upgrade them"):
        clusters.upgrade_webhooks(cluster, ("aws",), settings(**{"--install-webhooks": None}),
                                  "t", NEW)
    assert calls(helm_log) == []


def test_a_version_without_a_chart_is_an_error_before_any_helm(helm_log):
    with pytest.raises(charts.ChartVersionError, match="eks=v0.5.4"):
        clusters._install(("aws",), settings(), "t", "both", WebhookVersions("v0.5.4", "v1.5.1"))
    assert calls(helm_log) == []
