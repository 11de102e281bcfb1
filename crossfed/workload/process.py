"""The `process` workload: the probe as a local subprocess, given exactly what a pod would get.

The token is written where the webhook's projected volume would put it (under a private
directory instead of /var/run), and the environment is built from nothing: the webhook's
variables, plus only what points the SDKs at the stand-ins and trusts the run's CA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfed.pki import write_private
from crossfed.redact import scrub
from crossfed.webhooks import eks_pod_identity


@dataclass
class ProbeResult:
    report: dict[str, Any]
    exit_code: int
    stderr: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what the workload was given

    def aws(self, client: str) -> dict[str, Any]:
        return self.report.get("aws", {}).get(client, {})


@dataclass(frozen=True)
class SdkTargets:
    """Where the SDKs are pointed when the clouds are stand-ins (empty against real clouds)."""

    aws_endpoint_url: str | None = None
    ca_bundle: str | None = None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        if self.ca_bundle:
            env["AWS_CA_BUNDLE"] = self.ca_bundle
        return env


def base_env(home: Path) -> dict[str, str]:
    """A clean process environment: no credentials or config of the user's leak in."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # A pod outside EC2 has no instance metadata; never let a failing chain probe for it.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_probe(token: str, role_arn: str | None, bucket: str | None, targets: SdkTargets,
              settings: eks_pod_identity.WebhookSettings = eks_pod_identity.CHART_DEFAULTS,
              timeout: float = 180) -> ProbeResult:
    with tempfile.TemporaryDirectory(prefix="crossfed-pod-") as root:
        root_path = Path(root)
        mount = root_path / eks_pod_identity.TOKEN_MOUNT_PATH.lstrip("/")
        mount.mkdir(parents=True)
        write_private(mount / eks_pod_identity.TOKEN_FILE, token.encode())
        env = base_env(root_path)
        args = [sys.executable, "-m", "crossfed.probe"]
        if role_arn and bucket:
            env.update(eks_pod_identity.injected_env(role_arn, settings, str(mount)))
            args += ["--aws-bucket", bucket]
        env.update(targets.env())
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"error": "probe printed no JSON line"}
    return ProbeResult(report, done.returncode, scrub(done.stderr[-2000:], token), env)
