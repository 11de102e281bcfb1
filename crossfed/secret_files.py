"""Files that hold keys, tokens or secrets: created owner-only, never widened, and kept together.

Every private key, token file, kubeconfig with credentials and state file with a secret that
crossfed writes goes through `write_private` (0600 from the moment the file exists, whatever
the umask, also when it existed before with a wider mode), and every directory that holds them
through `private_dir` (0700).

A run's secret-bearing files live under one per-run directory, `run_state_dir(run_id)`:

    $CROSSFED_RUNS_DIR/<run-id>/                  when CROSSFED_RUNS_DIR is set, else
    $XDG_RUNTIME_DIR/crossfed/runs/<run-id>/      when XDG_RUNTIME_DIR is set (a per-user tmpfs:
                                                  the secrets never reach a disk, and are gone
                                                  at logout or reboot), else
    ~/.cache/crossfed/runs/<run-id>/

each 0700, with an owner marker (`owner.json`: run id, pid, the pid's start time, host,
creation time) written before the directory gets its name. The owner removes it at the end
(`release_run_state`); what a killed run left is removed by `crossfed sweep --local-state`
(crossfed/local_sweep.py), which never touches a directory whose owner still runs or that has
no marker.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

OWNER_FILE = "owner.json"
RUNS_ENV = "CROSSFED_RUNS_DIR"


def write_private(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` to `path` readable and writable by the owner only (0600).

    The file is created with mode 0600 (the umask can only narrow it), and an existing file is
    narrowed to 0600 before a byte is written, so no wider mode is ever seen with the secret in
    it."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(raw)
    finally:
        if fd >= 0:
            os.close(fd)
    return path


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and missing parents) with the leaf 0700, whatever the umask. An existing
    directory is left as it is (it may be the user's); returns the path."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    return path


def runs_roots() -> list[Path]:
    """Where run directories may be, the one new runs use first."""
    if os.environ.get(RUNS_ENV):
        return [Path(os.environ[RUNS_ENV]).expanduser()]
    roots = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        roots.append(Path(runtime) / "crossfed" / "runs")
    roots.append(Path.home() / ".cache" / "crossfed" / "runs")
    return roots


def process_start_time(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid it
    names one process, so a reused pid is not taken for the run's. None where /proc is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def owner_marker(run_id: str, pid: int | None = None) -> dict[str, object]:
    pid = os.getpid() if pid is None else pid
    return {"run_id": run_id, "pid": pid, "start_time": process_start_time(pid),
            "host": socket.gethostname(), "created": time.time()}


def read_owner(directory: Path) -> dict[str, object] | None:
    try:
        owner = json.loads((Path(directory) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and "pid" in owner else None


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (on this host); a pid of another user counts."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_alive(owner: dict[str, object]) -> bool:
    """Whether the process a marker names still runs (True when that cannot be told: another
    host, or a pid of another user)."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname():
        return True
    if not pid_alive(pid):
        return False
    assert isinstance(pid, int)
    started = owner.get("start_time")
    now = process_start_time(pid)
    return started is None or now is None or started == now


def run_state_dir(run_id: str, root: Path | None = None) -> Path:
    """A fresh 0700 directory for this process's run `run_id`, with its owner marker.

    A directory of the same run id left by a dead owner is taken over (emptied first); one held
    by a live process (pytest-xdist workers given the same --crossfed-run-id) is left alone and
    this process gets `<run-id>.<pid>`."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValueError(f"run id {run_id!r} cannot name a directory")
    root = private_dir(root or runs_roots()[0])
    for name in (run_id, f"{run_id}.{os.getpid()}"):
        target = root / name
        owner = read_owner(target)
        if target.exists():
            if owner is None or owner_alive(owner):
                continue  # someone else's (or unmarked): never reuse
            shutil.rmtree(target)
        staging = Path(root / f".{name}.{os.getpid()}.new")
        shutil.rmtree(staging, ignore_errors=True)
        private_dir(staging)
        write_private(staging / OWNER_FILE, json.dumps(owner_marker(run_id)) + "\n")
        try:
            os.rename(staging, target)  # the directory exists only with its marker
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            continue
        return target
    raise RuntimeError(f"no free run directory for run {run_id} under {root}")


def release_run_state(directory: Path) -> None:
    """Remove a run directory at the run's end (only if this process owns it)."""
    owner = read_owner(directory)
    if owner is not None and owner.get("pid") == os.getpid():
        shutil.rmtree(directory, ignore_errors=True)
