"""The `kubeconfig` environment on a cluster that signs with a key crossfed did not generate.

A second real single-node cluster (kube-apiserver from Debian's source package) is started with
an in-cluster issuer URL and a key of its own; crossfed learns its issuer and JWKS through the
API server, mirrors them for the stand-ins, and the scenarios run in its pods. Runs where the
CI cluster's binaries and probe image are at hand (cluster/ci-cluster.sh exports
CROSSFED_KUBE_BINARIES and CROSSFED_PROBE_IMAGE_ARCHIVE) and as root; skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crossfed.cleanup import Teardown
from crossfed.decisions import scenario_saw_issuer
from crossfed.environments.kubeconfig import KubeconfigCluster, KubeconfigOptions
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.learned import SigningKeyUnavailable
from crossfed.scenario import Scenarios
from crossfed.suite.plans import AWS_ALLOWED, AWS_DENIED, AZURE_ALLOWED, AZURE_DENIED
from crossfed.workload.pod import PodSettings

pytestmark = [pytest.mark.local, pytest.mark.cluster]
IN_CLUSTER_ISSUER = "https://kubernetes.default.svc.cluster.local"
BY_NAME = {plan.name: plan for plan in [AWS_ALLOWED, *AWS_DENIED, AZURE_ALLOWED, *AZURE_DENIED]}
# Plans whose token the cluster's API server signs, or which forge one without its key.
RUNS = ["aws-allowed", "azure-allowed", "other-service-account", "foreign-signing-key",
        "azure-forged-kid", "alg-none"]
# Plans that need a token signed by the cluster's private key that the pod cannot be given.
NEED_CLUSTER_KEY = ["expired-token", "azure-expired-token"]


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def _write_cluster_key(directory: Path) -> tuple[Path, Path]:
    """A key pair as a cluster administrator makes one: not crossfed's SigningKey."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "sa.key", directory / "sa.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenarios]:
    binaries = os.environ.get("CROSSFED_KUBE_BINARIES")
    archive = os.environ.get("CROSSFED_PROBE_IMAGE_ARCHIVE")
    if not (binaries and archive):
        pytest.skip("foreign-issuer cluster: set CROSSFED_KUBE_BINARIES and "
                    "CROSSFED_PROBE_IMAGE_ARCHIVE (cluster/ci-cluster.sh up exports both)")
    if os.geteuid() != 0:
        pytest.skip("foreign-issuer cluster: the microcluster needs root")
    from crossfed.cluster.microcluster import ClusterSpec, up

    index = _worker_index()
    # Short path: containerd's socket path must stay under the unix-socket limit.
    work = Path(tempfile.mkdtemp(prefix="cf-foreign-", dir="/var/tmp"))
    teardown = Teardown()
    teardown.add("work dir", lambda: shutil.rmtree(work, ignore_errors=True))
    try:
        private, public = _write_cluster_key(work)
        cluster = up(ClusterSpec(
            work_dir=work / "cluster", binaries=Path(binaries), issuer_url=IN_CLUSTER_ISSUER,
            signing_key=private, signing_public_key=public,
            bridge_cidr=f"10.79.{index}.0/24", bridge_name=f"crossfedfx{index}",
            node_name=f"crossfed-foreign-{index}", images=(Path(archive),)))
        teardown.add("foreign cluster", cluster.stop)
        clouds = LocalStandIns.start(work / "clouds", host=cluster.gateway_ip)
        teardown.add("stand-ins", clouds.stop)
        attached = KubeconfigCluster.for_clouds(KubeconfigOptions(
            str(cluster.kubeconfig), PodSettings(node_name=cluster.node_name)), clouds)
        teardown.add("attachment", attached.stop)
        yield Scenarios(clouds, attached, name="foreign-issuer")
    finally:
        left = teardown.run()  # asserted below, not here: it would hide a failed setup
    assert not left, f"foreign cluster teardown failed: {left}"


def test_issuer_is_learned_through_the_api_server(foreign: Scenarios) -> None:
    assert foreign.cluster is not None and foreign.cluster.issuer is not None
    learned = foreign.cluster.issuer
    assert learned.url == IN_CLUSTER_ISSUER
    assert learned.kid and learned.kid != foreign.clouds.issuer.issuer.kid
    assert IN_CLUSTER_ISSUER in foreign.clouds.issuer_locations


@pytest.mark.parametrize("name", RUNS)
def test_scenario_in_foreign_cluster_pod(foreign: Scenarios, name: str,
                                        teardown: Teardown) -> None:
    aws, entra = foreign.clouds.aws.decisions, foreign.clouds.azure.entra.decisions
    aws_start, entra_start = len(aws.all()), len(entra.all())  # this scenario's decisions only
    run = foreign.run(BY_NAME[name], teardown)
    foreign.verdict(run)
    targets = {run.applied.role_arn} if run.applied else set()
    if run.applied_azure:
        targets.add(run.applied_azure.client_id)
    assert targets, f"scenario {name} created no role or identity"
    assert (scenario_saw_issuer(aws.all(), IN_CLUSTER_ISSUER, targets, aws_start)
            or scenario_saw_issuer(entra.all(), IN_CLUSTER_ISSUER, targets, entra_start)), (
        f"no decision of scenario {name} judged a token of {IN_CLUSTER_ISSUER}")


@pytest.mark.parametrize("name", NEED_CLUSTER_KEY)
def test_variants_needing_the_cluster_key_are_refused_up_front(foreign: Scenarios,
                                                               name: str) -> None:
    teardown = Teardown()
    with pytest.raises(SigningKeyUnavailable, match="only its cluster holds"):
        foreign.run(BY_NAME[name], teardown)
    assert len(teardown) == 0  # refused before anything was created
