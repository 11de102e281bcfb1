"""The probe's report reaches the harness even when a pod's log file is lost: it is also the
pod's termination message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from crossfed.workload.pod import _termination_message

pytestmark = [pytest.mark.local]


def test_probe_writes_its_json_line_to_the_termination_log(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = subprocess.run([sys.executable, "-m", "crossfed.probe", "--termination-log", str(log)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert log.read_text() == done.stdout.strip()
    assert json.loads(log.read_text())["probe"] == "crossfed"


def _pod(message: str | None) -> client.V1Pod:
    terminated = client.V1ContainerStateTerminated(exit_code=0, message=message)
    status = client.V1ContainerStatus(name="probe", image="i", image_id="", ready=False,
                                      restart_count=0,
                                      state=client.V1ContainerState(terminated=terminated))
    return client.V1Pod(status=client.V1PodStatus(container_statuses=[status]))


def test_termination_message_is_taken_only_when_it_is_whole_json() -> None:
    assert _termination_message(_pod('{"probe": "crossfed"}\n')) == ['{"probe": "crossfed"}']
    assert _termination_message(_pod('{"probe": "cross')) == []  # cut at 4096 bytes
    assert _termination_message(_pod(None)) == []
    assert _termination_message(client.V1Pod(status=client.V1PodStatus())) == []
