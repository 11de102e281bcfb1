"""Running the cloud tier as a user would, against `crossfed serve` as a separate process
reached only through the SDKs' standard environment (crossfed.cloud.serve_env) and the tier's
flags: no Python object, decision log or private endpoint of the stand-ins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossfed.cloud.serve_env import sdk_environment, write_bundle
from fixtures.serve import Serve, start_serve  # noqa: F401 (start_serve: for the tests)

REPORTED: list[str] = []  # printed at the end of the run (tests/cloud/conftest.py)
SUMMARY = re.compile(r"^crossfed: (cloud-\w+(?:@\w+)?): (\d+) of (\d+) scenarios passed", re.M)


@dataclass
class CiCluster:
    """The CI cluster (cluster/ci-cluster.sh exports CROSSFED_*): it stands in for both AKS and
    EKS; its issuer is served by its own process, which serve is told to trust."""

    kubeconfig: str
    context: str
    bridge: str
    issuer_ca: str
    node: str | None
    image: str

    @classmethod
    def from_env(cls) -> CiCluster | None:
        kubeconfig = os.environ.get("CROSSFED_KUBECONFIG")
        if not kubeconfig or not os.environ.get("CROSSFED_ISSUER_CA"):
            return None
        from kubernetes import config

        _, current = config.list_kube_config_contexts(config_file=kubeconfig)
        return cls(kubeconfig, current["name"], os.environ.get("CROSSFED_STANDIN_HOST",
                                                               "127.0.0.1"),
                   os.environ["CROSSFED_ISSUER_CA"], os.environ.get("CROSSFED_NODE"),
                   os.environ.get("CROSSFED_PROBE_IMAGE", "crossfed/probe:local"))


def start(state_dir: Path, delay: float, cluster: CiCluster | None) -> Serve:
    extra = ["--propagation-delay", str(delay)]
    if cluster is not None:  # pods reach serve on the bridge; serve trusts the cluster issuer
        extra += ["--host", cluster.bridge, "--trust-ca", cluster.issuer_ca]
    return start_serve(state_dir, *extra)


def environment(serve: Serve, cluster: CiCluster | None) -> dict[str, str]:
    """The SDK environment of a user pointed at serve; nothing else of this process leaks in
    but PATH/HOME (and the CI cluster's CROSSFED_ISSUER_* when pods run)."""
    also = [Path(cluster.issuer_ca)] if cluster is not None else []
    bundle = write_bundle(serve.state_dir, dict(serve.info), also)
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "CROSSFED_RUNS_DIR")}
    env.update(sdk_environment(dict(serve.info), bundle))
    if cluster is not None:
        for name in ("CROSSFED_ISSUER_URL", "CROSSFED_ISSUER_KEY", "CROSSFED_ISSUER_CA"):
            env[name] = os.environ[name]
    else:  # the process scenarios' tokens: serve's own issuer, which serve trusts
        env.update(CROSSFED_ISSUER_URL=serve.info["issuer"],
                   CROSSFED_ISSUER_KEY=serve.info["signing_key"],
                   CROSSFED_ISSUER_CA=serve.info["ca_bundle"])
    return env


def tier_args(serve: Serve, cluster: CiCluster | None, clouds: tuple[str, ...] = ("aws",
                                                                                    "azure"),
              *extra: str) -> list[str]:
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs",
            "crossfed.suite", "-m", "cloud", "-q", "-rfE",
            "--azure-arm-endpoint", serve.info["azure"]["arm_endpoint"]]
    for cloud in clouds:
        args += ["--cloud", cloud]
    if cluster is not None:
        args += ["--kubeconfig", cluster.kubeconfig, "--aks-context", cluster.context,
                 "--eks-context", cluster.context, "--crossfed-webhooks", "reference",
                 "--crossfed-probe-image", cluster.image]
        if cluster.node:
            args += ["--crossfed-node", cluster.node]
    return [*args, *extra]


def run_tier(args: list[str], env: dict[str, str], cwd: Path,
             timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def summaries(output: str) -> dict[str, tuple[int, int]]:
    return {m[1]: (int(m[2]), int(m[3])) for m in SUMMARY.finditer(output)}


@dataclass
class TierRun:
    """One tier run, what it printed and how it ended."""

    label: str
    returncode: int
    output: str


class SideBySide:
    """Tier runs started at once, each in a thread of its own, so that their propagation waits
    overlap, as several teams' nightly runs share one account; a run given `after` starts
    when that one has ended."""

    def __init__(self, workdir: Path, workers: int = 4) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.workdir = workdir
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                        thread_name_prefix="tier-run")
        self._runs: dict[str, Any] = {}

    def start(self, label: str, args: list[str], env: dict[str, str],
              after: str | None = None) -> None:
        if label in self._runs:
            return
        before = self._runs.get(after) if after else None
        cwd = self.workdir / label
        cwd.mkdir(parents=True, exist_ok=True)

        def run() -> TierRun:
            if before is not None:
                before.exception()  # waits; the earlier run's own test reports its failure
            done = run_tier(args, env, cwd)
            return TierRun(label, done.returncode, done.stdout + done.stderr)

        self._runs[label] = self._pool.submit(run)

    def result(self, label: str, timeout: float = 3600) -> TierRun:
        return self._runs[label].result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
