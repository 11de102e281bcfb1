"""Contract drift per pod (issue 13, point 3): a pod's actual mutation (the created pod against
the submitted one) compared with the reference mutator's, and the mutation goldens.

The cluster is simulated: the reference mutator at one version plays the real webhook, behind
an API server that defaults the pod before and after admission and adds its own fields.

Regenerate the committed goldens with CROSSFED_REGENERATE_GOLDENS=1 python3 -m pytest -q
tests/local/test_webhook_drift.py, or python3 tests/local/test_webhook_drift.py."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from crossfed.webhooks import azure_workload_identity as azwi
from crossfed.webhooks import eks_pod_identity as eks
from crossfed.webhooks.drift import (
    ContainerMutation,
    Ignored,
    Mutation,
    actual_mutation,
    describe_env,
    drift,
    expected_mutation,
)
from crossfed.webhooks.goldens import compare, golden_path, load, record
from crossfed.webhooks.reference_mutator import Denied, MutatorSettings, apply_patch, pod_patch

pytestmark = [pytest.mark.local]
GOLDENS = Path(__file__).parent / "goldens" / "webhook-mutations"
ROLE = "arn:aws:iam::111122223333:role/s3-reader"
USE = {"azure.workload.identity/use": "true"}
AZWI_SA = {"azure.workload.identity/client-id": "00000000-0000-0000-0000-0000000000c1"}
TENANT = "00000000-0000-0000-0000-0000000000t1"
V151_TOKEN = "/var/run/secrets/azure/tokens/azure-identity-token"
V160_TOKEN = "/var/run/secrets/azure/wi/token/azure-identity-token"


# --- pods, service accounts, settings ---

def pod(*, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        init: list[dict[str, Any]] | None = None, name: str = "probe") -> dict[str, Any]:
    """A pod as crossfed submits it: one container with an env of its own."""
    spec: dict[str, Any] = {"serviceAccountName": "workload", "containers": [{
        "name": "app", "image": "probe:1", "env": [{"name": "PROBE_MODE", "value": "once"}]}]}
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "spec": spec, "metadata": {
        "name": name, "namespace": "crossfed", "labels": labels or {},
        "annotations": annotations or {}}}


def service_account(annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "workload", "namespace": "crossfed", "annotations": annotations}}


def settings(webhook: str, version: str, **more: Any) -> MutatorSettings:
    if webhook == "eks":
        return MutatorSettings(eks=eks.WebhookSettings(version=version), **more)
    return MutatorSettings(azure=azwi.CONTRACTS[version], azure_tenant_id=TENANT, **more)


SIDECAR_INIT = {"name": "log-shipper", "image": "shipper:2", "restartPolicy": "Always"}
PLAIN_INIT = {"name": "migrate", "image": "migrate:3"}
# (webhook, case) -> (submitted pod, service account); the goldens' representative cases
CASES: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {
    ("eks", "irsa"): (pod(), service_account({"eks.amazonaws.com/role-arn": ROLE})),
    ("eks", "init-container"): (pod(init=[PLAIN_INIT, SIDECAR_INIT]),
                                service_account({"eks.amazonaws.com/role-arn": ROLE})),
    ("eks", "token-expiration"): (pod(annotations={"eks.amazonaws.com/token-expiration": "600"}),
                                  service_account({"eks.amazonaws.com/role-arn": ROLE})),
    ("azwi", "azwi"): (pod(labels=USE), service_account(AZWI_SA)),
    ("azwi", "proxy-sidecar"): (
        pod(labels=USE, annotations={"azure.workload.identity/inject-proxy-sidecar": "true"}),
        service_account(AZWI_SA)),
    ("azwi", "init-container"): (pod(labels=USE, init=[PLAIN_INIT]), service_account(AZWI_SA)),
}
VERSIONS = {"eks": ("v0.5.2", "v0.6.17"), "azwi": ("v1.5.1", "v1.6.0")}
GOLDEN_MATRIX = [(webhook, version, case) for (webhook, case) in CASES
                 for version in VERSIONS[webhook]]


# --- a simulated API server with the reference mutator as its "real" webhook ---

KUBE_API_ACCESS = {"name": "kube-api-access-x7k2q", "projected": {"defaultMode": 420, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
KUBE_API_MOUNT = {"name": "kube-api-access-x7k2q", "readOnly": True,
                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", "IfNotPresent")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def api_defaults(pod_: dict[str, Any], service_account_plugin: bool = True) -> dict[str, Any]:
    """What the API server writes on a pod (idempotent): defaults, and the ServiceAccount
    admission plugin's kube-api-access volume and mounts."""
    out = copy.deepcopy(pod_)
    spec = out["spec"]
    spec.update({k: v for k, v in {
        "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "securityContext": {},
        "enableServiceLinks": True, "priority": 0, "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30, "serviceAccount": spec.get("serviceAccountName"),
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}]}.items()
        if k not in spec})
    if service_account_plugin and not any(v["name"] == KUBE_API_ACCESS["name"]
                                          for v in spec.get("volumes") or []):
        spec["volumes"] = [*(spec.get("volumes") or []), copy.deepcopy(KUBE_API_ACCESS)]
        for section in ("initContainers", "containers"):
            for container in spec.get(section) or []:
                container["volumeMounts"] = [*(container.get("volumeMounts") or []),
                                             dict(KUBE_API_MOUNT)]
    for volume in spec.get("volumes") or []:
        if "projected" in volume:
            volume["projected"].setdefault("defaultMode", 420)
    for section in ("initContainers", "containers"):
        for container in spec.get(section) or []:
            _default_container(container)
    return out


def cluster_creates(submitted: dict[str, Any], sa: dict[str, Any],
                    webhook: MutatorSettings) -> dict[str, Any]:
    """The created pod: defaulting and the SA plugin, the webhook on that pod, defaulting
    again, then the fields the API server and the scheduler add."""
    defaulted = api_defaults(submitted)
    annotations = sa["metadata"]["annotations"]
    patch, denial = pod_patch(defaulted, "crossfed", lambda ns, name: annotations, webhook)
    assert denial is None
    created = api_defaults(apply_patch(defaulted, patch))
    created["metadata"].update(uid="5b1c9c1e-0000-4000-8000-000000000001",
                               resourceVersion="4711",
                               creationTimestamp="2025-01-01T00:00:00Z")
    created["spec"]["nodeName"] = "node-1"
    created["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    return created


def webhook_vs_contract(case: tuple[str, str], real: MutatorSettings,
                        oracle: MutatorSettings) -> list[str]:
    submitted, sa = CASES[case]
    created = cluster_creates(submitted, sa, real)
    return drift(actual_mutation(submitted, created), expected_mutation(submitted, sa, oracle))


# --- (a) a planted drift is caught ---

def test_azwi_v151_webhook_against_the_v160_contract_names_path_mount_and_volume() -> None:
    lines = webhook_vs_contract(("azwi", "azwi"), settings("azwi", "v1.5.1"),
                                settings("azwi", "v1.6.0"))
    hashed = azwi.CONTRACTS["v1.6.0"].volume_name({"name": "probe"})
    assert lines == [
        f'container app: env AZURE_FEDERATED_TOKEN_FILE: webhook set "{V151_TOKEN}", '
        f'contract expects "{V160_TOKEN}"',
        f"container app: volumeMount {hashed}: only in the contract's mutation: "
        "/var/run/secrets/azure/wi (readOnly)",
        "container app: volumeMount azure-identity-token: only in the webhook's mutation: "
        "/var/run/secrets/azure/tokens (readOnly)",
        f"volume {hashed}: only in the contract's mutation: type=\"projected\", "
        'serviceAccountToken.audience="api://AzureADTokenExchange", '
        'serviceAccountToken.expirationSeconds=3600, '
        'serviceAccountToken.path="token/azure-identity-token"',
        "volume azure-identity-token: only in the webhook's mutation: type=\"projected\", "
        'serviceAccountToken.audience="api://AzureADTokenExchange", '
        'serviceAccountToken.expirationSeconds=3600, '
        'serviceAccountToken.path="azure-identity-token"',
    ]


def test_eks_v052_webhook_against_the_v0617_contract_drops_the_sidecars_restart_policy() -> None:
    lines = webhook_vs_contract(("eks", "init-container"), settings("eks", "v0.5.2"),
                                settings("eks", "v0.6.17"))
    assert lines == ["init container log-shipper: restartPolicy: only in the webhook's "
                     "mutation: removed"]


def test_eks_v052_webhook_against_the_v0617_contract_raises_a_short_expiration() -> None:
    lines = webhook_vs_contract(("eks", "token-expiration"), settings("eks", "v0.5.2"),
                                settings("eks", "v0.6.17"))
    assert lines == ["volume aws-iam-token: serviceAccountToken.expirationSeconds: webhook set "
                     "3600, contract expects 600"]


def test_a_native_proxy_sidecar_where_the_contract_has_a_plain_one() -> None:
    lines = webhook_vs_contract(("azwi", "proxy-sidecar"),
                                settings("azwi", "v1.6.0", azure_native_sidecar=True),
                                settings("azwi", "v1.6.0"))
    assert [line.split(": added")[0] for line in lines] == [
        "container azwi-proxy: only in the contract's mutation",
        "init container azwi-proxy: only in the webhook's mutation"]
    assert '"--proxy-port=8000"' in lines[0] and 'restartPolicy="Always"' in lines[1]


def test_env_order_difference_is_stated_as_such() -> None:
    env = ({"name": "A", "value": "1"}, {"name": "B", "value": "2"})
    actual = Mutation(containers={"containers/app": ContainerMutation(
        env=env, env_order=("PROBE_MODE", "A", "B"))})
    expected = Mutation(containers={"containers/app": ContainerMutation(
        env=env[::-1], env_order=("PROBE_MODE", "B", "A"))})
    assert drift(actual, expected) == [
        "container app: env order: webhook has PROBE_MODE, A, B; contract expects PROBE_MODE, "
        "B, A"]


def test_value_from_prints_the_reference_only() -> None:
    secret = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "tok"}}}
    field_ = {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    assert describe_env(secret) == "valueFrom secretKeyRef creds/tok"
    assert describe_env(field_) == "valueFrom fieldRef metadata.namespace"
    actual = Mutation(containers={"containers/app": ContainerMutation(env=(secret,))})
    assert drift(actual, Mutation()) == [
        "container app: env TOKEN: only in the webhook's mutation: valueFrom secretKeyRef "
        "creds/tok"]


# --- (b) identical versions report no drift, API server defaults included ---

@pytest.mark.parametrize("webhook,version,case", GOLDEN_MATRIX)
def test_identical_versions_report_no_drift(webhook: str, version: str, case: str) -> None:
    submitted, sa = CASES[(webhook, case)]
    created = cluster_creates(submitted, sa, settings(webhook, version))
    actual = actual_mutation(submitted, created)
    assert actual.containers and actual.volumes  # the webhook did mutate: not a vacuous []
    assert drift(actual, expected_mutation(submitted, sa, settings(webhook, version))) == []


def test_the_api_servers_own_additions_are_no_mutation() -> None:
    submitted = pod(labels=USE, init=[PLAIN_INIT])
    created = api_defaults(submitted)
    created["status"] = {"phase": "Running"}
    assert created != submitted and actual_mutation(submitted, created) == Mutation()


def test_the_ignore_list_is_data() -> None:
    submitted = pod()
    mutation = actual_mutation(submitted, api_defaults(submitted), Ignored(volume_prefixes=()))
    assert list(mutation.volumes) == [KUBE_API_ACCESS["name"]]
    assert mutation.containers["containers/app"].mounts == {KUBE_API_ACCESS["name"]: {
        "mountPath": KUBE_API_MOUNT["mountPath"], "readOnly": True}}


def test_a_replaced_volume_is_part_of_the_mutation() -> None:
    """v1.6.0 replaces a volume of its reserved name; v1.5.1 keeps it (and adds its own)."""
    hashed = azwi.CONTRACTS["v1.6.0"].volume_name({"name": "probe"})
    submitted = pod(labels=USE)
    submitted["spec"]["volumes"] = [{"name": hashed, "emptyDir": {}}]
    sa = service_account(AZWI_SA)
    new = expected_mutation(submitted, sa, settings("azwi", "v1.6.0"))
    old = expected_mutation(submitted, sa, settings("azwi", "v1.5.1"))
    assert new.volumes[hashed]["serviceAccountToken.path"] == "token/azure-identity-token"
    assert list(old.volumes) == ["azure-identity-token"]
    assert f"volume {hashed}: only in the contract's mutation: type=\"projected\"" in " ".join(
        drift(old, new))


def test_a_webhook_that_did_nothing_is_drift() -> None:
    submitted, sa = CASES[("eks", "irsa")]
    lines = drift(actual_mutation(submitted, api_defaults(submitted)),
                  expected_mutation(submitted, sa, settings("eks", "v0.6.17")))
    assert "container app: env AWS_ROLE_ARN: only in the contract's mutation: " \
           f'"{ROLE}"' in lines
    assert any(line.startswith("volume aws-iam-token: only in the contract's") for line in lines)


def test_a_denied_pod_has_no_expected_mutation() -> None:
    with pytest.raises(Denied, match="not found"):
        expected_mutation(pod(labels=USE), None, settings("azwi", "v1.6.0"))


# --- (c) goldens ---

def regenerate(directory: Path = GOLDENS) -> list[Path]:
    """Rewrite the goldens of the reference versions from the reference mutator."""
    return [record(directory, webhook, version, case,
                   expected_mutation(*CASES[(webhook, case)], settings(webhook, version)))
            for webhook, version, case in GOLDEN_MATRIX]


@pytest.mark.parametrize("webhook,version,case", GOLDEN_MATRIX)
def test_reference_versions_match_their_goldens(webhook: str, version: str, case: str) -> None:
    expected = expected_mutation(*CASES[(webhook, case)], settings(webhook, version))
    if os.environ.get("CROSSFED_REGENERATE_GOLDENS") == "1":
        record(GOLDENS, webhook, version, case, expected)
    assert compare(GOLDENS, webhook, version, case, expected) == []


def test_the_golden_directory_holds_exactly_the_reference_cases() -> None:
    wanted = {golden_path(GOLDENS, *row) for row in GOLDEN_MATRIX}
    assert set(GOLDENS.glob("*/*.json")) == wanted


def test_goldens_of_two_versions_differ_where_the_contracts_do() -> None:
    for webhook, case in (("eks", "init-container"), ("eks", "token-expiration"),
                          ("azwi", "azwi"), ("azwi", "proxy-sidecar")):
        old, new = (load(GOLDENS, webhook, v, case) for v in VERSIONS[webhook])
        assert old is not None and new is not None and drift(old, new), (webhook, case)


def test_a_changed_golden_is_reported(tmp_path: Path) -> None:
    shutil.copytree(GOLDENS, tmp_path, dirs_exist_ok=True)
    path = golden_path(tmp_path, "azwi", "v1.6.0", "azwi")
    document = json.loads(path.read_text())
    env = document["mutation"]["containers"]["containers/app"]["env"]
    token = next(e for e in env if e["name"] == "AZURE_FEDERATED_TOKEN_FILE")
    token["value"] = V151_TOKEN
    path.write_text(json.dumps(document))
    expected = expected_mutation(*CASES[("azwi", "azwi")], settings("azwi", "v1.6.0"))
    assert compare(tmp_path, "azwi", "v1.6.0", "azwi", expected) == [
        f'azwi v1.6.0 azwi: container app: env AZURE_FEDERATED_TOKEN_FILE: run set '
        f'"{V160_TOKEN}", golden expects "{V151_TOKEN}"']


def test_a_missing_golden_says_how_to_record_it(tmp_path: Path) -> None:
    [line] = compare(tmp_path, "eks", "v0.7.0", "irsa", Mutation())
    assert "no golden" in line and f"--record-mutations {tmp_path}" in line


def test_recording_is_stable_and_keeps_the_env_order(tmp_path: Path) -> None:
    mutation = expected_mutation(*CASES[("eks", "irsa")], settings("eks", "v0.6.17"))
    first = record(tmp_path, "eks", "v0.6.17", "irsa", mutation).read_bytes()
    assert record(tmp_path, "eks", "v0.6.17", "irsa", mutation).read_bytes() == first
    assert load(tmp_path, "eks", "v0.6.17", "irsa") == mutation
    names = [e["name"] for e in json.loads(first)["mutation"]["containers"]["containers/app"][
        "env"]]
    assert names == ["AWS_STS_REGIONAL_ENDPOINTS", "AWS_DEFAULT_REGION", "AWS_REGION",
                     "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]


@pytest.mark.parametrize("bad", ["../x", "a/b", ""])
def test_golden_names_stay_inside_the_directory(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        record(tmp_path, "eks", bad, "irsa", Mutation())


if __name__ == "__main__":
    for written in regenerate():
        print(written)
