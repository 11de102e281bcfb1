"""The drift check proven on a real cluster: the reference mutator serves azure-workload-identity
v1.5.1 as the cluster's "real" webhook while the oracle expects v1.6.0 (a planted drift), and the
positive Azure scenario fails with the drift lines; at identical versions it passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.local, pytest.mark.cluster, pytest.mark.azure]
if not os.environ.get("CROSSFED_KUBECONFIG"):
    pytestmark.append(pytest.mark.skip(reason="needs a cluster: CROSSFED_KUBECONFIG (and the "
                                       "CROSSFED_* of cluster/ci-cluster.sh)"))


def session(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         "crossfed.suite", "--crossfed-env", "kubeconfig", "-k",
         "test_workload_reads_the_secret", "--check-drift", *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_a_planted_drift_fails_the_pod_scenario_with_the_drift(tmp_path: Path):
    done = session(tmp_path, "--webhook-versions", "azwi=v1.6.0",
                   "--plant-webhook-versions", "azwi=v1.5.1")
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    assert "the pod's mutation differs from the contract of eks=v0.6.17,azwi=v1.6.0" in out
    assert ('env AZURE_FEDERATED_TOKEN_FILE: webhook set "/var/run/secrets/azure/tokens/'
            'azure-identity-token", contract expects "/var/run/secrets/azure/wi/token/'
            'azure-identity-token"') in out


def test_identical_versions_report_no_drift(tmp_path: Path):
    done = session(tmp_path, "--webhook-versions", "azwi=v1.6.0")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "crossfed: kubeconfig: 1 of 1 scenarios passed in pods" in done.stdout
