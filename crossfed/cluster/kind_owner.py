"""Who created a kind cluster, so that `crossfed sweep --kind` can tell a cluster a killed run
left from one a live run, or a --crossfed-keep-cluster run, still holds.

Right before `kind create cluster` the creating process writes `creator.json` in the cluster's
state directory (~/.cache/crossfed/tools/kind/<name>): its pid and the start time of that pid
(so a reused pid is not mistaken for it), and, under pytest-xdist, the controller's too, since
the controller deletes the cluster after the worker that created it has gone. A clean delete
removes the record; a kept cluster's record says `kept`. A cluster whose record names only dead
processes and is not kept is a leftover. A cluster without a record is not crossfed's to judge
(created by hand, or before records): it is left alone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossfed.cluster.kind import KindCluster, KindError
from crossfed.cluster.tools import Runner, run_command

RECORD = "creator.json"
NODE_LABEL = "io.x-k8s.kind.cluster"  # kind labels each node container with its cluster's name
SETTLE_SECONDS = 30


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name; 22 is index 19


def _alive(process: dict[str, Any]) -> bool:
    start = process_start(int(process["pid"]))
    return start is not None and start == process.get("start")


def write_creator(directory: Path, name: str, holder_pid: int | None = None) -> None:
    """Before `kind create`: this process (and `holder_pid`, the xdist controller) own it."""
    processes = [{"pid": os.getpid(), "start": process_start(os.getpid())}]
    if holder_pid:
        processes.append({"pid": holder_pid, "start": process_start(holder_pid)})
    record = {"cluster": name, "host": socket.gethostname(), "created_at": time.time(),
              "processes": processes, "kept": False}
    (Path(directory) / RECORD).write_text(json.dumps(record) + "\n")


def mark_kept(directory: Path) -> None:
    path = Path(directory) / RECORD
    if path.exists():
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "kept": True}) + "\n")


def clear_creator(directory: Path) -> None:
    (Path(directory) / RECORD).unlink(missing_ok=True)


@dataclass(frozen=True)
class KindLeftover:
    name: str
    directory: Path
    record: dict[str, Any]
    listed: bool  # kind lists it (False: the run died before a node container existed)

    def describe(self) -> str:
        pids = ", ".join(str(p["pid"]) for p in self.record.get("processes", []))
        age = (time.time() - float(self.record.get("created_at", time.time()))) / 60
        what = "kind cluster" if self.listed else "stale kind creator record of"
        return f"{what} {self.name} (created by pid {pids}, gone; {age:.0f} min old)"


def find_kind_leftovers(state_root: Path, kind_bin: Path | str,
                        runner: Runner = run_command) -> tuple[list[KindLeftover], list[str]]:
    """Leftovers under `state_root` (one directory per cluster name), and one line for each
    listed cluster that is spared, saying why."""
    listed = set(KindCluster.list_clusters(kind_bin, runner))
    leftovers, spared = [], []
    for path in sorted(Path(state_root).glob(f"*/{RECORD}")):
        name = path.parent.name
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            spared.append(f"{name}: unreadable {path}")
            continue
        if record.get("host") not in (None, socket.gethostname()):
            spared.append(f"{name}: created on {record.get('host')}")
        elif record.get("kept"):
            spared.append(f"{name}: kept (--crossfed-keep-cluster); kind delete cluster "
                          f"--name {name} removes it")
        elif any(_alive(p) for p in record.get("processes", [])):
            spared.append(f"{name}: its run is still alive")
        else:
            leftovers.append(KindLeftover(name, path.parent, record, name in listed))
    for name in sorted(listed - {p.parent.name for p in Path(state_root).glob(f"*/{RECORD}")}):
        spared.append(f"{name}: no crossfed creator record (not created by a crossfed run)")
    return leftovers, spared


def delete_kind_leftovers(leftovers: list[KindLeftover], kind_bin: Path | str,
                          runner: Runner = run_command,
                          report: Callable[[str], None] = print,
                          docker_bin: Path | str | None = None,
                          sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """`kind delete cluster` each listed leftover (also a half-created one: kind finds its node
    containers by label), then drop its record; the key and port state stay for a re-create.
    With `docker_bin`, node containers still there afterwards are removed too (see
    _remove_stragglers)."""
    failures = []
    for leftover in leftovers:
        if leftover.listed:
            cluster = KindCluster(leftover.name, kind_bin, created=True, runner=runner,
                                  kubeconfig_path=leftover.directory / "kubeconfig")
            try:
                cluster.delete()
                if docker_bin is not None:
                    _remove_stragglers(leftover.name, docker_bin, runner, sleep)
            except (KindError, RuntimeError) as exc:
                failures.append(f"kind cluster {leftover.name}: {exc}")
                continue
        (leftover.directory / "cluster.json").unlink(missing_ok=True)  # marks of that node
        clear_creator(leftover.directory)
        report(f"deleted {leftover.describe()}")
    return failures


def _node_containers(name: str, docker_bin: Path | str, runner: Runner) -> list[str]:
    argv = [str(docker_bin), "ps", "-a", "-q", "--filter", f"label={NODE_LABEL}={name}"]
    result = runner(argv, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"docker ps failed: {(result.stderr or '').strip()[-200:]}")
    return (result.stdout or "").split()


def _remove_stragglers(name: str, docker_bin: Path | str, runner: Runner,
                       sleep: Callable[[float], None]) -> None:
    """A `kind create` killed while its `docker run` was under way leaves dockerd finishing
    that container after kind delete has looked (seen in CI): remove the node containers
    until none has shown up for two looks in a row, for up to SETTLE_SECONDS."""
    quiet = 0
    for _ in range(SETTLE_SECONDS):
        ids = _node_containers(name, docker_bin, runner)
        if not ids:
            quiet += 1
            if quiet == 2:
                return
        else:
            quiet = 0
            runner([str(docker_bin), "rm", "--force", "--volumes", *ids], timeout=120)
        sleep(1)
    left = _node_containers(name, docker_bin, runner)
    if left:
        raise RuntimeError(f"node containers {left} of {name} still there after "
                           f"{SETTLE_SECONDS} s; docker rm -f {' '.join(left)}")
