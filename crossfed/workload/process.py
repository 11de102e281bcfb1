"""The `process` workload: the probe as a local subprocess, given exactly what a pod would get.

The token is written where the webhook's projected volume would put it (under a private
directory instead of /var/run), and the environment is built from nothing: the webhook's
variables, plus only what points the SDKs at the stand-ins and trusts the run's CA.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfed.redact import scrub_text
from crossfed.secret_files import private_dir, write_private
from crossfed.webhooks import azure_workload_identity, eks_pod_identity
from crossfed.workload.template import ROOT_ENV, WorkloadTemplate, json_lines, target_env


@dataclass
class ProbeResult:
    report: dict[str, Any]
    exit_code: int
    stderr: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what the workload was given
    # A workload template's run (the probe's leaves them empty): its stdout, scrubbed, and
    # the paths under /var/run/secrets its output named that did not exist in its pod.
    stdout: str = ""
    missing_paths: tuple[str, ...] = ()

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


def _webhook_env(root: Path, token: str, targets: SdkTargets, aws: AwsWorkload | None,
                 azure: AzureWorkload | None) -> dict[str, str]:
    """What a pod would hold: the token placed where the webhook's volume puts it (under root),
    the webhook's variables pointing at it, and what points the SDKs at the stand-ins."""
    env = base_env(root)
    if aws is not None:
        mount = aws.webhook.token_mount_path
        path = _place_token(root, f"{mount}/{eks_pod_identity.TOKEN_FILE}", token)
        env.update(eks_pod_identity.injected_env(aws.role_arn, aws.webhook,
                                                 str(Path(path).parent)))
    if azure is not None:
        path = _place_token(root, azure.contract.token_path, token)
        authority = (targets.authority_host.rstrip("/") + "/" if targets.authority_host
                     else azure_workload_identity.PUBLIC_AUTHORITY_HOST)
        env.update(azure_workload_identity.injected_env(azure.client_id, azure.tenant_id,
                                                        path, authority))
    env.update(targets.env())
    return env


def _pod_root(work_root: Path | None) -> tempfile.TemporaryDirectory[str]:
    """work_root: where the pod's private root (0700, with the token files) is made and then
    removed; the run's state directory, so that a killed run's tokens are swept with it."""
    if work_root is not None:
        private_dir(work_root)
    return tempfile.TemporaryDirectory(prefix="crossfed-pod-", dir=work_root)


def probe_args(targets: SdkTargets, aws: AwsWorkload | None,
               azure: AzureWorkload | None) -> list[str]:
    """The probe's arguments for the plan's targets: the same in a process and in a pod."""
    args: list[str] = []
    if aws is not None:
        args += ["--aws-bucket", aws.bucket]
    if azure is not None:
        args += ["--azure-vault-url", azure.vault_url, "--azure-secret", azure.secret]
        if targets.skip_challenge_resource_check:
            args.append("--azure-skip-challenge-resource-check")
    return args


def workload_target_env(targets: SdkTargets, aws: AwsWorkload | None,
                        azure: AzureWorkload | None) -> dict[str, str]:
    """The targets, as a user's workload template is told them (template.target_env)."""
    return target_env(aws.bucket if aws else None, azure.vault_url if azure else None,
                      azure.secret if azure else None, targets.skip_challenge_resource_check)


def run_probe(token: str, targets: SdkTargets, aws: AwsWorkload | None = None,
              azure: AzureWorkload | None = None, timeout: float = 180,
              work_root: Path | None = None) -> ProbeResult:
    with _pod_root(work_root) as root:
        env = _webhook_env(Path(root), token, targets, aws, azure)
        args = [sys.executable, "-m", "crossfed.probe", *probe_args(targets, aws, azure)]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"error": "probe printed no JSON line"}
    return ProbeResult(report, done.returncode, scrub_text(done.stderr[-2000:], token), env)


def run_workload(template: WorkloadTemplate, token: str, targets: SdkTargets,
                 aws: AwsWorkload | None = None, azure: AzureWorkload | None = None,
                 timeout: float = 180, work_root: Path | None = None) -> ProbeResult:
    """A user's workload template in place of the probe, given what its pod would get: the
    webhook's env and token (per the workload's contract), crossfed's targets, the template's
    env and volumes, and CROSSFED_ROOT standing for the pod's "/" (template.py says how the
    template's own paths are mapped under it). Output is scrubbed of the token; the paths
    under /var/run/secrets it names that do not exist are kept, in pod terms, for the
    diagnosis."""
    with _pod_root(work_root) as root:
        root_path = Path(root)
        env = _webhook_env(root_path, token, targets, aws, azure)
        env.update(workload_target_env(targets, aws, azure))
        template.place_files(root_path)
        argv, env = template.process_command(env, root_path)
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=timeout, cwd=root)
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        except FileNotFoundError as exc:  # the command itself is not on this host
            code, stdout, stderr = 127, "", f"{argv[0]}: {exc.strerror}"
        except subprocess.TimeoutExpired as exc:
            code = 124
            stdout = _text(exc.stdout)
            stderr = _text(exc.stderr) + f"\n(killed after {timeout:.0f} s)"
        named = named_paths(stdout + "\n" + stderr, root)
        missing = tuple(p for p in named if not (root_path / p.lstrip("/")).exists())
    stdout, stderr = scrub_text(stdout, token), scrub_text(stderr, token)
    lines = json_lines(stdout)
    return ProbeResult(lines[-1] if lines else {}, code, stderr[-2000:], _pod_view(env, root),
                       stdout=stdout[-4000:], missing_paths=missing)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _pod_view(env: dict[str, str], root: str) -> dict[str, str]:
    """The env as the pod would have held it: the private root taken out of the paths."""
    return {k: v.replace(root, "") if k != "HOME" else v for k, v in env.items()
            if k != ROOT_ENV}


# An absolute path under the webhooks' token mounts, as a workload's error message quotes it
# (Python: "No such file or directory: '/var/run/...'"; Go: "open /var/run/...: no such file").
_SECRET_PATH = re.compile(r"(/[^\s'\"`:,()]*)?(/var/run/secrets/[^\s'\"`:,()]+)")


def named_paths(output: str, root: str = "") -> tuple[str, ...]:
    """The paths under /var/run/secrets that the output names, in pod terms (a process's
    root prefix removed), in order of first mention."""
    found: list[str] = []
    for match in _SECRET_PATH.finditer(output):
        prefix, path = match.group(1) or "", match.group(2).rstrip(".")
        if prefix and root and not (prefix + path).startswith(root):
            continue  # a path under some other directory, not the pod's /var/run/secrets
        if path not in found:
            found.append(path)
    return tuple(found)
