"""The cloud tier end to end against `crossfed serve` (a separate process with a propagation
delay of at least 10 s), for both directions, every scenario, in processes and, with the CI
cluster, in pods (it stands in for AKS and EKS at once). The tier runs go side by side."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossfed.suite.plans import AWS_DENIED, AZURE_DENIED
from tests.cloud import tier
from tests.cloud.tier import REPORTED

pytestmark = [pytest.mark.serve]
DELAY = float(os.environ.get("CROSSFED_CLOUD_PROPAGATION_DELAY", "10"))
def _scenarios(cloud: str) -> int:
    """One direction's scenarios: the allowed one and its denied ones."""
    return 1 + len(AWS_DENIED if cloud == "aws" else AZURE_DENIED)


SCENARIOS = _scenarios("aws") + _scenarios("azure")  # both directions


@pytest.fixture(scope="module")
def cluster() -> tier.CiCluster | None:
    return tier.CiCluster.from_env()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, cluster: tier.CiCluster | None):
    served = tier.start(tmp_path_factory.mktemp("serve"), DELAY, cluster)
    yield served
    served.stop()


UPGRADE = ("--webhook-versions", "eks=v0.5.2,azwi=v1.5.1",
           "--upgrade-webhooks-to", "eks=v0.6.17,azwi=v1.6.0")


def _specs(serve: tier.Serve, cluster: tier.CiCluster | None) -> dict[str, dict]:
    """The tier runs of this module, by label: their arguments, environment and the run they
    wait for. Each direction runs on its own; the runs on the CI cluster register their
    mutators for their own run's namespaces, so they share the cluster as two teams' runs
    would. The AWS runs on the cluster go one after the other: they share the cluster's
    issuer, so its IAM OIDC provider (one per issuer and account). While one run has it
    registered, the other's issuer-without-provider scenario is allowed (seen in CI), and the
    run that created it deletes it at its scenario's tear-down while the other may need it."""
    alone, both = tier.environment(serve, None), ("aws", "azure")
    specs: dict[str, dict] = {
        "rbac": {"args": tier.tier_args(serve, None, ("azure",), "--azure-keyvault-"
                                        "authorization", "rbac", "-k", "test_azure"),
                 "env": alone},
    }
    for cloud in both:
        specs[f"processes-{cloud}"] = {"args": tier.tier_args(serve, None, (cloud,), "-k",
                                                             f"test_{cloud}"), "env": alone}
    if cluster is not None:
        on_cluster = tier.environment(serve, cluster)
        for cloud in both:
            specs[f"pods-{cloud}"] = {"args": tier.tier_args(
                serve, cluster, (cloud,), "-k", f"test_{cloud} and cloud-cluster"),
                "env": on_cluster}
        specs["upgrade"] = {"args": tier.tier_args(
            serve, cluster, both, "-rs", "-k",
            "test_workload_assumes_role_and_lists_bucket or test_workload_reads_the_secret or "
            "test_workloads_started_before_the_upgrade", *UPGRADE), "env": on_cluster,
            "after": "pods-aws"}
    return specs


# which tier runs each test reads
NEEDS = {"test_every_scenario_passes_in_processes_against_serve": ("processes-aws",
                                                                   "processes-azure"),
         "test_every_scenario_passes_in_pods_against_serve": ("pods-aws", "pods-azure"),
         "test_rbac_vaults_pass_against_serve": ("rbac",),
         "test_the_upgrade_flow_reruns_the_cluster_scenarios_after_the_upgrade": ("upgrade",)}


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, serve, cluster,
         tmp_path_factory: pytest.TempPathFactory):
    """The selected tests' tier runs, started at once but for the `after` of _specs:
    tests/cloud spends its time waiting out serve's propagation delay, so side by side they
    take the time of the longest chain, and they show that concurrent runs on one account and
    one cluster leave each other alone (but for the AWS runs on one issuer, see _specs)."""
    specs = _specs(serve, cluster)
    here = request.node.path
    wanted = {label for item in request.session.items
              if item.path == here and item.originalname in NEEDS
              for label in NEEDS[item.originalname]}
    side = tier.SideBySide(tmp_path_factory.mktemp("tier-runs"), workers=len(specs))
    for label, spec in specs.items():  # a run's `after` comes before it in specs
        if label in wanted:
            after = spec.get("after")
            side.start(label, spec["args"], spec["env"], after if after in wanted else None)
    yield side
    side.close()


def _report(label: str, output: str) -> None:
    lines = [line for line in output.splitlines() if line.startswith("crossfed: cloud")]
    REPORTED.extend(f"{label}: {line}" for line in lines)


def _decision_reads(serve: tier.Serve) -> list[str]:
    return [line for line in serve.logs().splitlines() if "/crossfed/" in line]


def _every_scenario(serve: tier.Serve, done: tier.TierRun, environment: str,
                    cloud: str) -> None:
    output = done.output
    _report(f"cloud tier against serve (--propagation-delay {DELAY:g}, {done.label})", output)
    assert done.returncode == 0, output[-8000:]
    scenarios = _scenarios(cloud)
    assert tier.summaries(output).get(environment) == (scenarios, scenarios), output[-3000:]
    waits = re.findall(r"crossfed: cloud propagation: (.+?): \d+ wait\(s\), median ([\d.]+)",
                       output)
    assert waits, "the tier printed no measured propagation wait"
    # Propagation really was waited out, not skipped: the median is at least the delay.
    assert all(float(median) >= DELAY for _, median in waits), waits
    assert not _decision_reads(serve), "the tier read the stand-ins' decision feeds"


def test_every_scenario_passes_in_processes_against_serve(serve, runs) -> None:
    for cloud in ("aws", "azure"):
        _every_scenario(serve, runs.result(f"processes-{cloud}"), "cloud-process", cloud)


def test_every_scenario_passes_in_pods_against_serve(serve, cluster, runs) -> None:
    """The CI cluster stands in for AKS and EKS at once; serve trusts its issuer."""
    if cluster is None:
        pytest.skip("pods need the CI cluster (CROSSFED_KUBECONFIG)")
    for cloud in ("aws", "azure"):
        done = runs.result(f"pods-{cloud}")
        _every_scenario(serve, done, "cloud-cluster", cloud)
        assert "cloud-process" not in tier.summaries(done.output)  # deselected here


def test_rbac_vaults_pass_against_serve(runs) -> None:
    """The other Key Vault permission model: role assignments instead of access policies."""
    done = runs.result("rbac")
    output = done.output
    _report("cloud tier, Key Vault RBAC", output)
    assert done.returncode == 0, output[-8000:]
    azure = _scenarios("azure")
    assert tier.summaries(output).get("cloud-process") == (azure, azure)
    # the RBAC model was used: the harness waited for its own Secrets Officer assignment
    assert "cloud propagation: keyvault role assignment (harness)" in output, output[-3000:]


def test_the_upgrade_flow_reruns_the_cluster_scenarios_after_the_upgrade(cluster,
                                                                         runs) -> None:
    """--upgrade-webhooks-to on the tier: cloud-cluster runs before and after (the reference
    mutator switches contract between), cloud-process once; kept workloads are the local
    environments' and skip here with the reason."""
    if cluster is None:
        pytest.skip("the tier's upgrade flow needs the CI cluster (CROSSFED_KUBECONFIG)")
    done = runs.result("upgrade")
    output = done.output
    _report("cloud tier, webhook upgrade", output)
    assert done.returncode == 0, output[-8000:]
    found = tier.summaries(output)
    assert found.get("cloud-cluster@before") == (2, 2), found
    assert found.get("cloud-cluster@after") == (2, 2), found
    assert found.get("cloud-process") == (2, 2), found
    assert "cloud-process@" not in output
    upgrade = ("crossfed: cloud: webhook upgrade eks=v0.5.2,azwi=v1.5.1 -> "
               "eks=v0.6.17,azwi=v1.6.0: done in")
    assert output.count(upgrade) == 1, output[-3000:]
    assert "workloads kept across the upgrade are built for the local environments" in output
    assert output.count("contract diff:") == 1


def test_without_cloud_flags_every_cloud_scenario_is_skipped(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--pyargs", "crossfed.suite", "-m", "cloud", "-q", "-rs"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith(("CROSSFED_", "AWS_", "AZURE_"))})
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(rf"\b{2 * SCENARIOS} skipped\b", done.stdout), done.stdout[-2000:]
    reasons = {line.split(": ", 1)[1] for line in done.stdout.splitlines()
               if line.startswith("SKIPPED")}
    assert len(reasons) == 1 and "--cloud aws" in next(iter(reasons)), reasons
