"""The plugin in a project that has crossfed installed: idle until asked, and its old option
spellings rewritten (with a deprecation warning) only where no other plugin owns them.

Runs pytest in a subprocess in an empty folder, with a docker on PATH that logs each call, so
that "did crossfed run `docker info`" is seen from outside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.local]

OPTIONS_TEST = '''
def test_options(request):
    get = request.config.getoption
    assert get("crossfed_keep_cluster") is True
    assert get("crossfed_kind_bin") == "/opt/kind"
    assert get("crossfed_kubeconfig") == "/etc/k.yaml"
'''


def run_pytest(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    bin_dir, calls = folder / "bin", folder / "docker-calls"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho 28.2.2\n')
    (bin_dir / "docker").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSFED_", "PYTEST_"))}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(folder))
    project = folder / "project"
    project.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=project, env=env, capture_output=True, text=True, timeout=300)
    return result, calls


def test_an_unrelated_project_sees_nothing_of_crossfed(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "test_theirs.py").write_text("def test_theirs():\n    pass\n")
    for args in (["--collect-only"], ["-q"], []):
        result, calls = run_pytest(tmp_path, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        # pytest's own "plugins: crossfed-0.1.0, ..." header line is all there is
        said = [line for line in (result.stdout + result.stderr).splitlines()
                if "crossfed" in line and not line.startswith("plugins:")]
        assert said == []
        assert not calls.exists()  # no `docker info`
    assert "crossfed" not in {p.name for p in (tmp_path / ".cache").glob("*")}


def test_asking_for_crossfed_engages_it(tmp_path: Path) -> None:
    result, calls = run_pytest(tmp_path, "--collect-only", "-m", "local")
    assert result.returncode == 5, result.stdout + result.stderr  # nothing to collect
    assert "crossfed: environments process" in result.stdout
    assert calls.read_text().startswith("info")


def test_old_spellings_still_work_with_a_deprecation_warning(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "test_options.py").write_text(OPTIONS_TEST)
    result, _ = run_pytest(tmp_path, "-q", "--keep-cluster", "--kind-bin=/opt/kind",
                           "--kubeconfig", "/etc/k.yaml", "--crossfed-env", "process")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    output = result.stdout + result.stderr
    assert "--keep-cluster is deprecated, use --crossfed-keep-cluster" in output
    assert "--kind-bin is deprecated, use --crossfed-kind-bin" in output
    assert "--kubeconfig is deprecated" not in output  # the cloud tier's spelling: an alias


def test_help_lists_the_new_names_under_one_heading(tmp_path: Path) -> None:
    result, calls = run_pytest(tmp_path, "--help")
    assert result.returncode == 0
    heading = result.stdout.index("crossfed: cross-cloud workload identity federation")
    section = result.stdout[heading:]
    for flag in ("--crossfed-keep-cluster", "--crossfed-kubeconfig", "--crossfed-kind-bin",
                 "--crossfed-kubectl-bin", "--crossfed-helm-bin", "--kind-cluster-name"):
        assert flag in section
    assert "  --keep-cluster" not in result.stdout and not calls.exists()


def test_a_relative_state_dir_is_taken_from_where_pytest_was_started(tmp_path: Path) -> None:
    """The process workload runs in a working directory of its own: a relative
    --crossfed-state-dir must still name the directory under the project."""
    result, _ = run_pytest(tmp_path, "--pyargs", "crossfed.suite", "-m", "local", "-q",
                           "--crossfed-env", "process", "--crossfed-state-dir", "state",
                           "-k", "test_workload_assumes_role_and_lists_bucket")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-2000:]
    assert (tmp_path / "project" / "state").is_dir()
