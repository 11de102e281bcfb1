"""The per-pod drift watch (crossfed.webhooks.pod_drift) as the pod runner calls it: the pod
crossfed submitted and the pod the API server created (here: the reference mutator at one
version as the cluster's webhook, plus the API server's own defaults), judged against the
oracle's versions; goldens recorded and compared."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_webhook_drift import AZWI_SA, TENANT, USE, cluster_creates, pod, service_account

from crossfed.webhooks import azure_workload_identity as azwi
from crossfed.webhooks.pod_drift import MutationWatch, golden_version, watch_from_options
from crossfed.webhooks.reference_mutator import MutatorSettings
from crossfed.webhooks.versions import WebhookVersions

pytestmark = [pytest.mark.local]
SA = service_account(AZWI_SA)


class FakeCore:
    def __init__(self, account: dict[str, Any] | None) -> None:
        self.account = account
        self.api_client = SimpleNamespace(sanitize_for_serialization=lambda value: value)

    def read_namespaced_service_account(self, name: str, namespace: str) -> dict[str, Any]:
        assert (name, namespace) == ("workload", "ns-1")
        return self.account or {}


def azwi_settings(version: str) -> MutatorSettings:
    return MutatorSettings(azure=azwi.CONTRACTS[version], azure_tenant_id=TENANT)


def watch_expecting(version: str, **more: Any) -> MutationWatch:
    versions = WebhookVersions(azwi=version)
    return MutationWatch(FakeCore(SA), lambda: (versions, azwi_settings(version)), **more)


def created_by(version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    submitted = pod(labels=USE)
    return submitted, cluster_creates(submitted, SA, azwi_settings(version))


def test_a_webhook_serving_another_version_fails_the_pod_with_the_drift():
    watch = watch_expecting("v1.6.0")
    watch("ns-1", *created_by("v1.5.1"))  # the cluster's webhook is still v1.5.1
    lines = watch.verdict_lines("ns-1")
    assert any("AZURE_FEDERATED_TOKEN_FILE" in line and "/var/run/secrets/azure/tokens/" in line
               and "/var/run/secrets/azure/wi/token/" in line for line in lines), lines
    assert watch.verdict_lines("other-namespace") == []


def test_the_same_version_is_no_drift():
    watch = watch_expecting("v1.6.0")
    watch("ns-1", *created_by("v1.6.0"))
    assert watch.verdict_lines("ns-1") == []


def test_recorded_goldens_are_compared_in_a_later_run(tmp_path: Path):
    recorder = watch_expecting("v1.5.1", check=False, record_dir=tmp_path, case="azure-allowed")
    recorder("ns-1", *created_by("v1.5.1"))
    golden = tmp_path / f"pods-{golden_version(WebhookVersions(azwi='v1.5.1'))}" / (
        "azure-allowed.json")
    assert golden.is_file() and recorder.verdict_lines("ns-1") == []
    later = watch_expecting("v1.5.1", check=False, compare_dir=tmp_path, case="azure-allowed")
    later("ns-1", *created_by("v1.5.1"))
    assert later.verdict_lines("ns-1") == []
    changed = watch_expecting("v1.5.1", check=False, compare_dir=tmp_path, case="azure-allowed")
    changed("ns-1", *created_by("v1.6.0"))  # the webhook moved the token since the record
    assert changed.verdict_lines("ns-1"), "a changed mutation must differ from the golden"
    missing = watch_expecting("v1.5.1", check=False, compare_dir=tmp_path, case="other-case")
    missing("ns-1", *created_by("v1.5.1"))
    assert any("--record-mutations" in line for line in missing.verdict_lines("ns-1"))


def test_no_drift_option_no_watch_and_planting_implies_the_check():
    none = {"--record-mutations": None, "--compare-mutations": None,
            "--plant-webhook-versions": None, "--check-drift": False}
    assert watch_from_options(none.get, FakeCore(SA)) == (None, None)
    planted = {**none, "--plant-webhook-versions": "azwi=v1.5.1"}
    watch, versions = watch_from_options(planted.get, FakeCore(SA))
    assert watch is not None and watch.check and versions == WebhookVersions(azwi="v1.5.1")


def test_goldens_hold_placeholders_for_the_runs_own_ids(tmp_path: Path):
    """Two runs create other identities: their ids reach the pod through the service account;
    the goldens hold placeholders, so a later run compares equal."""
    recorder = watch_expecting("v1.5.1", check=False, record_dir=tmp_path, case="azure-allowed")
    recorder("ns-1", *created_by("v1.5.1"))
    text = next(tmp_path.glob("*/azure-allowed.json")).read_text()
    assert AZWI_SA["azure.workload.identity/client-id"] not in text
    assert "$(AZURE_CLIENT_ID)" in text
    other_id = "00000000-0000-0000-0000-0000000000c2"  # the next run's identity
    other_sa = service_account({"azure.workload.identity/client-id": other_id})
    submitted = pod(labels=USE)
    created = cluster_creates(submitted, other_sa, azwi_settings("v1.5.1"))
    later = MutationWatch(FakeCore(other_sa), lambda: (WebhookVersions(azwi="v1.5.1"),
                                                        azwi_settings("v1.5.1")),
                          check=False, compare_dir=tmp_path, case="azure-allowed")
    later("ns-1", submitted, created)
    assert later.verdict_lines("ns-1") == []
