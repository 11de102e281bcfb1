"""Scenario timings on the Debian-built CI cluster (cluster/ci-cluster.sh).

Prints: cold (cluster brought up from nothing, binaries and image cached) and warm (cluster
already up) time to the first green pod scenario, and the time per pod scenario over the whole
scenario set. Targets: warm under 15 s, under 5 s per pod scenario, 2 xdist workers >= 1.6x of 1.
Usage (root): python benchmarks/cluster_scenarios.py [--state DIR]
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


def env_of(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in (state / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def pytest(env: dict[str, str], selection: str, workers: int = 0) -> tuple[float, int]:
    """Wall time of a pytest run over the kubeconfig scenarios matching `selection`."""
    start = time.perf_counter()
    parallel = ["-n", str(workers)] if workers else []
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *parallel, "--crossfed-env", "kubeconfig", "-k", selection,
                           "tests/e2e"], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    passed = re.search(r"(\d+) passed", done.stdout)
    if done.returncode != 0 or not passed:
        sys.exit(f"pytest failed:\n{done.stdout[-3000:]}")
    return elapsed, int(passed.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", type=Path, default=None)
    args = parser.parse_args()
    state = args.state or Path(tempfile.mkdtemp(prefix="crossfed-bench-"))
    script = REPO / "cluster" / "ci-cluster.sh"
    try:
        start = time.perf_counter()
        subprocess.run(["bash", str(script), "up", str(state)], check=True,
                       capture_output=True, text=True)
        up = time.perf_counter() - start
        env = env_of(state)
        first, _ = pytest(env, "assumes_role")
        print(f"cold: cluster up {up:.1f} s + first green pod scenario {first:.1f} s "
              f"= {up + first:.1f} s")
        warm, _ = pytest(env, "assumes_role")
        print(f"warm (cluster reused): first green pod scenario {warm:.1f} s (target < 15 s)")
        total, count = pytest(env, "federation")
        print(f"all pod scenarios: {count} in {total:.1f} s = {total / count:.2f} s each "
              f"(target < 5 s; includes pytest start-up and the stand-ins)")
        one, _ = pytest(env, "federation", workers=1)
        two, _ = pytest(env, "federation", workers=2)
        print(f"xdist on the scenario set: 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
              f"speed-up {one / two:.2f}x (target >= 1.6x)")
    finally:
        subprocess.run(["bash", str(script), "down", str(state)], capture_output=True)


if __name__ == "__main__":
    main()
