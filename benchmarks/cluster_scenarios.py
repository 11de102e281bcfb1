"""Scenario timings in pods: the Debian-built CI microcluster (cluster/ci-cluster.sh) and a kind
cluster that crossfed's own fixture creates from the locally built node image
(cluster/kind/ci-kind.sh), measured in the same run, one after the other.

Prints, for each: cold (microcluster: brought up from nothing; kind: `kind create` by the
fixture, inside the pytest session) to the first green pod scenario, warm (cluster already up,
or kept and reused) to the first green pod scenario, the time per pod scenario over the whole
scenario set, and 2 xdist workers against 1. Binaries and images come from the cache.
Targets (microcluster): warm under 15 s, under 5 s per pod scenario, 2 workers >= 1.6x of 1.
Usage (root): python benchmarks/cluster_scenarios.py [--state DIR] [--only micro|kind]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KIND_CLUSTER = "crossfed-bench"


def env_of(state: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a state dir's `env` file gives (`export K=V` lines, $VARS expanded)."""
    env = dict(os.environ if base is None else base)
    for line in (state / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), value)
    return env


def pytest(env: dict[str, str], selection: str, environment: str, workers: int = 0,
           extra: tuple[str, ...] = ()) -> tuple[float, int]:
    """Wall time of a pytest run over the pod scenarios matching `selection`."""
    start = time.perf_counter()
    parallel = ["-n", str(workers)] if workers else []
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *parallel, "--crossfed-env", environment, *extra, "-k", selection,
                           "tests/e2e"], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    passed = re.search(r"(\d+) passed", done.stdout)
    if done.returncode != 0 or not passed:
        sys.exit(f"pytest failed:\n{done.stdout[-3000:]}")
    return elapsed, int(passed.group(1))


def figures(label: str, run) -> None:
    """The warm, per-scenario and xdist figures of one cluster (`run` is `pytest` bound)."""
    warm, _ = run("assumes_role")
    print(f"{label}: warm (cluster reused): first green pod scenario {warm:.1f} s")
    total, count = run("federation")
    print(f"{label}: all pod scenarios: {count} in {total:.1f} s = {total / count:.2f} s each "
          f"(includes pytest start-up and the stand-ins)")
    one, _ = run("federation", workers=1)
    two, _ = run("federation", workers=2)
    print(f"{label}: xdist on the scenario set: 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
          f"speed-up {one / two:.2f}x")


def microcluster(state: Path) -> None:
    script = REPO / "cluster" / "ci-cluster.sh"
    try:
        start = time.perf_counter()
        subprocess.run(["bash", str(script), "up", str(state)], check=True,
                       capture_output=True, text=True)
        up = time.perf_counter() - start
        env = env_of(state)

        def run(selection: str, workers: int = 0) -> tuple[float, int]:
            return pytest(env, selection, "kubeconfig", workers)

        first, _ = run("assumes_role")
        print(f"microcluster: cold: cluster up {up:.1f} s + first green pod scenario "
              f"{first:.1f} s = {up + first:.1f} s")
        figures("microcluster", run)
    finally:
        subprocess.run(["bash", str(script), "down", str(state)], capture_output=True)


def kind(state: Path) -> None:
    script = REPO / "cluster" / "kind" / "ci-kind.sh"
    # A user's shell: none of the microcluster's CROSSFED_* (its issuer would forbid kind).
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSFED_", "PYTEST_"))}
    try:
        start = time.perf_counter()
        subprocess.run(["bash", str(script), "up", str(state)], check=True,
                       capture_output=True, text=True)
        up = time.perf_counter() - start
        env = env_of(state, base)
        options = ("--crossfed-webhooks", "reference", "--kind-cluster-name", KIND_CLUSTER,
                   "--crossfed-keep-cluster")

        def run(selection: str, workers: int = 0) -> tuple[float, int]:
            return pytest(env, selection, "kind", workers, options)

        first, _ = run("assumes_role")  # the fixture creates the cluster: kind create inside
        print(f"kind: cold: dockerd, kind and node image from the cache {up:.1f} s + session "
              f"with kind create to the first green pod scenario {first:.1f} s "
              f"= {up + first:.1f} s")
        figures("kind", run)
    finally:
        if (state / "env").exists():
            env = env_of(state, base)
            subprocess.run(["kind", "delete", "cluster", "--name", KIND_CLUSTER], env=env,
                           capture_output=True)
        subprocess.run(["bash", str(script), "down", str(state)], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--only", choices=("micro", "kind"), default=None)
    args = parser.parse_args()
    state = args.state or Path(tempfile.mkdtemp(prefix="crossfed-bench-"))
    if args.only != "kind":
        microcluster(state / "micro")
    if args.only != "micro":
        kind(state / "kind")


if __name__ == "__main__":
    main()
