"""CI tells the truth about its tier: when the CI cluster cannot start as root, the step
.ci/run uses (.ci/cluster-tier.sh) fails with the cluster's own error and leaves nothing
behind; CROSSFED_CI_CLUSTER=0 is the one way to skip it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIER = ROOT / ".ci" / "cluster-tier.sh"
BINARIES = ("kube-apiserver", "kubelet", "kube-controller-manager")


def _built_binaries() -> Path | None:
    given = os.environ.get("CROSSFED_KUBE_BINARIES")
    candidates = [Path(given)] if given else sorted(
        Path(os.environ.get("CROSSFED_CACHE", "/var/cache/crossfed"), "kubernetes").glob("*"))
    for candidate in candidates:
        if all((candidate / name).is_file() for name in BINARIES):
            return candidate
    return None


def _run(state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CROSSFED_")}
    return subprocess.run(["bash", str(TIER), str(state)], env={**base, **env},
                          capture_output=True, text=True, timeout=600)


def test_skipping_the_cluster_is_said_and_only_on_request(tmp_path: Path) -> None:
    done = _run(tmp_path / "state", CROSSFED_CI_CLUSTER="0")
    assert done.returncode == 0, done.stderr
    assert "cluster not requested (CROSSFED_CI_CLUSTER=0)" in done.stderr
    assert not (tmp_path / "state" / "env").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the CI cluster runs as root")
def test_unreadable_cached_binaries_fail_ci_naming_the_cause(tmp_path: Path) -> None:
    built = _built_binaries()
    if built is None:
        pytest.skip("needs the CI cluster's binaries (cluster/build-kubernetes.sh)")
    broken = tmp_path / "binaries"
    broken.mkdir()
    for name in (*BINARIES, "pause.c"):
        shutil.copyfile(built / name, broken / name)
        (broken / name).chmod(0)  # what `chmod 000` on the cache does
    image = tmp_path / "probe.tar"
    image.write_bytes(b"not read: the cluster stops before it loads images")
    state = tmp_path / "state"
    bridge = "crossfedt9"
    done = _run(state, CROSSFED_KUBE_BINARIES=str(broken),
                CROSSFED_PROBE_IMAGE_ARCHIVE=str(image), CROSSFED_BRIDGE=bridge,
                CROSSFED_BRIDGE_CIDR="10.79.9.0/24")
    assert done.returncode == 1, done.stderr[-3000:]
    cause = [line for line in done.stderr.splitlines() if "did not start" in line]
    assert cause and "kube-apiserver (mode ----------)" in cause[0], done.stderr[-3000:]
    assert "cannot be run" in cause[0] and "build-kubernetes.sh" in cause[0]
    assert "CROSSFED_CI_CLUSTER=0" in done.stderr
    assert not (state / "env").exists()
    # nothing left: the issuer process it started is gone, no bridge was made
    pid = (state / "issuer.pid").read_text().strip()
    assert not Path(f"/proc/{pid}").exists() or "crossfed" not in Path(
        f"/proc/{pid}/cmdline").read_text(errors="replace")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert bridge not in links
    # A cluster already up (CI's, while this runs) is untouched: its runtime was not stopped.
    running = os.environ.get("CROSSFED_KUBECONFIG")
    if running:
        from kubernetes import client, config

        api = client.VersionApi(config.new_client_from_config(config_file=running))
        assert api.get_code(_request_timeout=20).git_version.startswith("v1.20")
