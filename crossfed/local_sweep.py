"""Sweeping the secret-bearing state a killed run left on this machine.

A run keeps its keys, token files and admin credentials in one 0700 directory with an owner
marker (crossfed/secret_files.py: `run_state_dir`). A run that ends removes it; one that was
killed (SIGKILL, OOM, a closed laptop) cannot, so `crossfed sweep --local-state` finds the run
directories whose owner process is gone and removes them. A directory is never removed while
its owner runs, nor when it has no marker (it is then not crossfed's).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from crossfed.secret_files import owner_alive, read_owner, runs_roots


@dataclass(frozen=True)
class LocalLeftover:
    path: Path
    run_id: str
    pid: object
    created: float

    def describe(self, now: float) -> str:
        minutes = (now - self.created) / 60
        return f"{self.path} (run {self.run_id}, pid {self.pid} gone, {minutes:.0f} min old)"


def find_local_leftovers(run_id: str | None = None, older_than_minutes: float = 0,
                         roots: list[Path] | None = None,
                         now: float | None = None) -> list[LocalLeftover]:
    """Run directories under `roots` (default: every place runs are kept) whose owner is dead:
    those of `run_id` whatever their age, or of any run created more than `older_than_minutes`
    ago."""
    now = time.time() if now is None else now
    found = []
    for root in roots if roots is not None else runs_roots():
        try:
            entries = sorted(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
                continue
            owner = read_owner(entry)
            if owner is None or owner_alive(owner):
                continue
            created = owner.get("created")
            created = float(created) if isinstance(created, (int, float)) else 0.0
            if run_id is not None:
                if owner.get("run_id") != run_id:
                    continue
            elif now - created < older_than_minutes * 60:
                continue
            found.append(LocalLeftover(entry, str(owner.get("run_id")), owner.get("pid"),
                                       created))
    return found


def delete_local_leftovers(leftovers: list[LocalLeftover]) -> list[str]:
    """Remove them (checking once more that each owner is still gone); the failures, described."""
    failures = []
    for leftover in leftovers:
        owner = read_owner(leftover.path)
        if owner is None or owner_alive(owner):
            continue
        try:
            shutil.rmtree(leftover.path)
        except OSError as exc:
            failures.append(f"{leftover.path}: {exc}")
    return failures
