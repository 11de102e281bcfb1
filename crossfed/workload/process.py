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

from crossfed.redact import scrub_text
from crossfed.secret_files import private_dir, write_private
from crossfed.webhooks import azure_workload_identity, eks_pod_identity


@dataclass
class ProbeResult:
    report: dict[str, Any]
    exit_code: int
    stderr: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what the workload was given

    def aws(self, client: str) -> dict[str, Any]:
        return self.report.get("aws", {}).get(client, {})

    def azure(self, credential: str) -> dict[str, Any]:
        return self.report.get("azure", {}).get(credential, {})


@dataclass(frozen=True)
class AwsWorkload:
    role_arn: str
    bucket: str
    webhook: eks_pod_identity.WebhookSettings = eks_pod_identity.CHART_DEFAULTS


@dataclass(frozen=True)
class AzureWorkload:
    client_id: str
    tenant_id: str
    vault_url: str
    secret: str
    contract: azure_workload_identity.Contract = azure_workload_identity.CONTRACTS[
        azure_workload_identity.DEFAULT_VERSION]


@dataclass(frozen=True)
class SdkTargets:
    """Where the SDKs are pointed when the clouds are stand-ins (all None against real clouds)."""

    aws_endpoint_url: str | None = None
    ca_bundle: str | None = None
    authority_host: str | None = None
    # Loopback vault URLs cannot match the challenge resource https://vault.azure.net.
    skip_challenge_resource_check: bool = False
    # AWS_ENDPOINT_URL_<SERVICE> the harness was given (the cloud tier passes them on)
    aws_service_endpoints: tuple[tuple[str, str], ...] = ()

    def endpoint_env(self) -> dict[str, str]:
        env = dict(self.aws_service_endpoints)
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        return env

    def env(self) -> dict[str, str]:
        env = self.endpoint_env()
        if self.ca_bundle:
            env["AWS_CA_BUNDLE"] = self.ca_bundle
            env["REQUESTS_CA_BUNDLE"] = self.ca_bundle  # what azure-core honours
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


def _place_token(root: Path, path_in_pod: str, token: str) -> str:
    path = root / path_in_pod.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, token.encode())
    return str(path)


def run_probe(token: str, targets: SdkTargets, aws: AwsWorkload | None = None,
              azure: AzureWorkload | None = None, timeout: float = 180,
              work_root: Path | None = None) -> ProbeResult:
    """work_root: where the pod's private root (0700, with the token files) is made and then
    removed; the run's state directory, so that a killed run's tokens are swept with it."""
    if work_root is not None:
        private_dir(work_root)
    with tempfile.TemporaryDirectory(prefix="crossfed-pod-", dir=work_root) as root:
        root_path = Path(root)
        env = base_env(root_path)
        args = [sys.executable, "-m", "crossfed.probe"]
        if aws is not None:
            mount = aws.webhook.token_mount_path
            path = _place_token(root_path, f"{mount}/{eks_pod_identity.TOKEN_FILE}", token)
            env.update(eks_pod_identity.injected_env(aws.role_arn, aws.webhook,
                                                     str(Path(path).parent)))
            args += ["--aws-bucket", aws.bucket]
        if azure is not None:
            path = _place_token(root_path, azure.contract.token_path, token)
            authority = (targets.authority_host.rstrip("/") + "/" if targets.authority_host
                         else azure_workload_identity.PUBLIC_AUTHORITY_HOST)
            env.update(azure_workload_identity.injected_env(azure.client_id, azure.tenant_id,
                                                            path, authority))
            args += ["--azure-vault-url", azure.vault_url, "--azure-secret", azure.secret]
            if targets.skip_challenge_resource_check:
                args.append("--azure-skip-challenge-resource-check")
        env.update(targets.env())
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"error": "probe printed no JSON line"}
    return ProbeResult(report, done.returncode, scrub_text(done.stderr[-2000:], token), env)
