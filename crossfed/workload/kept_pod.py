"""Pods kept across a webhook upgrade: created on the first versions, still running after the
upgrade, asked again whether they reach the other cloud.

A kept pod runs the probe in a loop (a round every LOOP_SECONDS, through /bin/sh, which every
probe image has), each round reading the token file the kubelet keeps refreshing and printing
one JSON report line. After the upgrade the harness waits for a round that started after it
was asked (the second new line: the first may have begun before) and judges that round. The
pod is never re-mutated: it keeps the env and volume of the versions it was created on, which
is the point.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from kubernetes.client.rest import ApiException

from crossfed.cleanup import Teardown
from crossfed.workload.pod import PROBE_PYTHON, PodRunner
from crossfed.workload.process import AwsWorkload, AzureWorkload, ProbeResult, SdkTargets

LOOP_SECONDS = 3
POD_NAME = "kept"


@dataclass
class KeptPod:
    namespace: str
    name: str = POD_NAME
    rounds: int = 0  # JSON report lines seen so far


def start_kept_pod(runner: PodRunner, namespace: str, service_account: str,
                   targets: SdkTargets, teardown: Teardown, aws: AwsWorkload | None = None,
                   azure: AzureWorkload | None = None) -> tuple[KeptPod, ProbeResult]:
    """The scenario's namespace and service account, and a probe pod looping; its first
    round's result. `teardown` is the session's: the pod outlives the test."""
    runner.prepare(namespace, service_account, teardown, aws, azure)
    pod = runner.build_pod(service_account, targets, aws, azure, pod_name=POD_NAME)
    container = pod.spec.containers[0]
    # sh -c SCRIPT $0 $@: the probe's own command and arguments, run again and again.
    container.command = ["/bin/sh", "-c", f'while :; do "$0" "$@"; sleep {LOOP_SECONDS}; done',
                         PROBE_PYTHON]
    runner.core.create_namespaced_pod(namespace, pod)
    kept = KeptPod(namespace)
    return kept, next_round(runner, kept, new_rounds=1)


def next_round(runner: PodRunner, kept: KeptPod, new_rounds: int = 2) -> ProbeResult:
    """The report of the `new_rounds`-th round printed from now on (2: one that surely started
    after this call)."""
    wanted = kept.rounds + new_rounds
    deadline = time.monotonic() + runner.settings.timeout + new_rounds * LOOP_SECONDS
    lines: list[str] = []
    phase = "Pending"
    while time.monotonic() < deadline:
        stored = runner.core.read_namespaced_pod(kept.name, kept.namespace)
        phase = stored.status.phase
        if phase in ("Succeeded", "Failed"):
            break  # the loop itself ended: report what it printed
        lines = _report_lines(runner, kept)
        if len(lines) >= wanted:
            break
        time.sleep(0.5)
    stored = runner.core.read_namespaced_pod(kept.name, kept.namespace)
    received = {e.name: e.value or "" for e in stored.spec.containers[0].env or []}
    if len(lines) < wanted:
        return ProbeResult({"error": f"kept pod {kept.namespace}/{kept.name} printed "
                                     f"{len(lines)} rounds, not {wanted} (phase {phase})"},
                           1, runner.diagnostics(kept.namespace, "", kept.name), received)
    kept.rounds = len(lines)
    report: dict[str, Any] = json.loads(lines[wanted - 1])
    return ProbeResult(report, 0, "", received)


def _report_lines(runner: PodRunner, kept: KeptPod) -> list[str]:
    try:
        logs = runner.core.read_namespaced_pod_log(
            kept.name, kept.namespace, _preload_content=False).data.decode()
    except ApiException:
        return []  # not started yet
    return [line for line in logs.splitlines() if line.startswith("{")]
