"""`crossfed sweep --local-state`: the run directories (keys, tokens, credentials) of killed runs
are removed; a live run's directory, and anything that is no run directory, are left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossfed.secret_files import OWNER_FILE, read_owner, release_run_state, run_state_dir

pytestmark = [pytest.mark.local]

OWNER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from crossfed.secret_files import run_state_dir, write_private
    directory = run_state_dir(sys.argv[1], root=Path(sys.argv[2]))
    write_private(directory / "sa-signer.key", b"key material")
    print(directory, flush=True)
    time.sleep(600)
''')


def _start_run(run_id: str, root: Path) -> tuple[subprocess.Popen, Path]:
    """A process that owns a run directory (with a key in it) and keeps running."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, run_id, str(root)],
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    return owner, Path(owner.stdout.readline().strip())


def _sweep(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossfed.cli", "sweep", "--local-state", *args],
                          env={**os.environ, "CROSSFED_RUNS_DIR": str(root)},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def runs(tmp_path: Path):
    """A killed run's directory, a live run's, and an unrelated directory, under one root."""
    root = tmp_path / "runs"
    killed, dead_dir = _start_run("killedrun", root)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    live, live_dir = _start_run("liverun", root)
    unrelated = root / "not-a-run"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("mine")
    yield root, dead_dir, live_dir, unrelated
    live.kill()
    live.wait()


def test_sweep_removes_a_killed_runs_state_and_spares_a_live_one(runs) -> None:
    root, dead_dir, live_dir, unrelated = runs
    assert (dead_dir / "sa-signer.key").exists() and (live_dir / "sa-signer.key").exists()

    listed = _sweep(root, "--older-than", "0", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert f"would delete {dead_dir} (run killedrun" in listed.stdout
    assert "liverun" not in listed.stdout and "not-a-run" not in listed.stdout
    assert dead_dir.exists()

    # without --run-id, a run younger than --older-than is spared (default 60 minutes)
    young = _sweep(root)
    assert young.returncode == 0 and "no local state to delete" in young.stdout, young.stdout
    assert dead_dir.exists()

    swept = _sweep(root, "--older-than", "0")
    assert swept.returncode == 0, swept.stderr
    assert f"deleting {dead_dir}" in swept.stdout
    assert not dead_dir.exists()
    assert (live_dir / "sa-signer.key").exists() and (unrelated / "keep.txt").exists()


def test_sweep_by_run_id_never_takes_a_live_run(runs) -> None:
    root, dead_dir, live_dir, unrelated = runs
    live = _sweep(root, "--run-id", "liverun")
    assert live.returncode == 0 and "no local state to delete" in live.stdout, live.stdout
    assert live_dir.exists()
    dead = _sweep(root, "--run-id", "killedrun")
    assert dead.returncode == 0 and not dead_dir.exists(), dead.stdout
    assert live_dir.exists() and unrelated.exists()


def test_a_reused_pid_is_no_live_owner(tmp_path: Path) -> None:
    """A marker naming a running pid that started at another time: the run is dead."""
    directory = run_state_dir("reused", root=tmp_path)
    owner = read_owner(directory)
    assert owner is not None and owner["pid"] == os.getpid()
    (directory / OWNER_FILE).write_text(json.dumps({**owner, "start_time": "1"}))
    swept = _sweep(tmp_path, "--run-id", "reused")
    assert swept.returncode == 0 and not directory.exists(), swept.stdout


def test_run_state_dir_is_private_marked_and_never_shared(tmp_path: Path) -> None:
    first = run_state_dir("same", root=tmp_path)
    assert first == tmp_path / "same" and first.stat().st_mode & 0o777 == 0o700
    assert (first / OWNER_FILE).stat().st_mode & 0o777 == 0o600
    # the same run id in another live process (xdist workers given one --crossfed-run-id)
    live, other = _start_run("same", tmp_path)
    try:
        assert other == tmp_path / f"same.{live.pid}" and first.exists()
    finally:
        live.kill()
        live.wait()
    # a dead owner's directory of that run id is taken over, emptied
    taken = run_state_dir(f"same.{live.pid}", root=tmp_path)
    assert taken == other and not (taken / "sa-signer.key").exists()
    release_run_state(first)
    release_run_state(taken)
    assert not first.exists() and not taken.exists()


def test_sweep_needs_a_kubeconfig_or_local_state() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CROSSFED_KUBECONFIG"}
    done = subprocess.run([sys.executable, "-m", "crossfed.cli", "sweep"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--local-state" in done.stderr, done.stderr
