"""azure-workload-identity's webhook contract at v1.5.1 and v1.6.0, against the cases of its
own tables (pkg/webhook/webhook_test.go: token expiration, client and tenant id, skip
containers, projected volume, environment variables, volume mount, Handle, authority host,
mutate containers, proxy init and sidecar, proxy port, Handle errors) whose outcome shows in the
pod or the denial. Inputs and expected pods/patches are built here, through the reference
mutator's azure_patch (the handler) and pod_patch (with the objectSelector)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from crossfed.webhooks import azure_workload_identity as azwi
from crossfed.webhooks.reference_mutator import (
    Denied,
    MutatorSettings,
    apply_patch,
    azure_patch,
    pod_patch,
)

pytestmark = [pytest.mark.local]
VERSIONS = ["v1.5.1", "v1.6.0"]
LABEL = {"azure.workload.identity/use": "true"}
EXPIRY = "azure.workload.identity/service-account-token-expiration"
SA = {"azure.workload.identity/client-id": "clientID", EXPIRY: "4800"}
HOST = "https://login.microsoftonline.com/"


def settings(version: str, **more: Any) -> MutatorSettings:
    return MutatorSettings(azure=azwi.CONTRACTS[version], azure_tenant_id="tenantID", **more)


def go_raw_pod(annotations: dict[str, str] | None = None, name: str = "pod",
               **spec: Any) -> dict[str, Any]:
    """A pod as the API server sends it: Go's serialisation (creationTimestamp, resources,
    status), one init container and one container, as the webhook's own newPodRaw."""
    metadata: dict[str, Any] = {"name": name, "namespace": "ns1", "creationTimestamp": None,
                                "labels": LABEL}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {
        "initContainers": [{"name": "init-container", "image": "init-container-image",
                            "resources": {}}],
        "containers": [{"name": "container", "image": "image", "resources": {}}], **spec},
        "status": {}}


def layout(version: str, pod_name: str = "pod") -> tuple[str, str, str, str]:
    """(volume name, mount path, projection path, token file) of a version."""
    if version == "v1.5.1":
        return ("azure-identity-token", "/var/run/secrets/azure/tokens", "azure-identity-token",
                "/var/run/secrets/azure/tokens/azure-identity-token")
    digest = hashlib.sha256(pod_name.encode()).hexdigest()
    return (f"azure-workload-identity-reserved-{digest[:30]}", "/var/run/secrets/azure/wi",
            "token/azure-identity-token",
            "/var/run/secrets/azure/wi/token/azure-identity-token")


def wanted_env(version: str, client: str = "clientID", tenant: str = "tenantID",
               host: str = HOST) -> list[dict[str, str]]:
    values = [("AZURE_CLIENT_ID", client), ("AZURE_TENANT_ID", tenant),
              ("AZURE_FEDERATED_TOKEN_FILE", layout(version)[3]), ("AZURE_AUTHORITY_HOST", host)]
    return [{"name": n, "value": v} for n, v in values if v]  # empty values are not injected


def wanted_volume(version: str, expiration: int = 4800,
                  audience: str = "api://AzureADTokenExchange") -> dict[str, Any]:
    name, _, projection, _ = layout(version)
    return {"name": name, "projected": {"sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": expiration, "path": projection}}]}}


def wanted_mount(version: str) -> dict[str, Any]:
    name, mount, _, _ = layout(version)
    return {"name": name, "readOnly": True, "mountPath": mount}


def mutate(pod: dict[str, Any], sa: dict[str, str], version: str,
           **more: Any) -> dict[str, Any]:
    return apply_patch(pod, azure_patch(pod, sa, settings(version, **more)))


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


# --- Handle: the whole patch, in the order CreatePatch emits it ---

@pytest.mark.parametrize("version", VERSIONS)
def test_handle_patch_of_a_labelled_pod(version: str) -> None:
    patch = azure_patch(go_raw_pod(), SA, settings(version))
    assert patch == [
        {"op": "add", "path": "/spec/volumes", "value": [wanted_volume(version)]},
        {"op": "add", "path": "/spec/initContainers/0/env", "value": wanted_env(version)},
        {"op": "add", "path": "/spec/initContainers/0/volumeMounts",
         "value": [wanted_mount(version)]},
        {"op": "add", "path": "/spec/containers/0/env", "value": wanted_env(version)},
        {"op": "add", "path": "/spec/containers/0/volumeMounts",
         "value": [wanted_mount(version)]}]


@pytest.mark.parametrize("version", VERSIONS)
def test_handle_native_sidecar_init_container_gets_no_remove_ops(version: str) -> None:
    pod = go_raw_pod()
    pod["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    patch = azure_patch(pod, SA, settings(version))
    assert [op for op in patch if op["op"] == "remove"] == []
    assert apply_patch(pod, patch)["spec"]["initContainers"][0]["restartPolicy"] == "Always"


@pytest.mark.parametrize("version", VERSIONS)
def test_handle_default_service_account(version: str) -> None:
    looked_up: list[tuple[str, str]] = []

    def lookup(namespace: str, name: str) -> dict[str, str]:
        looked_up.append((namespace, name))
        return SA

    patch, denial = pod_patch(go_raw_pod(), "ns1", lookup, settings(version))
    assert denial is None and patch and looked_up == [("ns1", "default")]


# --- getServiceAccountTokenExpiration ---

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("pod_value", "sa_value", "expected"), [
    ("3600s", None, 'strconv.ParseInt: parsing "3600s": invalid syntax'),
    (None, "3600s", 'strconv.ParseInt: parsing "3600s": invalid syntax'),
    ("3599", None, "token expiration 3599 not valid. Expected value to be between 3600 and 86400"),
    ("86401", None,
     "token expiration 86401 not valid. Expected value to be between 3600 and 86400"),
    (None, "4800", 4800), ("4000", "4800", 4000), (None, None, 3600)])
def test_token_expiration(version: str, pod_value: str | None, sa_value: str | None,
                          expected: int | str) -> None:
    pod = go_raw_pod({EXPIRY: pod_value} if pod_value else None)
    sa = {"azure.workload.identity/client-id": "clientID",
          **({EXPIRY: sa_value} if sa_value else {})}
    patch, denial = pod_patch(pod, "ns1", lambda n, s: sa, settings(version))
    if isinstance(expected, str):
        assert (patch, denial) == ([], expected)
    else:
        volume = apply_patch(pod, patch)["spec"]["volumes"][0]
        assert volume == wanted_volume(version, expected)


# --- getClientID, getTenantID, addEnvironmentVariables ---

@pytest.mark.parametrize("version", VERSIONS)
def test_client_and_tenant_id(version: str) -> None:
    container = mutate(go_raw_pod(), {"azure.workload.identity/tenant-id": "tenant-id"},
                       version)["spec"]["containers"][0]
    assert container["env"] == wanted_env(version, client="", tenant="tenant-id")
    assert "AZURE_CLIENT_ID" not in env(container)  # v1.5.1+: empty values are left out


@pytest.mark.parametrize("version", VERSIONS)
def test_only_the_token_file_when_every_other_value_is_empty(version: str) -> None:
    pod = go_raw_pod()
    container = apply_patch(pod, azure_patch(pod, {}, MutatorSettings(
        azure=azwi.CONTRACTS[version], azure_authority_host="")))["spec"]["containers"][0]
    assert container["env"] == [{"name": "AZURE_FEDERATED_TOKEN_FILE",
                                 "value": layout(version)[3]}]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("existing", [
    [{"name": "MY_ENV_VAR", "value": "test"}],
    [{"name": "AZURE_CLIENT_ID", "value": "myClientID"},
     {"name": "AZURE_TENANT_ID", "value": "myTenantID"},
     {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": "/mine"},
     {"name": "AZURE_AUTHORITY_HOST", "value": "https://stand-in/"}]],
    ids=["appended to an existing list", "existing not replaced"])
def test_environment_variables(version: str, existing: list[dict[str, str]]) -> None:
    pod = go_raw_pod()
    pod["spec"]["containers"][0]["env"] = existing
    container = mutate(pod, SA, version)["spec"]["containers"][0]
    names = {e["name"] for e in existing}
    assert container["env"] == existing + [e for e in wanted_env(version)
                                           if e["name"] not in names]


# --- getSkipContainers, mutateContainers ---

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("annotation", ["init-container;container", "init-container; container"])
def test_skip_containers(version: str, annotation: str) -> None:
    pod = go_raw_pod({"azure.workload.identity/skip-containers": annotation})
    pod["spec"]["containers"].append({"name": "other", "image": "image", "resources": {}})
    spec = mutate(pod, SA, version)["spec"]
    assert spec["initContainers"] == pod["spec"]["initContainers"]
    assert spec["containers"][0] == pod["spec"]["containers"][0]
    assert spec["containers"][1]["env"] == wanted_env(version)
    assert spec["volumes"] == [wanted_volume(version)]  # the volume is the pod's, not skipped


# --- addProjectedServiceAccountTokenVolume (v1.5.1) / addProjectedVolume (v1.6.0) ---

@pytest.mark.parametrize("version", VERSIONS)
def test_volume_already_injected_is_left_as_it_is(version: str) -> None:
    pod = go_raw_pod(volumes=[wanted_volume(version)])
    assert mutate(pod, SA, version)["spec"]["volumes"] == [wanted_volume(version)]


def test_v1_5_1_knows_its_volume_by_the_projection_path_not_the_name() -> None:
    renamed = {**wanted_volume("v1.5.1"), "name": "my-token"}
    spec = mutate(go_raw_pod(volumes=[renamed]), SA, "v1.5.1")["spec"]
    assert spec["volumes"] == [renamed]
    # the containers still mount azure-identity-token (a volume the pod does not have)
    assert spec["containers"][0]["volumeMounts"] == [wanted_mount("v1.5.1")]


def test_v1_5_1_appends_beside_a_same_named_volume_of_another_path() -> None:
    other = {"name": "azure-identity-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "aud", "expirationSeconds": 3600, "path": "my-projected-volume"}}]}}
    spec = mutate(go_raw_pod(volumes=[other]), SA, "v1.5.1")["spec"]
    assert spec["volumes"] == [other, wanted_volume("v1.5.1")]


def test_v1_6_0_replaces_a_same_named_volume() -> None:
    name = layout("v1.6.0")[0]
    other = {"name": name, "projected": {"sources": [{"serviceAccountToken": {
        "audience": "aud", "expirationSeconds": 3600, "path": "my-projected-volume"}}]}}
    keep = {"name": "data", "emptyDir": {}}
    spec = mutate(go_raw_pod(volumes=[keep, other]), SA, "v1.6.0")["spec"]
    assert spec["volumes"] == [keep, wanted_volume("v1.6.0")]


@pytest.mark.parametrize("version", VERSIONS)
def test_audience_option(version: str) -> None:
    spec = mutate(go_raw_pod(), SA, version, azure_audience="api://custom")["spec"]
    assert spec["volumes"] == [wanted_volume(version, audience="api://custom")]


# --- addProjectedTokenVolumeMount (v1.5.1) / addProjectedVolumeMount (v1.6.0) ---

@pytest.mark.parametrize("version", VERSIONS)
def test_mount_appended_to_existing_mounts(version: str) -> None:
    pod = go_raw_pod()
    mine = {"name": "my-volume-mount", "mountPath": "/var/run/pods"}
    pod["spec"]["containers"][0]["volumeMounts"] = [mine]
    container = mutate(pod, SA, version)["spec"]["containers"][0]
    assert container["volumeMounts"] == [mine, wanted_mount(version)]


@pytest.mark.parametrize(("version", "replaced"), [("v1.5.1", False), ("v1.6.0", True)])
def test_same_named_mount_kept_by_v1_5_1_replaced_by_v1_6_0(version: str,
                                                             replaced: bool) -> None:
    pod = go_raw_pod()
    same = {"name": layout(version)[0], "mountPath": "mountPath"}
    pod["spec"]["containers"][0]["volumeMounts"] = [same]
    container = mutate(pod, SA, version)["spec"]["containers"][0]
    assert container["volumeMounts"] == [wanted_mount(version) if replaced else same]


def test_v1_6_0_volume_name_hashes_the_pod_name_or_generate_name() -> None:
    assert layout("v1.6.0", "pod")[0] == azwi.CONTRACTS["v1.6.0"].volume_name({"name": "pod"})
    generated = go_raw_pod(name="")
    generated["metadata"]["generateName"] = "web-"
    volume = mutate(generated, SA, "v1.6.0")["spec"]["volumes"][0]
    assert volume["name"] == layout("v1.6.0", "web- (prefix)")[0] and len(volume["name"]) == 63


# --- getAzureAuthorityHost ---

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("cloud", "host"), [
    ("AzurePublicCloud", "https://login.microsoftonline.com/"),
    ("AzureUSGovernmentCloud", "https://login.microsoftonline.us/"),
    ("AzureChinaCloud", "https://login.chinacloudapi.cn/"),
    ("AzureGermanCloud", "https://login.microsoftonline.de/")])
def test_authority_host_per_cloud(version: str, cloud: str, host: str) -> None:
    container = mutate(go_raw_pod(), SA, version, azure_cloud=cloud)["spec"]["containers"][0]
    assert env(container)["AZURE_AUTHORITY_HOST"] == host


def test_unknown_cloud_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cloud environment"):
        azwi.authority_host("InvalidCloud")


# --- injectProxyInitContainer, injectProxySidecarContainer, getProxyPort ---

PROXY = {"azure.workload.identity/inject-proxy-sidecar": "true"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize(("port_annotation", "port"), [(None, 8000), ("8080", 8080)])
def test_proxy_injection(version: str, native: bool, port_annotation: str | None,
                         port: int) -> None:
    annotations = {**PROXY, **({"azure.workload.identity/proxy-sidecar-port": port_annotation}
                               if port_annotation else {})}
    spec = mutate(go_raw_pod(annotations), SA, version, azure_native_sidecar=native,
                  azure_log_level="debug")["spec"]
    inits = [c["name"] for c in spec["initContainers"]]
    names = [c["name"] for c in spec["containers"]]
    if native:
        assert (inits, names) == (["azwi-proxy", "init-container", "azwi-proxy-init"],
                                  ["container"])
        sidecar = spec["initContainers"][0]
        assert sidecar["restartPolicy"] == "Always"
    else:
        assert (inits, names) == (["init-container", "azwi-proxy-init"],
                                  ["azwi-proxy", "container"])
        sidecar = spec["containers"][0]
        assert "restartPolicy" not in sidecar
    assert sidecar["image"] == f"mcr.microsoft.com/oss/azure/workload-identity/proxy:{version}"
    assert sidecar["args"] == [f"--proxy-port={port}", "--log-level=debug"]
    assert sidecar["ports"] == [{"containerPort": port}]
    init = spec["initContainers"][inits.index("azwi-proxy-init")]
    assert env(init)["PROXY_PORT"] == str(port)
    assert all(env(c)["AZURE_CLIENT_ID"] == "clientID"  # the injected ones are mutated too
               for c in [*spec["initContainers"], *spec["containers"]])


@pytest.mark.parametrize("version", VERSIONS)
def test_proxy_containers_already_there_are_not_injected_again(version: str) -> None:
    pod = go_raw_pod(PROXY)
    pod["spec"]["initContainers"].append({"name": "azwi-proxy-init", "image": "mine",
                                          "resources": {}})
    pod["spec"]["containers"].append({"name": "azwi-proxy", "image": "mine", "resources": {}})
    spec = mutate(pod, SA, version)["spec"]
    assert [c["image"] for c in spec["initContainers"]] == ["init-container-image", "mine"]
    assert [c["image"] for c in spec["containers"]] == ["image", "mine"]


@pytest.mark.parametrize("version", VERSIONS)
def test_proxy_images_option(version: str) -> None:
    spec = mutate(go_raw_pod(PROXY), SA, version, azure_proxy_image="reg/p:1",
                  azure_proxy_init_image="reg/pi:1")["spec"]
    assert spec["containers"][0]["image"] == "reg/p:1"
    assert spec["initContainers"][-1]["image"] == "reg/pi:1"


# --- Handle errors: the denial (400) worded as the webhook's error ---

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("annotations", "spec", "message"), [
    (PROXY, {"hostNetwork": True}, "hostNetwork is set to true, cannot inject proxy sidecar"),
    ({**PROXY, "azure.workload.identity/proxy-sidecar-port": "invalid"}, {},
     'failed to parse proxy sidecar port: strconv.ParseInt: parsing "invalid": invalid syntax'),
    ({EXPIRY: "invalid"}, {}, 'strconv.ParseInt: parsing "invalid": invalid syntax')])
def test_handle_errors(version: str, annotations: dict[str, str], spec: dict[str, Any],
                       message: str) -> None:
    pod = go_raw_pod(annotations, **spec)
    assert pod_patch(pod, "ns1", lambda n, s: SA, settings(version)) == ([], message)
    with pytest.raises(Denied):
        azure_patch(copy.deepcopy(pod), SA, settings(version))


@pytest.mark.parametrize("version", VERSIONS)
def test_service_account_not_found(version: str) -> None:
    pod = go_raw_pod()
    pod["spec"]["serviceAccountName"] = "sa"
    assert pod_patch(pod, "ns1", lambda n, s: None, settings(version)) == (
        [], 'serviceaccounts "sa" not found')


@pytest.mark.parametrize("version", VERSIONS)
def test_unlabelled_pods_are_not_sent_to_the_webhook(version: str) -> None:
    pod = go_raw_pod()
    pod["metadata"]["labels"] = {"azure.workload.identity/use": "True"}  # exactly "true"
    assert pod_patch(pod, "ns1", lambda n, s: SA, settings(version)) == ([], None)


# --- the diff the webhook's patch comes from (gomodules.xyz/jsonpatch/v2 CreatePatch) ---

@pytest.mark.parametrize(("before", "after", "ops"), [
    (["a", "b"], ["a", "c", "b"], [{"op": "add", "path": "/l/1", "value": "c"}]),
    (["a", "b", "c"], ["a", "c"], [{"op": "remove", "path": "/l/1"}]),
    (["x"], ["y"], [{"op": "replace", "path": "/l/0", "value": "y"}]),
    # arrays of objects: adds past the common length first, then index by index
    ([{"n": "app"}], [{"n": "proxy"}, {"n": "app"}],
     [{"op": "add", "path": "/l/1", "value": {"n": "app"}},
      {"op": "replace", "path": "/l/0/n", "value": "proxy"}]),
    ([{"n": "a"}, {"n": "b"}], [{"n": "a"}],
     [{"op": "remove", "path": "/l/1"}])])
def test_create_patch_follows_the_library(before: list[Any], after: list[Any],
                                          ops: list[dict[str, Any]]) -> None:
    from crossfed.webhooks.reference_mutator import create_patch
    assert create_patch({"l": before}, {"l": after}) == ops
    assert apply_patch({"l": before}, ops) == {"l": after}
