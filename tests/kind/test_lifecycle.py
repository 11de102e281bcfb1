"""The kind environment's lifecycle for real: pytest sessions of crossfed's packaged suite, run as
a user runs them, against a real Docker and a real kind (in CI: cluster/kind/ci-kind.sh).

- two xdist workers ask for the same cluster: exactly one `kind create` runs;
- a second session with --crossfed-keep-cluster reuses it: no create, the same node container,
  and the issuer key and port it was created with;
- a session that did not create it never deletes it;
- a session killed with SIGKILL while it sets the cluster up leaves a half-made cluster that
  `crossfed sweep --kind` (and `--local-state` for its keys) removes completely.

Each session runs with its own HOME, so the clusters' state (key, port, creator record) and run
directories are this test's, and with a kind wrapper that logs every kind command it is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossfed.cluster.tools import ToolMissing, docker_available, find_tool

pytestmark = [pytest.mark.local, pytest.mark.cluster]

SUITE_AWS = "test_workload_assumes_role_and_lists_bucket"
SUITE_AZURE = "test_workload_reads_the_secret"
NAME = "crossfed-lifecycle"
KILLED = "crossfed-lifecycle-killed"
NODE_LABEL = "io.x-k8s.kind.cluster"
SESSION_TIMEOUT = 900


def _kind_problem() -> str | None:
    problem = docker_available()
    if problem:
        return problem
    try:
        find_tool("kind", None, download=False)
    except ToolMissing as exc:
        return str(exc)
    return None


PROBLEM = _kind_problem()
if PROBLEM:
    pytestmark.append(pytest.mark.skip(
        reason=f"kind lifecycle tests need Docker and kind: {PROBLEM} (cluster/kind/ci-kind.sh "
               "up STATE, then `. STATE/env`, provides both without a registry)"))


class Sessions:
    """Runs pytest sessions of crossfed.suite in a HOME of their own, kind logged."""

    def __init__(self, root: Path) -> None:
        self.root, self.home = root, root / "home"
        self.home.mkdir()
        self.kind = find_tool("kind", None, download=False)
        self.docker = find_tool("docker", None, download=False)
        self.log = root / "kind-calls.log"
        self.wrapper = root / "kind"
        self.wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{self.log}"\nexec "{self.kind}" "$@"\n')
        self.wrapper.chmod(0o755)
        # A user's shell: none of the CI cluster's CROSSFED_* (its issuer would forbid kind).
        keep = {"CROSSFED_KIND_NODE_IMAGE", "CROSSFED_CACHE", "CROSSFED_KIND_CACHE"}
        self.env = {k: v for k, v in os.environ.items()
                    if (not k.startswith(("CROSSFED_", "PYTEST_")) or k in keep)}
        self.env.pop("XDG_RUNTIME_DIR", None)  # run dirs under this HOME too
        self.env["HOME"] = str(self.home)
        self.crossfed = [sys.executable, "-c", "import sys; from crossfed.cli import main; "
                         "sys.exit(main())"]

    def state(self, name: str) -> Path:
        return self.home / ".cache" / "crossfed" / "tools" / "kind" / name

    def argv(self, name: str, *extra: str, tests: tuple[str, ...] = (SUITE_AWS,)) -> list[str]:
        return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                "--pyargs", "crossfed.suite", "-k", " or ".join(tests),
                "--crossfed-env", "kind", "--crossfed-webhooks", "reference",
                "--kind-cluster-name", name, "--crossfed-kind-bin", str(self.wrapper), *extra]

    def run(self, name: str, *extra: str, tests: tuple[str, ...] = (SUITE_AWS,)) -> str:
        mark = self.calls()
        result = subprocess.run(self.argv(name, *extra, tests=tests), cwd=self.root,
                                env=self.env, capture_output=True, text=True,
                                timeout=SESSION_TIMEOUT)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        assert f"{len(tests)} passed" in output, output[-4000:]
        self.last_calls = self.calls()[len(mark):]
        return output

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def creates(self, calls: list[str]) -> list[str]:
        return [c for c in calls if c.startswith("create cluster")]

    def deletes(self, calls: list[str]) -> list[str]:
        return [c for c in calls if c.startswith("delete cluster")]

    def listed(self) -> list[str]:
        out = subprocess.run([str(self.kind), "get", "clusters"], capture_output=True,
                             text=True, timeout=120, env=self.env)
        return out.stdout.split()

    def node_containers(self, name: str) -> list[str]:
        out = subprocess.run([str(self.docker), "ps", "-a", "-q", "--filter",
                              f"label={NODE_LABEL}={name}"], capture_output=True, text=True,
                             timeout=60, check=True)
        return out.stdout.split()

    def fingerprint(self, name: str) -> dict[str, str]:
        """What a reused cluster must still have: node container, issuer port and key."""
        state = self.state(name)
        node = subprocess.run([str(self.docker), "inspect", "--format", "{{.Id}}",
                               f"{name}-control-plane"], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()
        port = json.loads((state / "state.json").read_text())["issuer_port"]
        public = (state / "issuer" / "sa-signer.pub").read_bytes()
        issuer = json.loads(subprocess.run(
            [str(self.kind_kubectl()), "--kubeconfig", str(state / "kubeconfig"), "get", "--raw",
             "/.well-known/openid-configuration"], capture_output=True, text=True,
            timeout=60, check=True).stdout)["issuer"]
        return {"node": node, "port": str(port), "issuer": issuer,
                "key": hashlib.sha256(public).hexdigest()[:16]}

    def kind_kubectl(self) -> Path:
        return find_tool("kubectl", None, download=False)

    def delete(self, name: str) -> None:
        subprocess.run([str(self.kind), "delete", "cluster", "--name", name],
                       capture_output=True, timeout=300, env=self.env)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory):
    made = Sessions(tmp_path_factory.mktemp("kind-lifecycle"))
    yield made
    for name in (NAME, KILLED):  # whatever a failed test left
        if name in made.listed():
            made.delete(name)


def test_one_creator_under_xdist_then_reuse_with_the_same_key_and_port(sessions: Sessions):
    assert NAME not in sessions.listed(), f"a cluster {NAME} exists before the test"
    first = sessions.run(NAME, "-n", "2", "--crossfed-keep-cluster",
                         tests=(SUITE_AWS, SUITE_AZURE))
    assert "2 passed" in first
    creates = sessions.creates(sessions.last_calls)
    assert len(creates) == 1, f"expected one `kind create` from two workers: {creates}"
    assert not sessions.deletes(sessions.last_calls), "a kept cluster was deleted"
    assert NAME in sessions.listed()
    record = json.loads((sessions.state(NAME) / "creator.json").read_text())
    assert record["kept"] is True and record["cluster"] == NAME
    before = sessions.fingerprint(NAME)
    assert before["issuer"] == f"https://127.0.0.1:{before['port']}"

    sessions.run(NAME, "--crossfed-keep-cluster")
    assert not sessions.creates(sessions.last_calls), "the kept cluster was re-created"
    assert sessions.fingerprint(NAME) == before


def test_a_session_that_did_not_create_the_cluster_never_deletes_it(sessions: Sessions):
    if NAME not in sessions.listed():
        pytest.skip(f"needs the cluster of the test before ({NAME})")
    before = sessions.fingerprint(NAME)
    sessions.run(NAME)  # no --crossfed-keep-cluster: it still must not delete what it found
    assert not sessions.creates(sessions.last_calls)
    assert not sessions.deletes(sessions.last_calls), sessions.last_calls
    assert NAME in sessions.listed()
    assert sessions.fingerprint(NAME) == before
    sessions.delete(NAME)
    assert NAME not in sessions.listed()


def test_a_session_killed_during_set_up_is_swept_completely(sessions: Sessions, tmp_path: Path):
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(sessions.argv(KILLED), cwd=sessions.root, env=sessions.env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not sessions.node_containers(KILLED):  # kind create is under way
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no kind node container appeared in 180 s"
            time.sleep(0.5)
        time.sleep(2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # pytest and its kind create, as a CI job dies
        process.wait(timeout=60)
        log.close()
    assert sessions.node_containers(KILLED), "the kill left nothing to sweep: not a real test"
    assert (sessions.state(KILLED) / "creator.json").exists()

    state_root = sessions.state(KILLED).parent
    sweep = subprocess.run([*sessions.crossfed, "sweep", "--kind",
                            "--kind-state-root", str(state_root), "--kind-bin",
                            str(sessions.kind), "--local-state", "--older-than", "0"],
                           env=sessions.env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert f"deleted kind cluster {KILLED}" in sweep.stdout, sweep.stdout
    assert not sessions.node_containers(KILLED)
    assert KILLED not in sessions.listed()
    assert not (sessions.state(KILLED) / "creator.json").exists()
    runs = sessions.home / ".cache" / "crossfed" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    again = subprocess.run([*sessions.crossfed, "sweep", "--kind",
                            "--kind-state-root", str(state_root), "--kind-bin",
                            str(sessions.kind)], env=sessions.env, capture_output=True,
                           text=True, timeout=300)
    assert "no kind cluster to delete" in again.stdout, again.stdout
