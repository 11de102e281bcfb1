"""crossfed's reference mutator: an admission webhook served from the host that applies the
documented mutation contracts of amazon-eks-pod-identity-webhook (IRSA path) and of
azure-workload-identity's webhook, for a chosen version of each.

Used where the real webhooks' images cannot be pulled, and as the oracle their mutation is
compared with. Pure functions build the JSON patch; the WSGI app only speaks AdmissionReview.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from crossfed.webhooks import azure_workload_identity as azwi
from crossfed.webhooks import eks_pod_identity as eks

log = logging.getLogger("crossfed.mutator")
EKS_PREFIX = "eks.amazonaws.com"
AZWI_PREFIX = "azure.workload.identity"
AZWI_VOLUME = azwi.LEGACY_VOLUME  # up to v1.5.1; v1.6.0 hashes the pod name

# namespace, name -> the ServiceAccount's annotations (None: it does not exist)
AnnotationLookup = Callable[[str, str], "dict[str, str] | None"]
Patch = list[dict[str, Any]]


# --- Go's view of a pod: what json.Marshal of the typed corev1 objects writes ---

# Field order of corev1.PodSpec and corev1.Container (k8s.io/api types.go); keys crossfed does
# not list keep their place after these.
_POD_SPEC_ORDER = (
    "volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
    "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector",
    "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName",
    "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext",
    "imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "tolerations")
_CONTAINER_ORDER = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
    "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe",
    "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce",
    "tty")
_MOUNT_FIELDS = ("name", "readOnly", "recursiveReadOnly", "mountPath", "subPath",
                 "mountPropagation", "subPathExpr")
_ENV_FIELDS = ("name", "value", "valueFrom")


def _ordered(obj: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    head = {k: obj[k] for k in order if k in obj}
    return {**head, **{k: v for k, v in obj.items() if k not in head}}


def go_container(container: dict[str, Any], restart_policy: bool = True) -> dict[str, Any]:
    """A container as Go re-serialises it: its field order, resources always ({}), a mount
    always with mountPath, unknown mount and env keys dropped, a gRPC probe's service null.
    Before sidecar-aware libraries (restart_policy False) restartPolicy is unknown: dropped."""
    out = copy.deepcopy(container)
    out.setdefault("resources", {})
    if not restart_policy:
        out.pop("restartPolicy", None)
    if "volumeMounts" in out:
        out["volumeMounts"] = [{"mountPath": "", **{k: m[k] for k in _MOUNT_FIELDS if k in m}}
                               for m in out["volumeMounts"] or []]
        out["volumeMounts"] = [_ordered(m, _MOUNT_FIELDS) for m in out["volumeMounts"]]
    if "env" in out:
        out["env"] = [{k: e[k] for k in _ENV_FIELDS if k in e} for e in out["env"] or []]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        grpc = (out.get(probe) or {}).get("grpc")
        if isinstance(grpc, dict):
            grpc.setdefault("service", None)  # *string without omitempty
    return _ordered(out, _CONTAINER_ORDER)


def go_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """json.Marshal(corev1.Pod) of a decoded pod, for the fields crossfed knows: metadata's
    creationTimestamp (null), status ({}), the containers' own defaults, PodSpec's order."""
    out = copy.deepcopy(pod)
    out.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec = out.setdefault("spec", {})
    spec.setdefault("containers", [])  # no omitempty
    for key in ("initContainers", "containers", "ephemeralContainers"):
        if spec.get(key):
            spec[key] = [go_container(c) for c in spec[key]]
    out["spec"] = _ordered(spec, _POD_SPEC_ORDER)
    out.setdefault("status", {})
    return _ordered(out, ("kind", "apiVersion", "metadata", "spec", "status"))


# --- gomodules.xyz/jsonpatch/v2 CreatePatch, which controller-runtime's PatchResponseFromRaw
# uses. Go ranges over maps in random order, so the webhook's order among one object's keys is
# not fixed; crossfed takes the second document's key order (Go's field order, see go_pod).
# Everything else follows the library: per object, adds and recursion in key order, then
# removes; per array of objects, removes from the end, adds past the common length, then
# recursion into the common indices; arrays of scalars by edit distance. ---

def _pointer(path: str, key: object) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"  # both float64 once Go decodes them
    return type(value).__name__


def _simple(items: list[Any]) -> bool:
    return not any(isinstance(i, (dict, list)) for i in items)


def _values(a: Any, b: Any, path: str, patch: Patch) -> Patch:
    if a is None and b is None:
        return patch
    if _kind(a) != _kind(b):
        return [*patch, {"op": "replace", "path": path, "value": b}]
    if isinstance(a, dict):
        for key, value in b.items():
            if key not in a:
                patch = [*patch, {"op": "add", "path": _pointer(path, key), "value": value}]
            else:
                patch = _values(a[key], value, _pointer(path, key), patch)
        return patch + [{"op": "remove", "path": _pointer(path, k)} for k in a if k not in b]
    if isinstance(a, list):
        if _simple(a) and _simple(b):
            return patch + _edit_distance(a, b, path)
        common = min(len(a), len(b))
        patch = patch + [{"op": "remove", "path": _pointer(path, i)}
                         for i in range(len(a) - 1, common - 1, -1)]
        patch = patch + [{"op": "add", "path": _pointer(path, i), "value": b[i]}
                         for i in range(common, len(b))]
        for i in range(common):
            patch = _values(a[i], b[i], _pointer(path, i), patch)
        return patch
    return patch if a == b else [*patch, {"op": "replace", "path": path, "value": b}]


def _edit_distance(s: list[Any], t: list[Any], path: str) -> Patch:
    """Wagner-Fischer matrix and backtrace, as the library's compareEditDistance."""
    d = [[0] * (len(t) + 1) for _ in range(len(s) + 1)]
    for i in range(len(s) + 1):
        d[i][0] = i
    for j in range(len(t) + 1):
        d[0][j] = j
    for j in range(1, len(t) + 1):
        for i in range(1, len(s) + 1):
            d[i][j] = d[i - 1][j - 1] if s[i - 1] == t[j - 1] else 1 + min(
                d[i - 1][j - 1], d[i][j - 1], d[i - 1][j])
    ops: Patch = []
    i, j = len(s), len(t)
    while True:
        if i > 0 and d[i - 1][j] + 1 == d[i][j]:
            ops.append({"op": "remove", "path": _pointer(path, i - 1)})
            i -= 1
        elif j > 0 and d[i][j - 1] + 1 == d[i][j]:
            ops.append({"op": "add", "path": _pointer(path, i), "value": t[j - 1]})
            j -= 1
        elif i > 0 and j > 0 and d[i - 1][j - 1] + 1 == d[i][j]:
            ops.append({"op": "replace", "path": _pointer(path, i - 1), "value": t[j - 1]})
            i, j = i - 1, j - 1
        elif i > 0 and j > 0 and d[i - 1][j - 1] == d[i][j]:
            i, j = i - 1, j - 1
        else:
            return ops


def create_patch(a: dict[str, Any], b: dict[str, Any]) -> Patch:
    """CreatePatch(a, b): the ops that turn document a into b (JSON round trip first)."""
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    return [] if a == b else _values(a, b, "", [])


def apply_patch(document: dict[str, Any], patch: Patch) -> dict[str, Any]:
    """RFC 6902 add, replace and remove, in sequence, on a copy."""
    document = copy.deepcopy(document)
    for op in patch:
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].split("/")[1:]]
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if op["op"] != "add":
                del target[index]
            if op["op"] != "remove":
                target.insert(index, op["value"])
        elif op["op"] == "remove":
            del target[last]
        else:
            target[last] = op["value"]
    return document


@dataclass(frozen=True)
class MutatorSettings:
    eks: eks.WebhookSettings = eks.CHART_DEFAULTS
    azure: azwi.Contract = azwi.CONTRACTS[azwi.DEFAULT_VERSION]
    azure_tenant_id: str = ""
    azure_authority_host: str = azwi.PUBLIC_AUTHORITY_HOST
    # the chart's azureEnvironment; when set, the webhook's own authority host for that cloud
    azure_cloud: str | None = None
    azure_audience: str = azwi.DEFAULT_AUDIENCE  # the webhook's --audience
    azure_log_level: str = "info"  # the chart's logLevel, passed on to azwi-proxy
    azure_proxy_image: str | None = None  # PROXY_IMAGE; default registry/proxy:<version>
    azure_proxy_init_image: str | None = None  # PROXY_INIT_IMAGE
    skip_label: str = f"{EKS_PREFIX}/skip-pod-identity-webhook"
    # azure-workload-identity v1.5.0+ makes azwi-proxy a native sidecar on Kubernetes >= 1.32.
    azure_native_sidecar: bool = False

    @property
    def authority_host(self) -> str:
        return azwi.authority_host(self.azure_cloud) if self.azure_cloud else (
            self.azure_authority_host)


class Denied(ValueError):
    """The contract denies the pod (the webhook answers allowed=false, code 400)."""


def _own_token_volume(volume: dict[str, Any], audience: str) -> bool:
    """master's findTokenVolume: the webhook's own projected token (same audience and path)."""
    sources = (volume.get("projected") or {}).get("sources") or []
    return any((s.get("serviceAccountToken") or {}).get("audience") == audience
               and (s.get("serviceAccountToken") or {}).get("path") == eks.TOKEN_FILE
               for s in sources)


def eks_patch(pod: dict[str, Any], sa: dict[str, str], settings: eks.WebhookSettings,
              skip_label: str = f"{EKS_PREFIX}/skip-pod-identity-webhook") -> Patch | None:
    """The EKS webhook's patch (getPodSpecPatch), None where it does not mutate. Explicit ops in
    the handler's order: the token volume (inserted first, or the whole list when the pod has
    none), then the whole containers list, then the whole initContainers list if any; the lists
    are the Go-serialised containers, so Go's defaults show (resources: {})."""
    prefix = settings.annotation_prefix
    role = sa.get(f"{prefix}/role-arn")
    metadata = pod.get("metadata") or {}
    if not role or skip_label in (metadata.get("labels") or {}):  # objectSelector DoesNotExist
        return None
    annotations = metadata.get("annotations") or {}
    spec = pod.get("spec") or {}
    audience = sa.get(f"{prefix}/audience", settings.token_audience)
    expiration = eks.token_expiration(sa.get(f"{prefix}/token-expiration"),
                                      annotations.get(f"{prefix}/token-expiration"), settings)
    regional_raw = sa.get(f"{prefix}/sts-regional-endpoints")
    parsed = eks.parse_go_bool(regional_raw) if regional_raw is not None else None
    regional = settings.sts_regional_endpoints if parsed is None else parsed  # cache.go
    volumes = spec.get("volumes")
    existing = [v for v in volumes or [] if v.get("name") == eks.VOLUME_NAME]
    if existing and settings.checks_foreign_token_volume and not _own_token_volume(
            existing[0], audience):
        return None
    token_file = eks.token_file_path(settings.token_mount_path,
                                     eks.is_windows(spec.get("nodeSelector")))
    skip = eks.skip_containers(annotations.get(f"{prefix}/skip-containers"))
    mount = {"name": eks.VOLUME_NAME, "readOnly": True, "mountPath": settings.token_mount_path}

    def mutated(container: dict[str, Any]) -> dict[str, Any]:
        container = copy.deepcopy(container)
        if container.get("name") not in skip:
            env, wants_mount = eks.container_env(container, settings.role_arn(role), token_file,
                                                 regional, settings.default_region)
            if env:
                container["env"] = env
            mounts = container.get("volumeMounts") or []
            if wants_mount and not any(m.get("name") == eks.VOLUME_NAME for m in mounts):
                container["volumeMounts"] = [*mounts, mount]
        return go_container(container, settings.keeps_restart_policy)

    patch: Patch = []
    if not existing:
        source = {"audience": audience, "expirationSeconds": expiration, "path": eks.TOKEN_FILE}
        volume = {"name": eks.VOLUME_NAME, "projected": {"sources": [{
            "serviceAccountToken": {k: v for k, v in source.items() if v != ""}}]}}
        patch.append({"op": "add", "path": "/spec/volumes", "value": [volume]} if volumes is None
                     else {"op": "add", "path": "/spec/volumes/0", "value": volume})
    patch.append({"op": "add", "path": "/spec/containers",
                  "value": [mutated(c) for c in spec.get("containers") or []]})
    if spec.get("initContainers"):
        patch.append({"op": "add", "path": "/spec/initContainers",
                      "value": [mutated(c) for c in spec["initContainers"]]})
    return patch


def _inject_proxy(spec: dict[str, Any], annotations: dict[str, str],
                  settings: MutatorSettings) -> None:
    """inject-proxy-sidecar (by presence, any value): azwi-proxy-init appended to the init
    containers, azwi-proxy put first in the containers (or, native, in the init containers)."""
    if spec.get("hostNetwork"):  # v1.2+
        raise Denied("hostNetwork is set to true, cannot inject proxy sidecar")
    try:
        port = azwi.proxy_port(annotations.get(f"{AZWI_PREFIX}/proxy-sidecar-port"))
    except ValueError as exc:
        raise Denied(str(exc)) from exc
    inits = list(spec.get("initContainers") or [])
    if not any(c.get("name") == azwi.PROXY_INIT_NAME for c in inits):
        inits.append(azwi.proxy_init_container(settings.azure, port,
                                               settings.azure_proxy_init_image))
    spec["initContainers"] = inits
    key = "initContainers" if settings.azure_native_sidecar else "containers"
    target = list(spec.get(key) or [])
    if not any(c.get("name") == azwi.PROXY_SIDECAR_NAME for c in target):
        target.insert(0, azwi.proxy_sidecar_container(
            settings.azure, port, settings.azure_native_sidecar, settings.azure_log_level,
            settings.azure_proxy_image))
    spec[key] = target


def azure_patch(pod: dict[str, Any], sa: dict[str, str], settings: MutatorSettings) -> Patch:
    """The azure webhook's patch for a labelled pod whose SA exists. Handle() mutates a typed
    copy and answers admission.PatchResponseFromRaw(raw, json.Marshal(pod)): the ops are
    gomodules.xyz/jsonpatch's CreatePatch of the request's object against the Go-serialised
    mutated pod (go_json.create_patch). Raises Denied where the webhook answers 400."""
    contract = settings.azure
    mutated = copy.deepcopy(pod)
    metadata = mutated.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    spec = mutated.setdefault("spec", {})
    if f"{AZWI_PREFIX}/inject-proxy-sidecar" in annotations:
        _inject_proxy(spec, annotations, settings)
    try:
        expiration = azwi.token_expiration(
            annotations.get(f"{AZWI_PREFIX}/service-account-token-expiration"),
            sa.get(f"{AZWI_PREFIX}/service-account-token-expiration"),
            contract.default_expiration)
    except ValueError as exc:
        raise Denied(str(exc)) from exc
    tenant = sa.get(f"{AZWI_PREFIX}/tenant-id", settings.azure_tenant_id)
    env = azwi.injected_env(sa.get(f"{AZWI_PREFIX}/client-id", ""), tenant,
                            contract.token_path, settings.authority_host)
    skip = azwi.skip_containers(annotations.get(f"{AZWI_PREFIX}/skip-containers"))
    name = contract.volume_name(metadata)
    mount = {"name": name, "readOnly": True, "mountPath": contract.mount_path}
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if container.get("name") in skip:
                continue
            present = {e.get("name") for e in container.get("env") or []}
            added = [{"name": k, "value": v} for k, v in env.items() if k not in present]
            if added:
                container["env"] = [*(container.get("env") or []), *added]
            container["volumeMounts"] = _put(container.get("volumeMounts") or [], mount,
                                             contract.replaces_existing)
    volume = {"name": name, "projected": {"sources": [{"serviceAccountToken": {
        "audience": settings.azure_audience, "expirationSeconds": expiration,
        "path": contract.projection_path}}]}}
    volumes = spec.get("volumes") or []
    if contract.replaces_existing:
        spec["volumes"] = _put(volumes, volume, replace_same=True)
    elif not any((s.get("serviceAccountToken") or {}).get("path") == contract.projection_path
                 for v in volumes for s in (v.get("projected") or {}).get("sources") or []):
        # v1.5.1 knows its volume by the token's projection path, whatever the volume's name
        spec["volumes"] = [*volumes, volume]
    return create_patch(pod, go_pod(mutated))


def _put(items: list[dict[str, Any]], item: dict[str, Any],
         replace_same: bool) -> list[dict[str, Any]]:
    """Append `item` unless one of its name exists; v1.6.0 replaces that one in place."""
    for index, existing in enumerate(items):
        if existing.get("name") == item["name"]:
            return [*items[:index], item, *items[index + 1:]] if replace_same else items
    return [*items, item]


def pod_patch(pod: dict[str, Any], namespace: str, lookup: AnnotationLookup,
              settings: MutatorSettings) -> tuple[Patch, str | None]:
    """The JSON patch for a pod, and a denial message when the contract denies it. The two
    webhooks are applied one after the other, EKS first: the azure ops are computed on the
    pod as the EKS patch left it, so the concatenated patch applies in sequence."""
    spec = pod.get("spec") or {}
    sa_name = spec.get("serviceAccountName") or "default"
    sa = lookup(namespace, sa_name)
    labels = (pod.get("metadata") or {}).get("labels") or {}
    wants_azure = labels.get(f"{AZWI_PREFIX}/use") == "true"  # v1.0+ objectSelector, exact
    if sa is None:
        # azure-workload-identity denies pods of a missing SA with the API server's error
        return ([], azwi.not_found(namespace, sa_name)) if wants_azure else ([], None)
    patches = eks_patch(pod, sa, settings.eks, settings.skip_label) or []
    if wants_azure:
        try:
            patches = patches + azure_patch(apply_patch(pod, patches), sa, settings)
        except Denied as exc:
            return [], str(exc)
    return patches, None


def review_response(review: dict[str, Any], lookup: AnnotationLookup,
                    settings: MutatorSettings) -> dict[str, Any]:
    """Answer an AdmissionReview in the version it came in (v1 or v1beta1)."""
    request = review.get("request", {})
    answer: dict[str, Any] = {"uid": request.get("uid"), "allowed": True}
    if request.get("kind", {}).get("kind") == "Pod" and request.get("operation") == "CREATE":
        patches, denial = pod_patch(request.get("object", {}), request.get("namespace", ""),
                                    lookup, settings)
        if denial:
            answer.update(allowed=False, status={"code": 400, "message": denial})
        elif patches:
            answer["patchType"] = "JSONPatch"
            answer["patch"] = base64.b64encode(json.dumps(patches).encode()).decode()
    return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview", "response": answer}


class MutatorApp:
    def __init__(self, lookup: AnnotationLookup, settings: MutatorSettings) -> None:
        self.lookup, self.settings = lookup, settings
        self.reviews: list[dict[str, Any]] = []  # what was asked and answered, for reports

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path != "/mutate" or request.method != "POST":
            return Response("not found", status=404)(environ, start_response)
        if request.mimetype != "application/json":
            return Response("expected application/json", status=415)(environ, start_response)
        review = request.get_json()
        answer = review_response(review, self.lookup, self.settings)
        self.reviews.append({"request": review.get("request", {}).get("object", {}).get(
            "metadata", {}), "response": answer["response"]})
        return Response(json.dumps(answer), content_type="application/json")(environ,
                                                                              start_response)


def webhook_configuration(name: str, url: str, ca_bundle_pem: bytes,
                          namespace_label: tuple[str, str]) -> dict[str, Any]:
    """The MutatingWebhookConfiguration registering the mutator for labelled namespaces."""
    key, value = namespace_label
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {key: value}},
        "webhooks": [{
            "name": "reference-mutator.crossfed.io",
            "clientConfig": {"url": url,
                             "caBundle": base64.b64encode(ca_bundle_pem).decode()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {key: value}},
            "admissionReviewVersions": ["v1", "v1beta1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",  # a dead mutator must not yield silently unmutated pods
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 10,
        }],
    }
