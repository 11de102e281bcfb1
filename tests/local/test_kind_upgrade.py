"""The kind environment's webhook upgrade in place (issue 13, point 2) and the chart versions
behind `--webhook-versions`: which `helm upgrade` commands run, in which order, with which
argv and values, which releases are left alone, the webhook check after them, and the marks a
reused cluster reads.

As in test_kind_environment.py, kind/docker/helm/kubectl are `FakeTools` (no Docker, kind,
helm or registry here): this proves the orchestration and the exact argv, not that the charts
upgrade as answered.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kind_fakes import FakeTools

from crossfed.cluster.tools import Tools
from crossfed.environments.kind import KindEnvironment, KindSettings, KindSetupError
from crossfed.environments.kind_upgrade import releases_fingerprint
from crossfed.webhooks import charts
from crossfed.webhooks.versions import WebhookVersions

pytestmark = [pytest.mark.local]

TOOLS = Tools(kind=Path("/fake/bin/kind"), kubectl=Path("/fake/bin/kubectl"),
              helm=Path("/fake/bin/helm"), docker=Path("/fake/bin/docker"))
TENANT = "8a1d5c1e-0000-4000-8000-00000000cafe"
OLD = WebhookVersions(eks="v0.5.2", azwi="v1.5.1")
NEW = WebhookVersions(eks="v0.6.17", azwi="v1.6.0")
EKS, AZWI, CM = ("amazon-eks-pod-identity-webhook", "workload-identity-webhook",
                 "cert-manager")


_STARTED: list[KindEnvironment] = []


@pytest.fixture(autouse=True)
def _stop_environments():
    """A failing test still stops its issuers (their threads would keep pytest from exiting)."""
    yield
    while _STARTED:
        _STARTED.pop().stop()


def environment(tmp_path: Path, fake: FakeTools, **settings: Any) -> KindEnvironment:
    sleeps: list[float] = []
    env = KindEnvironment(KindSettings(state_dir=tmp_path / "state", **settings), TOOLS,
                          runner=fake, sleep=sleeps.append)
    env.sleeps = sleeps  # type: ignore[attr-defined]
    _STARTED.append(env)
    return env


def attached(tmp_path: Path, fake: FakeTools, versions: WebhookVersions | None = OLD,
             **settings: Any) -> KindEnvironment:
    env = environment(tmp_path, fake, **settings).start(tmp_path / "pki")
    env.attach(TENANT, lambda options: "cluster", webhook_versions=versions)
    fake.calls.clear()
    return env


def marks(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "state" / "cluster.json").read_text())


def expected_argv(tmp_path: Path, chart: str, repo: str, version: str,
                  namespace: str) -> list[str]:
    state = tmp_path / "state"
    return ["upgrade", "--install", chart, chart, "--repo", repo, "--version", version,
            "--namespace", namespace, "--create-namespace",
            "--values", str(state / "helm" / f"{chart}.values.yaml"), "--wait",
            "--timeout", "5m0s", "--reset-values", "--kubeconfig", str(state / "kubeconfig")]


# --- chart versions by webhook version --------------------------------------------------------

@pytest.mark.parametrize(("webhook", "chart"), [
    ("v0.5.2", "2.1.3"), ("v0.5.1", "2.1.2"), ("v0.6.12", "2.6.0"), ("v0.6.16", "2.6.4"),
    ("v0.6.17", "2.6.5")])
def test_the_eks_webhook_version_picks_the_newest_chart_that_ships_it(webhook, chart):
    assert charts.eks_chart_version(webhook) == chart


def test_the_azwi_version_is_the_chart_version_without_v():
    assert charts.azwi_chart_version("v1.5.1") == "1.5.1"
    assert charts.azwi_chart_version("v1.6.0") == "1.6.0"


def test_the_default_versions_give_todays_pinned_releases():
    assert charts.webhook_releases(TENANT, WebhookVersions()) == [
        *charts.eks_webhook_stack(), charts.azure_workload_identity_webhook(TENANT)]


def test_releases_for_versions_are_in_install_order_at_their_charts():
    releases = charts.webhook_releases(TENANT, OLD)
    assert [(r.name, r.version, r.namespace) for r in releases] == [
        (CM, charts.CERT_MANAGER_VERSION, "cert-manager"),
        (EKS, "2.1.3", "pod-identity-webhook"),
        (AZWI, "1.5.1", "azure-workload-identity-system")]
    assert releases[1].values["mutatingWebhook"] == {"failurePolicy": "Fail"}
    assert "image" not in releases[1].values  # the chart's own appVersion image, no tag set
    assert releases[2].values["azureTenantID"] == TENANT


@pytest.mark.parametrize(("versions", "words"), [
    (WebhookVersions(eks="v0.5.3"), ["eks=v0.5.3", "v0.5.2", "v0.6.17"]),  # no chart ships it
    (WebhookVersions(eks="master"), ["eks=master", "v0.3.0"]),
    (WebhookVersions(azwi="v1.7.0"), ["azwi=v1.7.0", "v1.5.1", "v1.6.0"]),
    (WebhookVersions(azwi="1.6.0"), ["azwi=1.6.0", "v1.6.0"]),
])
def test_a_version_no_chart_ships_is_an_error_naming_the_known_ones(versions, words):
    with pytest.raises(charts.ChartVersionError) as caught:
        charts.webhook_releases(TENANT, versions)
    for word in words:
        assert word in str(caught.value)


# --- the first install honours the versions -------------------------------------------------

def test_the_first_install_installs_the_charts_of_the_versions_and_marks_them(tmp_path):
    fake = FakeTools()
    env = environment(tmp_path, fake).start(tmp_path / "pki")
    env.attach(TENANT, lambda options: "cluster", webhook_versions=OLD)
    assert [(c[2], c[c.index("--version") + 1]) for c in fake.of("helm")] == [
        (CM, charts.CERT_MANAGER_VERSION), (EKS, "2.1.3"), (AZWI, "1.5.1")]
    assert fake.clusters["crossfed"]["charts"] == {CM: charts.CERT_MANAGER_VERSION,
                                                   EKS: "2.1.3", AZWI: "1.5.1"}
    assert marks(tmp_path)["webhook_versions"] == "eks=v0.5.2,azwi=v1.5.1"
    assert env.installed_webhook_versions() == OLD
    env.stop()


def test_the_versions_setting_is_used_when_attach_names_none(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake, versions=None, webhook_versions=OLD)
    assert env.installed_webhook_versions() == OLD
    assert fake.clusters["crossfed"]["charts"][EKS] == "2.1.3"
    env.stop()


def test_without_versions_the_install_keeps_todays_pins(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake, versions=None)
    assert fake.clusters["crossfed"]["charts"] == {
        CM: charts.CERT_MANAGER_VERSION, EKS: charts.EKS_WEBHOOK_VERSION,
        AZWI: charts.AZWI_VERSION}
    assert env.installed_webhook_versions() == WebhookVersions()
    env.stop()


# --- the upgrade ------------------------------------------------------------------------------

def test_upgrade_runs_helm_upgrade_of_each_changed_release_in_order_then_checks(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake)
    fake.polls_without_ca = 1  # the check after the upgrade polls again once
    upgraded = env.upgrade_webhooks(TENANT, NEW)

    assert [(r.name, r.version) for r in upgraded] == [(EKS, "2.6.5"), (AZWI, "1.6.0")]
    assert fake.of("helm") == [  # cert-manager untouched: its release does not change
        expected_argv(tmp_path, EKS, charts.EKS_WEBHOOK_REPO, "2.6.5", "pod-identity-webhook"),
        expected_argv(tmp_path, AZWI, charts.AZWI_REPO, "1.6.0",
                      "azure-workload-identity-system")]
    helm = tmp_path / "state" / "helm"
    eks_values = yaml.safe_load((helm / f"{EKS}.values.yaml").read_text())
    assert eks_values["mutatingWebhook"] == {"failurePolicy": "Fail"}
    assert eks_values["pki"] == {"certManager": {"enabled": True}}
    azwi_values = yaml.safe_load((helm / f"{AZWI}.values.yaml").read_text())
    assert azwi_values == {"azureTenantID": TENANT, "azureEnvironment": "AzurePublicCloud"}

    # the webhook check comes after the last helm upgrade, and waited for the caBundle
    tools = [Path(c[0]).name + " " + c[1] for c in fake.calls]
    last_helm = max(i for i, t in enumerate(tools) if t.startswith("helm"))
    checks = [i for i, c in enumerate(fake.calls) if "mutatingwebhookconfigurations" in c]
    assert len(checks) == 2 and min(checks) > last_helm
    assert env.sleeps == [3]  # type: ignore[attr-defined]

    assert fake.clusters["crossfed"]["charts"] == {CM: charts.CERT_MANAGER_VERSION,
                                                   EKS: "2.6.5", AZWI: "1.6.0"}
    assert marks(tmp_path)["webhook_versions"] == "eks=v0.6.17,azwi=v1.6.0"
    assert marks(tmp_path)["webhooks"] == releases_fingerprint(
        charts.webhook_releases(TENANT, NEW))
    assert env.installed_webhook_versions() == NEW
    env.stop()


def test_only_the_release_whose_version_changes_is_upgraded(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake)
    upgraded = env.upgrade_webhooks(TENANT, replace(OLD, azwi="v1.6.0"))
    assert [r.name for r in upgraded] == [AZWI]
    assert [c[2] for c in fake.of("helm")] == [AZWI]
    assert env.installed_webhook_versions() == WebhookVersions(eks="v0.5.2", azwi="v1.6.0")

    fake.calls.clear()
    assert env.upgrade_webhooks(TENANT, replace(OLD, azwi="v1.6.0")) == []
    assert fake.of("helm") == []  # already there: nothing run, still checked
    assert [c for c in fake.of("kubectl") if "mutatingwebhookconfigurations" in c]
    env.stop()


def test_a_reused_cluster_knows_the_upgraded_versions(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake, keep=True)
    env.upgrade_webhooks(TENANT, NEW)
    env.stop()
    fake.calls.clear()

    again = environment(tmp_path, fake).start(tmp_path / "pki2")
    assert again.installed_webhook_versions() == NEW
    again.attach("another-runs-tenant", lambda options: "cluster", webhook_versions=NEW)
    assert fake.of("helm") == []  # what is installed is what is asked for
    fake.calls.clear()
    # a run asking for the old versions again gets them back, the changed releases only
    again.attach(TENANT, lambda options: "cluster", webhook_versions=OLD)
    assert [(c[2], c[c.index("--version") + 1]) for c in fake.of("helm")] == [
        (EKS, "2.1.3"), (AZWI, "1.5.1")]
    assert again.installed_webhook_versions() == OLD
    again.stop()


def test_marks_from_before_per_release_marks_count_as_installed(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake, versions=None, keep=True)
    env.stop()
    path = tmp_path / "state" / "cluster.json"
    old = marks(tmp_path)
    legacy = {k: old[k] for k in ("node", "image", "webhooks")}
    path.write_text(json.dumps(legacy))
    fake.calls.clear()

    again = environment(tmp_path, fake).start(tmp_path / "pki2")
    again.attach(TENANT, lambda options: "cluster")
    assert fake.of("helm") == []
    assert marks(tmp_path)["releases"] == old["releases"]
    assert again.upgrade_webhooks(TENANT, replace(WebhookVersions(), azwi="v1.6.0"))[0].name \
        == AZWI
    assert [c[2] for c in fake.of("helm")] == [AZWI]
    again.stop()


def test_an_upgrade_failure_raises_with_helms_words_and_keeps_what_was_upgraded(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake)
    fake.helm_failures = {AZWI: "timed out waiting for the condition"}
    with pytest.raises(KindSetupError) as caught:
        env.upgrade_webhooks(TENANT, NEW)
    assert str(caught.value) == ("helm upgrade of workload-identity-webhook to 1.6.0 failed "
                                 "(exit 1): Error: UPGRADE FAILED: timed out waiting for the "
                                 "condition")
    assert [c[2] for c in fake.of("helm")] == [EKS, AZWI]
    assert not [c for c in fake.of("kubectl") if "mutatingwebhookconfigurations" in c]
    assert "crossfed" in fake.clusters  # a failed upgrade deletes nothing; stop() decides
    assert env.installed_webhook_versions() is None  # half-way: not the old, not the new
    assert marks(tmp_path)["webhooks"] == "partial"

    # a second try upgrades only what is left
    fake.helm_failures = {}
    fake.calls.clear()
    assert [r.name for r in env.upgrade_webhooks(TENANT, NEW)] == [AZWI]
    assert [c[2] for c in fake.of("helm")] == [AZWI]
    assert env.installed_webhook_versions() == NEW
    env.stop()


def test_webhooks_not_ready_after_the_upgrade_fail_with_the_problems(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake, webhook_checks=2)
    fake.polls_without_ca = 100
    with pytest.raises(KindSetupError, match="amazon-eks-pod-identity-webhook.*empty caBundle"):
        env.upgrade_webhooks(TENANT, NEW)
    assert [c[2] for c in fake.of("helm")] == [EKS, AZWI]
    env.stop()


def test_a_version_without_a_chart_fails_the_upgrade_before_any_helm(tmp_path):
    fake = FakeTools()
    env = attached(tmp_path, fake)
    with pytest.raises(charts.ChartVersionError, match="eks=v0.5.3"):
        env.upgrade_webhooks(TENANT, replace(NEW, eks="v0.5.3"))
    assert fake.of("helm") == []
    assert env.installed_webhook_versions() == OLD
    env.stop()


def test_reference_mode_upgrades_nothing(tmp_path, caplog):
    fake = FakeTools()
    env = attached(tmp_path, fake, webhooks="reference")
    with caplog.at_level("INFO", logger="crossfed"):
        assert env.upgrade_webhooks(TENANT, NEW) == []
    assert fake.of("helm") == []
    assert not [c for c in fake.of("kubectl") if "mutatingwebhookconfigurations" in c]
    assert "the mutator switches contract" in caplog.text
    env.stop()


def test_upgrade_before_start_is_a_programming_error(tmp_path):
    with pytest.raises(RuntimeError, match="before start"):
        environment(tmp_path, FakeTools()).upgrade_webhooks(TENANT, NEW)
