"""Facts-file review: the reference mutator against the documented webhook contracts
(aws-federation-facts.md §5, azure-federation-facts.md §6). The issuer's findings
(kind-and-charts-facts.md §1.2) are tested in test_issuer.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest

from crossfed.webhooks import azure_workload_identity as azwi
from crossfed.webhooks import eks_pod_identity as eks
from crossfed.webhooks.reference_mutator import (
    MutatorApp,
    MutatorSettings,
    apply_patch,
    review_response,
)

pytestmark = [pytest.mark.local]
ROLE = "arn:aws:iam::123456789012:role/reader"
EKS_SA = {"eks.amazonaws.com/role-arn": ROLE}
AZ_SA = {"azure.workload.identity/client-id": "client"}
AZ_LABEL = {"azure.workload.identity/use": "true"}


def make_pod(containers: list[dict[str, Any]] | None = None, *,
             labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
             name: str = "web-0",
             **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"serviceAccountName": "sa",
                     "containers": containers or [{"name": "app", "image": "x"}], **spec}}


def admit(pod: dict[str, Any], sa: dict[str, str] | None,
          settings: MutatorSettings | None = None) -> dict[str, Any]:
    """One AdmissionReview (v1) through the WSGI app; the response plus the patched pod."""
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE", "namespace": "ns", "object": pod}}
    app = MutatorApp(lambda namespace, name: sa, settings or MutatorSettings())
    body = json.dumps(review).encode()
    status: list[str] = []
    out = b"".join(app({"REQUEST_METHOD": "POST", "PATH_INFO": "/mutate",
                        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                        "wsgi.input": io.BytesIO(body), "SERVER_NAME": "x", "SERVER_PORT": "1",
                        "wsgi.url_scheme": "https"}, lambda s, h: status.append(s)))
    assert status == ["200 OK"]
    response = json.loads(out)["response"]
    patches = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return {"response": response, "pod": apply_patch(pod, patches)}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or []}


def token_source(pod: dict[str, Any], name: str) -> dict[str, Any]:
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == name]
    return volume["projected"]["sources"][0]["serviceAccountToken"]


# --- amazon-eks-pod-identity-webhook (aws-federation-facts.md §5) ---

def test_eks_an_existing_region_variable_keeps_both_out() -> None:
    pod = make_pod([{"name": "app", "image": "x", "env": [{"name": "AWS_REGION",
                                                           "value": "eu-west-1"}]}])
    got = env(admit(pod, EKS_SA)["pod"]["spec"]["containers"][0])
    assert got["AWS_REGION"] == "eu-west-1" and "AWS_DEFAULT_REGION" not in got
    assert got["AWS_ROLE_ARN"] == ROLE and got["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"


@pytest.mark.parametrize("label", ["kubernetes.io/os", "beta.kubernetes.io/os"])
def test_eks_windows_pods_get_a_windows_token_path(label: str) -> None:
    mutated = admit(make_pod(nodeSelector={label: "windows"}), EKS_SA)["pod"]
    container = mutated["spec"]["containers"][0]
    assert env(container)["AWS_WEB_IDENTITY_TOKEN_FILE"] == (
        "C:\\var\\run\\secrets\\eks.amazonaws.com\\serviceaccount\\token")
    # §5 "What is injected", volumeMount: mountPath `--token-mount-path` (default below); the
    # Windows path changes the env value only
    assert container["volumeMounts"][0]["mountPath"] == (
        "/var/run/secrets/eks.amazonaws.com/serviceaccount")


@pytest.mark.parametrize(("flag", "annotation", "regional"), [
    (True, "yes", True),      # not a ParseBool value: the flag stays
    (False, "tRuE", False),   # ParseBool knows true/True/TRUE only
    (False, "TRUE", True), (True, "F", False), (False, "1", True)])
def test_eks_sts_regional_endpoints_is_go_parsebool(flag: bool, annotation: str,
                                                    regional: bool) -> None:
    settings = MutatorSettings(eks=eks.WebhookSettings(sts_regional_endpoints=flag))
    sa = {**EKS_SA, "eks.amazonaws.com/sts-regional-endpoints": annotation}
    got = env(admit(make_pod(), sa, settings)["pod"]["spec"]["containers"][0])
    assert ("AWS_STS_REGIONAL_ENDPOINTS" in got) is regional


@pytest.mark.parametrize(("pod_value", "sa_value", "expected"), [
    ("soon", "7200", 7200),      # an invalid pod value keeps the SA's
    ("3_600", None, 86400),      # Go's ParseInt has no digit separators
    (" 3600", "900", 900),
    ("+1200", None, 1200), ("-5", None, 600), (None, "100", 600),
    ("999999", None, 999999)])   # no maximum
def test_eks_token_expiration_precedence_and_parsing(pod_value: str | None, sa_value: str | None,
                                                     expected: int) -> None:
    annotations = {"eks.amazonaws.com/token-expiration": pod_value} if pod_value else {}
    sa = {**EKS_SA, **({"eks.amazonaws.com/token-expiration": sa_value} if sa_value else {})}
    mutated = admit(make_pod(annotations=annotations), sa)["pod"]
    assert token_source(mutated, "aws-iam-token")["expirationSeconds"] == expected


def test_eks_skip_containers_is_one_csv_record() -> None:
    pod = make_pod([{"name": "a,b", "image": "x"}, {"name": "c", "image": "x"},
                    {"name": "d", "image": "x"}],
                   annotations={"eks.amazonaws.com/skip-containers": '"a,b",c'})
    mutated = admit(pod, EKS_SA)["pod"]["spec"]["containers"]
    assert [("AWS_ROLE_ARN" in env(c)) for c in mutated] == [False, False, True]


# --- azure-workload-identity (azure-federation-facts.md §6) ---

def test_azure_skip_containers_is_semicolon_separated_and_trimmed() -> None:
    pod = make_pod([{"name": "app", "image": "x"}, {"name": "side", "image": "x"}],
                   labels=AZ_LABEL, initContainers=[{"name": "init", "image": "x"}],
                   annotations={"azure.workload.identity/skip-containers": "side ; init"})
    spec = admit(pod, AZ_SA)["pod"]["spec"]
    assert "AZURE_CLIENT_ID" in env(spec["containers"][0])
    assert "AZURE_CLIENT_ID" not in env(spec["containers"][1])
    assert "volumeMounts" not in spec["containers"][1]
    assert "AZURE_CLIENT_ID" not in env(spec["initContainers"][0])


@pytest.mark.parametrize(("where", "value"), [
    ("pod", "3599"), ("pod", "86401"), ("sa", "600"), ("pod", "1h")])
def test_azure_token_expiration_outside_bounds_denies_the_pod(where: str, value: str) -> None:
    key = "azure.workload.identity/service-account-token-expiration"
    pod = make_pod(labels=AZ_LABEL, annotations={key: value} if where == "pod" else {})
    sa = {**AZ_SA, key: value} if where == "sa" else AZ_SA
    response = admit(pod, sa)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert "patch" not in response


@pytest.mark.parametrize("value", ["3600", "86400"])
def test_azure_token_expiration_bounds_are_inclusive(value: str) -> None:
    key = "azure.workload.identity/service-account-token-expiration"
    mutated = admit(make_pod(labels=AZ_LABEL, annotations={key: value}),
                    {**AZ_SA, key: "7200"})["pod"]
    assert token_source(mutated, "azure-identity-token")["expirationSeconds"] == int(value)


def test_azure_v1_6_0_volume_is_named_after_the_pod() -> None:
    settings = MutatorSettings(azure=azwi.CONTRACTS["v1.6.0"])
    expected = "azure-workload-identity-reserved-" + hashlib.sha256(b"web-0").hexdigest()[:30]
    spec = admit(make_pod(labels=AZ_LABEL), AZ_SA, settings)["pod"]["spec"]
    assert [v["name"] for v in spec["volumes"]] == [expected] and len(expected) == 63
    container = spec["containers"][0]
    assert container["volumeMounts"][0]["name"] == expected
    assert env(container)["AZURE_FEDERATED_TOKEN_FILE"] == (
        "/var/run/secrets/azure/wi/token/azure-identity-token")
    generated = make_pod(labels=AZ_LABEL, name="")
    generated["metadata"]["generateName"] = "web-"
    [volume] = admit(generated, AZ_SA, settings)["pod"]["spec"]["volumes"]
    assert volume["name"].endswith(hashlib.sha256(b"web- (prefix)").hexdigest()[:30])
    old = admit(make_pod(labels=AZ_LABEL), AZ_SA)["pod"]["spec"]["volumes"]
    assert [v["name"] for v in old] == ["azure-identity-token"]  # v1.5.1


@pytest.mark.parametrize("native", [False, True])
def test_azure_proxy_sidecar_is_injected_by_presence(native: bool) -> None:
    pod = make_pod(labels=AZ_LABEL, annotations={
        "azure.workload.identity/inject-proxy-sidecar": "false",
        "azure.workload.identity/proxy-sidecar-port": "8123"})
    settings = MutatorSettings(azure_native_sidecar=native)
    spec = admit(pod, AZ_SA, settings)["pod"]["spec"]
    inits = {c["name"]: c for c in spec["initContainers"]}
    init = inits["azwi-proxy-init"]
    assert init["securityContext"]["privileged"] is True
    assert "NET_ADMIN" in init["securityContext"]["capabilities"]["add"]
    assert env(init)["PROXY_PORT"] == "8123"
    if native:
        assert [c["name"] for c in spec["initContainers"]] == ["azwi-proxy", "azwi-proxy-init"]
        sidecar = spec["initContainers"][0]
        assert sidecar["restartPolicy"] == "Always"
        assert [c["name"] for c in spec["containers"]] == ["app"]
    else:
        assert [c["name"] for c in spec["containers"]] == ["azwi-proxy", "app"]
        sidecar = spec["containers"][0]
        assert "restartPolicy" not in sidecar
    assert sidecar["ports"] == [{"containerPort": 8123}]
    for container in [*spec["initContainers"], *spec["containers"]]:  # all mutated after
        assert env(container)["AZURE_CLIENT_ID"] == "client"
        assert container["volumeMounts"][-1]["name"] == "azure-identity-token"


def test_azure_proxy_sidecar_denies_host_network_pods_and_bad_ports() -> None:
    annotation = {"azure.workload.identity/inject-proxy-sidecar": "true"}
    response = admit(make_pod(labels=AZ_LABEL, annotations=annotation, hostNetwork=True),
                     AZ_SA)["response"]
    assert response["allowed"] is False and "hostNetwork" in response["status"]["message"]
    bad_port = {**annotation, "azure.workload.identity/proxy-sidecar-port": "http"}
    response = admit(make_pod(labels=AZ_LABEL, annotations=bad_port), AZ_SA)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    # without the pod label the azure webhook is not involved at all
    assert admit(make_pod(annotations=annotation, hostNetwork=True), AZ_SA)["response"][
        "allowed"] is True


def test_both_webhooks_on_one_pod_review_response() -> None:
    review = {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {
        "uid": "u-2", "kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "ns",
        "object": make_pod(labels=AZ_LABEL)}}
    answer = review_response(review, lambda n, s: {**EKS_SA, **AZ_SA}, MutatorSettings())
    pod = apply_patch(review["request"]["object"],
                      json.loads(base64.b64decode(answer["response"]["patch"])))
    got = env(pod["spec"]["containers"][0])
    assert got["AWS_ROLE_ARN"] == ROLE and got["AZURE_CLIENT_ID"] == "client"
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"aws-iam-token",
                                                           "azure-identity-token"}
