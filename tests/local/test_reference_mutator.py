"""The reference mutator applies the webhooks' documented contracts (facts files §5 and §6)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from crossfed.webhooks import azure_workload_identity as azwi
from crossfed.webhooks.reference_mutator import (
    MutatorSettings,
    apply_patch,
    pod_patch,
    review_response,
)

pytestmark = [pytest.mark.local]
ROLE = "arn:aws:iam::123456789012:role/reader"


def pod(env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "x"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"metadata": {"labels": labels or {}, "annotations": annotations or {}},
            "spec": {"serviceAccountName": "sa", "containers": [container]}}


def lookup_of(annotations: dict[str, str] | None):
    return lambda namespace, name: annotations


def added(patches: list[dict[str, Any]], suffix: str) -> list[Any]:
    values = []
    for p in patches:
        if p["path"].endswith(suffix) or p["path"].endswith(suffix + "/-"):
            values += p["value"] if isinstance(p["value"], list) else [p["value"]]
    return values


def env_of(patches: list[dict[str, Any]], of: dict[str, Any] | None = None) -> dict[str, str]:
    """The first container's env once the patch is applied."""
    spec = apply_patch(of or pod(), patches)["spec"]
    return {e["name"]: e["value"] for e in spec["containers"][0].get("env") or []}


def test_irsa_contract_with_the_charts_defaults() -> None:
    patches, denial = pod_patch(pod(), "ns", lookup_of({"eks.amazonaws.com/role-arn": ROLE}),
                                MutatorSettings())
    assert denial is None
    assert env_of(patches) == {
        "AWS_ROLE_ARN": ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        "AWS_STS_REGIONAL_ENDPOINTS": "regional", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1"}
    [volume] = added(patches, "/volumes")
    assert volume["name"] == "aws-iam-token"
    source = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert source == {"audience": "sts.amazonaws.com", "expirationSeconds": 86400,
                      "path": "token"}
    [mount] = apply_patch(pod(), patches)["spec"]["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/var/run/secrets/eks.amazonaws.com/serviceaccount"


def test_irsa_existing_env_wins_and_expiration_has_a_minimum() -> None:
    annotations = {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/token-expiration": "60",
                   "eks.amazonaws.com/audience": "custom"}
    mine = pod(env={"AWS_WEB_IDENTITY_TOKEN_FILE": "/mine"})
    patches, _ = pod_patch(mine, "ns", lookup_of(annotations), MutatorSettings())
    env = env_of(patches, mine)
    assert "AWS_ROLE_ARN" not in env and env["AWS_WEB_IDENTITY_TOKEN_FILE"] == "/mine"
    source = added(patches, "/volumes")[0]["projected"]["sources"][0]["serviceAccountToken"]
    assert source["expirationSeconds"] == 600 and source["audience"] == "custom"


def test_no_role_annotation_no_mutation() -> None:
    assert pod_patch(pod(), "ns", lookup_of({}), MutatorSettings()) == ([], None)


@pytest.mark.parametrize("version", ["v1.5.1", "v1.6.0"])
def test_azure_contract_per_version(version: str) -> None:
    contract = azwi.CONTRACTS[version]
    settings = MutatorSettings(azure=contract, azure_tenant_id="tenant-from-config")
    annotations = {"azure.workload.identity/client-id": "client"}
    labelled = pod(labels={"azure.workload.identity/use": "true"})
    patches, denial = pod_patch(labelled, "ns", lookup_of(annotations), settings)
    assert denial is None
    assert env_of(patches, labelled) == {
        "AZURE_CLIENT_ID": "client", "AZURE_TENANT_ID": "tenant-from-config",
        "AZURE_FEDERATED_TOKEN_FILE": f"{contract.token_dir}/azure-identity-token",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/"}
    source = added(patches, "/volumes")[0]["projected"]["sources"][0]["serviceAccountToken"]
    # v1.6.0 projects the token at token/azure-identity-token under the mounted directory
    assert source == {"audience": "api://AzureADTokenExchange", "expirationSeconds": 3600,
                      "path": contract.projection_path}


def test_azure_needs_the_pod_label_and_keeps_the_containers_own_values() -> None:
    annotations = {"azure.workload.identity/client-id": "client"}
    assert pod_patch(pod(), "ns", lookup_of(annotations), MutatorSettings()) == ([], None)
    labelled = pod(labels={"azure.workload.identity/use": "true"},
                   env={"AZURE_AUTHORITY_HOST": "https://stand-in/"})
    env = env_of(pod_patch(labelled, "ns", lookup_of(annotations), MutatorSettings())[0],
                 labelled)
    assert env["AZURE_AUTHORITY_HOST"] == "https://stand-in/"  # the container's own


def test_azure_denies_a_pod_whose_service_account_is_missing() -> None:
    patches, denial = pod_patch(pod(labels={"azure.workload.identity/use": "true"}), "ns",
                                lookup_of(None), MutatorSettings())
    assert patches == [] and "not found" in (denial or "")


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_review_answers_in_the_version_asked(api_version: str) -> None:
    review = {"apiVersion": api_version, "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "ns",
        "object": pod()}}
    answer = review_response(review, lookup_of({"eks.amazonaws.com/role-arn": ROLE}),
                             MutatorSettings())
    assert answer["apiVersion"] == api_version and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "u-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"]))
