"""--eks-cluster / --aks-cluster: the cluster's issuer, read through its API server, is checked
against the cloud's record of it; a mismatch stops the run naming both (CI cluster only: the
issuer must come from a real API server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cloud import tier

pytestmark = [pytest.mark.serve, pytest.mark.cluster]


@pytest.fixture(scope="module")
def cluster() -> tier.CiCluster:
    found = tier.CiCluster.from_env()
    if found is None:
        pytest.skip("needs the CI cluster (cluster/ci-cluster.sh up exports CROSSFED_*)")
    return found


def test_matching_records_let_the_run_go_on_and_a_mismatch_stops_it(
        cluster: tier.CiCluster, tmp_path: Path) -> None:
    issuer = os.environ["CROSSFED_ISSUER_URL"]  # the API server's --service-account-issuer
    wrong = "https://oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
    served = tier.start_serve(tmp_path / "serve", "--host", cluster.bridge, "--trust-ca",
                              cluster.issuer_ca, "--eks-cluster", f"ci={issuer}",
                              "--eks-cluster", f"other={wrong}",
                              "--aks-cluster", f"ci-rg/ci={issuer}")
    try:
        env = tier.environment(served, cluster)
        one = ["-k", "cloud-cluster and (assumes or reads)"]
        done = tier.run_tier(tier.tier_args(served, cluster, ("aws", "azure"), *one,
                                            "--eks-cluster", "ci", "--aks-cluster", "ci-rg/ci"),
                             env, tmp_path)
        assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
        assert tier.summaries(done.stdout).get("cloud-cluster") == (2, 2), done.stdout[-3000:]
        done = tier.run_tier(tier.tier_args(served, cluster, ("azure",), *one,
                                            "--eks-cluster", "other"), env, tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 4, output[-5000:]
        assert issuer in output and wrong in output and "--eks-cluster other" in output, \
            output[-3000:]
    finally:
        served.stop()


def test_without_webhooks_the_run_says_what_to_install(cluster: tier.CiCluster,
                                                       tmp_path: Path) -> None:
    """The CI cluster has no webhook: without --crossfed-webhooks reference (or
    --install-webhooks) the pod scenarios fail at once, naming both webhooks to install."""
    served = tier.start(tmp_path / "serve", 0.0, cluster)
    try:
        env = tier.environment(served, cluster)
        args = [a for a in tier.tier_args(served, cluster, ("aws", "azure"), "-k",
                                          "cloud-cluster and (assumes or reads)")
                if a not in ("--crossfed-webhooks", "reference")]
        done = tier.run_tier(args, env, tmp_path)
    finally:
        served.stop()
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "no webhook mutates pods for aws, azure" in output, output[-3000:]
    assert "--install-webhooks" in output and "azure-workload-identity" in output
