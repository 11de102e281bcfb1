"""What installing crossfed costs a project that never uses it: `pytest --collect-only` on an
empty project with crossfed's plugin loaded (it is, wherever crossfed is installed) and with
it blocked (`-p no:crossfed`, as if crossfed were not installed: pytest then never imports it),
interleaved in the same run so that both see the same machine.

    python benchmarks/plugin_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def collect_only(project: Path, *extra: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSFED_", "PYTEST_"))}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", *extra], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 5) or "crossfed" in result.stdout:
        raise SystemExit(f"unexpected pytest output: {result.stdout}{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crossfed-empty-project-") as folder:
        project = Path(folder)
        (project / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
        collect_only(project)  # warm the file cache for both variants
        with_plugin, without = [], []
        for _ in range(args.runs):
            with_plugin.append(collect_only(project))
            without.append(collect_only(project, "-p", "no:crossfed"))
    loaded, blocked = statistics.median(with_plugin), statistics.median(without)
    noise = statistics.stdev(without)
    print(f"pytest --collect-only, empty project, median of {args.runs} runs each:")
    print(f"  without crossfed (-p no:crossfed): {blocked * 1000:.1f} ms "
          f"(stdev {noise * 1000:.1f})")
    print(f"  with crossfed installed:            {loaded * 1000:.1f} ms "
          f"(stdev {statistics.stdev(with_plugin) * 1000:.1f})")
    print(f"  ratio with/without: {loaded / blocked:.3f}; difference "
          f"{(loaded - blocked) * 1000:+.1f} ms")


if __name__ == "__main__":
    main()
