"""Creator records of kind clusters and `crossfed sweep --kind`'s judgement of them, with a kind
that answers as kind does (`get clusters`, `delete cluster`); tests/kind runs the real thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossfed.cluster.kind_owner import (
    RECORD,
    clear_creator,
    delete_kind_leftovers,
    find_kind_leftovers,
    mark_kept,
    process_start,
    write_creator,
)

pytestmark = [pytest.mark.local]
KIND = "/fake/bin/kind"


class FakeKind:
    def __init__(self, *clusters: str) -> None:
        self.clusters = list(clusters)
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout=None, **kwargs) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        if argv[1:3] == ["get", "clusters"]:
            if not self.clusters:
                return subprocess.CompletedProcess(argv, 0, "", "No kind clusters found.\n")
            return subprocess.CompletedProcess(argv, 0, "\n".join(self.clusters) + "\n", "")
        if argv[1:3] == ["delete", "cluster"]:
            name = argv[argv.index("--name") + 1]
            self.clusters = [c for c in self.clusters if c != name]
            return subprocess.CompletedProcess(argv, 0, "", f"Deleting cluster {name!r} ...\n")
        raise AssertionError(argv)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def state(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    return directory


def test_a_live_creator_spares_its_cluster(tmp_path):
    write_creator(state(tmp_path, "alive"), "alive")
    leftovers, spared = find_kind_leftovers(tmp_path, KIND, FakeKind("alive"))
    assert leftovers == [] and spared == ["alive: its run is still alive"]


def test_a_dead_creators_cluster_is_deleted_and_its_record_dropped(tmp_path):
    directory = state(tmp_path, "killed")
    write_creator(directory, "killed")
    record = json.loads((directory / RECORD).read_text())
    record["processes"] = [{"pid": dead_pid(), "start": "1"}]
    (directory / RECORD).write_text(json.dumps(record))
    (directory / "cluster.json").write_text("{}")
    kind = FakeKind("killed", "someone-elses")
    leftovers, spared = find_kind_leftovers(tmp_path, KIND, kind)
    assert [left.name for left in leftovers] == ["killed"] and leftovers[0].listed
    assert spared == ["someone-elses: no crossfed creator record (not created by a crossfed "
                      "run)"]
    lines: list[str] = []
    assert delete_kind_leftovers(leftovers, KIND, kind, lines.append) == []
    assert ["delete", "cluster", "--name", "killed"] == kind.calls[-1][1:5]
    assert kind.clusters == ["someone-elses"]
    assert not (directory / RECORD).exists() and not (directory / "cluster.json").exists()
    assert lines and lines[0].startswith("deleted kind cluster killed (created by pid ")


def test_a_reused_pid_is_not_taken_for_the_creator(tmp_path):
    directory = state(tmp_path, "reused")
    write_creator(directory, "reused")
    record = json.loads((directory / RECORD).read_text())
    record["processes"][0]["start"] = "0"  # this pid, but a process that started at another time
    (directory / RECORD).write_text(json.dumps(record))
    leftovers, _ = find_kind_leftovers(tmp_path, KIND, FakeKind("reused"))
    assert [left.name for left in leftovers] == ["reused"]


def test_the_xdist_controller_keeps_a_cluster_whose_worker_is_gone(tmp_path):
    directory = state(tmp_path, "xdist")
    write_creator(directory, "xdist", holder_pid=os.getpid())
    record = json.loads((directory / RECORD).read_text())
    record["processes"][0] = {"pid": dead_pid(), "start": "1"}  # the worker that created it
    (directory / RECORD).write_text(json.dumps(record))
    leftovers, spared = find_kind_leftovers(tmp_path, KIND, FakeKind("xdist"))
    assert leftovers == [] and spared == ["xdist: its run is still alive"]


def test_kept_clusters_and_other_hosts_records_are_left(tmp_path):
    kept = state(tmp_path, "kept")
    write_creator(kept, "kept", holder_pid=None)
    record = json.loads((kept / RECORD).read_text())
    record["processes"] = [{"pid": dead_pid(), "start": "1"}]
    (kept / RECORD).write_text(json.dumps(record))
    mark_kept(kept)
    other = state(tmp_path, "other")
    (other / RECORD).write_text(json.dumps({**record, "kept": False, "host": "elsewhere"}))
    kind = FakeKind("kept", "other")
    leftovers, spared = find_kind_leftovers(tmp_path, KIND, kind)
    assert leftovers == []
    assert spared[0].startswith("kept: kept (--crossfed-keep-cluster)")
    assert spared[1] == "other: created on elsewhere"
    assert not [c for c in kind.calls if "delete" in c]


def test_a_record_without_a_cluster_is_dropped_without_calling_kind_delete(tmp_path):
    directory = state(tmp_path, "never-made")
    write_creator(directory, "never-made")
    record = json.loads((directory / RECORD).read_text())
    record["processes"] = [{"pid": dead_pid(), "start": "1"}]
    (directory / RECORD).write_text(json.dumps(record))
    kind = FakeKind()
    leftovers, _ = find_kind_leftovers(tmp_path, KIND, kind)
    assert len(leftovers) == 1 and not leftovers[0].listed
    lines: list[str] = []
    delete_kind_leftovers(leftovers, KIND, kind, lines.append)
    assert not [c for c in kind.calls if "delete" in c]
    assert lines[0].startswith("deleted stale kind creator record of never-made")
    assert not (directory / RECORD).exists()


def test_process_start_and_clear(tmp_path):
    assert process_start(os.getpid()) == process_start(os.getpid()) is not None
    assert process_start(dead_pid()) is None
    write_creator(tmp_path, "c")
    clear_creator(tmp_path)
    clear_creator(tmp_path)  # twice: already gone is fine
    assert not (tmp_path / RECORD).exists()


class FakeDocker(FakeKind):
    """kind as above, and a dockerd that finishes a killed `kind create`'s container after
    kind delete has looked: `docker ps` shows it once, until `docker rm` removes it."""

    def __init__(self, *clusters: str, straggler: str | None = None) -> None:
        super().__init__(*clusters)
        self.straggler = straggler

    def __call__(self, argv, timeout=None, **kwargs) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in argv]
        if Path(argv[0]).name != "docker":
            return super().__call__(argv, timeout=timeout)
        self.calls.append(argv)
        if argv[1] == "ps":
            assert argv[-1] == "label=io.x-k8s.kind.cluster=killed", argv
            return subprocess.CompletedProcess(argv, 0, f"{self.straggler or ''}\n", "")
        if argv[1] == "rm":
            assert self.straggler in argv
            self.straggler = None
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise AssertionError(argv)


def test_a_node_container_dockerd_finished_after_kind_delete_is_removed_too(tmp_path):
    directory = state(tmp_path, "killed")
    write_creator(directory, "killed")
    record = json.loads((directory / RECORD).read_text())
    record["processes"] = [{"pid": dead_pid(), "start": "1"}]
    (directory / RECORD).write_text(json.dumps(record))
    fake = FakeDocker("killed", straggler="e3bece517c66")
    leftovers, _ = find_kind_leftovers(tmp_path, KIND, fake)
    sleeps: list[float] = []
    failures = delete_kind_leftovers(leftovers, KIND, fake, lambda line: None,
                                     docker_bin="/fake/bin/docker", sleep=sleeps.append)
    assert failures == []
    removed = [c for c in fake.calls if c[1:2] == ["rm"]]
    assert removed == [["/fake/bin/docker", "rm", "--force", "--volumes", "e3bece517c66"]]
    assert fake.straggler is None and len(sleeps) >= 2  # two quiet looks before it is done
