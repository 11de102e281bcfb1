"""The pod workload: the probe in a real pod on a real cluster, mutated by a webhook.

A scenario gets its own namespace (labelled with the run id), its service account with the
annotations users write, the run's CA in a ConfigMap, and a pod that runs the probe image.
The token is the one the API server projects through the webhook's volume; only the plans that
present a forged or foreign token mount it from a Secret and name it in the env themselves
(the webhooks leave variables a container already has alone).

A workload template (crossfed/workload/template.py) replaces only the probe's container: the
pod keeps crossfed's service account, labels, namespace and CA bundle, and the template's
files are shipped as ConfigMaps in the scenario's namespace (deleted with it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from crossfed.cleanup import Teardown
from crossfed.redact import scrub_text
from crossfed.workload.process import (
    AwsWorkload,
    AzureWorkload,
    ProbeResult,
    SdkTargets,
    named_paths,
    probe_args,
    workload_target_env,
)
from crossfed.workload.template import WorkloadTemplate

CA_MOUNT = "/etc/crossfed"
FORGED_MOUNT = "/var/run/secrets/crossfed"
PROBE_PYTHON = "/opt/probe/bin/python"
TERMINATION_LOG = "/dev/termination-log"  # the kubelet's default terminationMessagePath
RUN_LABEL = "crossfed-run-id"


@dataclass(frozen=True)
class PodSettings:
    image: str = "crossfed/probe:local"
    node_name: str | None = None  # set when the cluster has no scheduler
    timeout: float = 180
    # Never: a local image loaded onto the node; the cloud tier's clusters pull a pushed one.
    pull_policy: str = "Never"


def api(kubeconfig: str) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


class PodRunner:
    """ca_bundle: what the pod's SDKs trust (AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE), from a
    ConfigMap; None against real clouds, whose endpoints the image's system roots trust."""

    def __init__(self, core: client.CoreV1Api, run_id: str, ca_bundle: Path | None,
                 settings: PodSettings) -> None:
        self.core, self.run_id, self.ca_bundle, self.settings = core, run_id, ca_bundle, settings
        # Called with (namespace, submitted pod, created pod) as dicts: the drift check.
        self.observe: Callable[[str, dict[str, Any], dict[str, Any]], None] | None = None

    def _namespace(self, name: str, teardown: Teardown) -> None:
        body = client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels={RUN_LABEL: self.run_id}))
        self.core.create_namespace(body)
        teardown.add(f"namespace {name}", lambda: self.core.delete_namespace(
            name, grace_period_seconds=0, propagation_policy="Background"))
        if self.ca_bundle is not None:
            self.core.create_namespaced_config_map(name, client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="crossfed-ca"),
                data={"ca.pem": self.ca_bundle.read_text()}))

    def run(self, namespace: str, service_account: str, targets: SdkTargets,
            teardown: Teardown, aws: AwsWorkload | None = None,
            azure: AzureWorkload | None = None, forged_token: str | None = None,
            aws_audience: str | None = None,
            template: WorkloadTemplate | None = None) -> ProbeResult:
        self.prepare(namespace, service_account, teardown, aws, azure, forged_token,
                     aws_audience)
        return self.run_pod(namespace, service_account, targets, aws, azure, forged_token,
                            template=template)

    def prepare(self, namespace: str, service_account: str, teardown: Teardown,
                aws: AwsWorkload | None = None, azure: AzureWorkload | None = None,
                forged_token: str | None = None, aws_audience: str | None = None) -> None:
        """The namespace, the service account with the annotations users write, and the
        forged token's Secret: what every pod of the scenario shares."""
        self._namespace(namespace, teardown)
        annotations: dict[str, str] = {}
        if aws is not None:
            annotations["eks.amazonaws.com/role-arn"] = aws.role_arn
            if aws_audience:  # the webhook projects the token for this audience
                annotations["eks.amazonaws.com/audience"] = aws_audience
        if azure is not None:
            annotations["azure.workload.identity/client-id"] = azure.client_id
            annotations["azure.workload.identity/tenant-id"] = azure.tenant_id
        self.core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=service_account, annotations=annotations)))
        if forged_token is not None:
            self.core.create_namespaced_secret(namespace, client.V1Secret(
                metadata=client.V1ObjectMeta(name="crossfed-token"),
                string_data={"token": forged_token}))

    def run_pod(self, namespace: str, service_account: str, targets: SdkTargets,
                aws: AwsWorkload | None = None, azure: AzureWorkload | None = None,
                forged_token: str | None = None, pod_name: str = "probe",
                template: WorkloadTemplate | None = None) -> ProbeResult:
        """One probe pod in a prepared namespace (a retry gets a pod name of its own).
        template: a user's workload in place of the probe (its files shipped as ConfigMaps)."""
        for volume in template.volumes if template else ():
            if volume.files:
                self.core.create_namespaced_config_map(namespace, client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=volume.config_map,
                                                 labels={RUN_LABEL: self.run_id}),
                    data=dict(volume.files)))
        pod = self.build_pod(service_account, targets, aws, azure, forged_token, pod_name,
                             template)
        created = self.core.create_namespaced_pod(namespace, pod)
        if self.observe is not None:
            serialize = self.core.api_client.sanitize_for_serialization
            self.observe(namespace, serialize(pod), serialize(created))
        return self._wait(namespace, pod_name, template is not None)

    def build_pod(self, service_account: str, targets: SdkTargets,
                  aws: AwsWorkload | None = None, azure: AzureWorkload | None = None,
                  forged_token: str | None = None, pod_name: str = "probe",
                  template: WorkloadTemplate | None = None) -> client.V1Pod:
        """The pod crossfed submits (the webhook mutates it on creation): the service account,
        labels, CA bundle and endpoints are crossfed's whether the container is the probe or
        the template's."""
        env = {"AWS_EC2_METADATA_DISABLED": "true"}
        volumes, mounts = [], []
        if self.ca_bundle is not None:
            env.update(AWS_CA_BUNDLE=f"{CA_MOUNT}/ca.pem", REQUESTS_CA_BUNDLE=f"{CA_MOUNT}/ca.pem")
            volumes.append(client.V1Volume(
                name="crossfed-ca", config_map=client.V1ConfigMapVolumeSource(name="crossfed-ca")))
            mounts.append(client.V1VolumeMount(name="crossfed-ca", mount_path=CA_MOUNT,
                                               read_only=True))
        env.update(targets.endpoint_env())
        if targets.authority_host and azure is not None:
            # The webhook injects the public authority only where the container has none.
            env["AZURE_AUTHORITY_HOST"] = targets.authority_host.rstrip("/") + "/"
        if forged_token is not None:
            volumes.append(client.V1Volume(
                name="crossfed-token",
                secret=client.V1SecretVolumeSource(secret_name="crossfed-token")))
            mounts.append(client.V1VolumeMount(name="crossfed-token", mount_path=FORGED_MOUNT,
                                               read_only=True))
            if aws is not None:
                env.update(AWS_ROLE_ARN=aws.role_arn,
                           AWS_WEB_IDENTITY_TOKEN_FILE=f"{FORGED_MOUNT}/token")
            if azure is not None:
                env["AZURE_FEDERATED_TOKEN_FILE"] = f"{FORGED_MOUNT}/token"
        if template is not None:
            container = self._template_container(template, env, mounts, targets, aws, azure)
            volumes += [client.V1Volume(name=v.name, empty_dir=client.V1EmptyDirVolumeSource())
                        if v.empty_dir else client.V1Volume(
                            name=v.name,
                            config_map=client.V1ConfigMapVolumeSource(name=v.config_map))
                        for v in template.volumes]
        else:
            container = self._probe_container(env, mounts, targets, aws, azure)
        labels = {RUN_LABEL: self.run_id}
        if azure is not None:
            labels["azure.workload.identity/use"] = "true"
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=pod_name, labels=labels),
            spec=client.V1PodSpec(
                service_account_name=service_account, restart_policy="Never",
                automount_service_account_token=False, node_name=self.settings.node_name,
                termination_grace_period_seconds=0, volumes=volumes,
                containers=[container]))

    def _probe_container(self, env: dict[str, str], mounts: list[client.V1VolumeMount],
                         targets: SdkTargets, aws: AwsWorkload | None,
                         azure: AzureWorkload | None) -> client.V1Container:
        args = ["-m", "crossfed.probe", "--termination-log", TERMINATION_LOG,
                *probe_args(targets, aws, azure)]
        return client.V1Container(
            name="probe", image=self.settings.image,
            image_pull_policy=self.settings.pull_policy,
            command=[PROBE_PYTHON], args=args, volume_mounts=mounts,
            env=[client.V1EnvVar(name=k, value=v) for k, v in env.items()])

    def _template_container(self, template: WorkloadTemplate, env: dict[str, str],
                            mounts: list[client.V1VolumeMount], targets: SdkTargets,
                            aws: AwsWorkload | None,
                            azure: AzureWorkload | None) -> client.V1Container:
        """The template's container: crossfed's env and the targets first, so the template's
        $(...) references see them (Kubernetes expands only earlier variables) and its own
        values win; the webhook adds its variables where the container lacks them."""
        env = {**env, **workload_target_env(targets, aws, azure), **dict(template.env)}
        return client.V1Container(
            name=template.name, image=template.image,
            image_pull_policy=template.pull_policy or self.settings.pull_policy,
            command=list(template.command), args=list(template.args) or None,
            volume_mounts=[*mounts, *(client.V1VolumeMount(
                name=v.name, mount_path=v.mount_path, read_only=not v.empty_dir)
                for v in template.volumes)],
            env=[client.V1EnvVar(name=k, value=v) for k, v in env.items()])

    def _wait(self, namespace: str, pod_name: str = "probe",
              template: bool = False) -> ProbeResult:
        deadline = time.monotonic() + self.settings.timeout
        phase = "Pending"
        while time.monotonic() < deadline:
            phase = self.core.read_namespaced_pod(pod_name, namespace).status.phase
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        stored = self.core.read_namespaced_pod(pod_name, namespace)
        received = {e.name: e.value or "" for e in stored.spec.containers[0].env or []}
        try:
            # Raw bytes: the client would otherwise parse a JSON log line into a dict's repr.
            logs = self.core.read_namespaced_pod_log(
                pod_name, namespace, _preload_content=False).data.decode()
        except ApiException as exc:
            logs = f"(no logs: {exc.reason})"
        lines = [line for line in logs.splitlines() if line.startswith("{")]
        if not lines:  # the log file can be lost (two kubelets on one host collect each
            lines = _termination_message(stored)  # other's /var/log/pods entries)
        report: dict[str, Any] = json.loads(lines[-1]) if lines else {
            "error": f"probe printed no JSON line (pod phase {phase})"}
        code = _exit_code(stored, phase)
        if template:  # a user's workload: its own output is what is judged
            diagnostics = "" if code == 0 else self.diagnostics(namespace, logs, pod_name)
            return ProbeResult(report if lines else {}, code, diagnostics, received,
                               stdout=scrub_text(logs)[-4000:],
                               missing_paths=missing_in_pod(logs, stored))
        diagnostics = "" if lines else self.diagnostics(namespace, logs, pod_name)
        return ProbeResult(report, code, diagnostics, received)

    def failure_record(self, namespace: str, pod_name: str = "probe") -> str:
        """Events, mutation and logs of a pod whose scenario failed (for the run report);
        scrubbed. What cannot be read is said, not raised."""
        try:
            logs = self.core.read_namespaced_pod_log(
                pod_name, namespace, _preload_content=False).data.decode()
        except ApiException as exc:
            logs = f"(no logs: {exc.reason})"
        try:
            return self.diagnostics(namespace, logs, pod_name)
        except ApiException as exc:
            return scrub_text(f"(no events: {exc.reason})\nlogs:\n{logs[-2000:]}")

    def diagnostics(self, namespace: str, logs: str, pod_name: str = "probe") -> str:
        """Events, the mutation the pod received, and its logs, for a failing test's report;
        scrubbed (crossfed.redact.scrub_text): a pod that logs its token shows none of it."""
        events = self.core.list_namespaced_event(namespace).items
        stored = self.core.read_namespaced_pod(pod_name, namespace)
        container = stored.spec.containers[0]
        mutation = {"env": [e.name for e in container.env or []],
                    "mounts": [m.mount_path for m in container.volume_mounts or []],
                    "volumes": [v.name for v in stored.spec.volumes or []]}
        lines = [f"event {e.reason}: {e.message}" for e in events]
        return scrub_text("\n".join([*lines, f"mutation received: {mutation}", "logs:",
                                      scrub_text(logs)[-2000:]]))


def _exit_code(pod: client.V1Pod, phase: str) -> int:
    """The container's exit code as the kubelet recorded it; else by phase."""
    for status in pod.status.container_statuses or []:
        terminated = status.state.terminated if status.state else None
        if terminated is not None and terminated.exit_code is not None:
            return int(terminated.exit_code)
    return 0 if phase == "Succeeded" else 1


def missing_in_pod(logs: str, pod: client.V1Pod) -> tuple[str, ...]:
    """The paths under /var/run/secrets a workload's logs name that its pod did not have: not
    a token file the pod's env names (where the webhook put the token) and not inside one of
    its other mounts. The process environment looks at the files themselves instead."""
    container = pod.spec.containers[0]
    tokens = {e.value for e in container.env or []
              if e.name in ("AZURE_FEDERATED_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE")}
    token_dirs = {t.rsplit("/", 1)[0] for t in tokens if t}
    other = [m.mount_path.rstrip("/") + "/" for m in container.volume_mounts or []
             if not any(d == m.mount_path.rstrip("/") or d.startswith(m.mount_path.rstrip("/")
                                                                    + "/") for d in token_dirs)]
    return tuple(p for p in named_paths(logs) if p not in tokens
                 and not any(p.startswith(m) for m in other))


def _termination_message(pod: client.V1Pod) -> list[str]:
    """The probe's JSON line as the kubelet kept it (at most 4096 bytes: a longer line is cut
    and not taken)."""
    for status in pod.status.container_statuses or []:
        terminated = status.state.terminated if status.state else None
        message = (terminated.message or "").strip() if terminated else ""
        if message.startswith("{"):
            try:
                json.loads(message)
            except ValueError:
                return []
            return [message]
    return []
