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
from dataclasses import dataclass, field, replace
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


@dataclass(frozen=True)
class MutatorSettings:
    eks: eks.WebhookSettings = eks.CHART_DEFAULTS
    azure: azwi.Contract = azwi.CONTRACTS[azwi.DEFAULT_VERSION]
    azure_tenant_id: str = ""
    azure_authority_host: str = azwi.PUBLIC_AUTHORITY_HOST
    skip_label: str = f"{EKS_PREFIX}/skip-pod-identity-webhook"
    # azure-workload-identity v1.5.0+ makes azwi-proxy a native sidecar on Kubernetes >= 1.32.
    azure_native_sidecar: bool = False


@dataclass
class Mutation:
    env: dict[str, str] = field(default_factory=dict)
    mount: dict[str, Any] | None = None
    volume: dict[str, Any] | None = None
    skip: set[str] = field(default_factory=set)  # container names this webhook leaves alone
    # variables of one group are added only if the container has none of them
    env_groups: tuple[tuple[str, ...], ...] = ()


class Denied(ValueError):
    """The contract denies the pod (the webhook answers allowed=false, code 400)."""


def _has_env(container: dict[str, Any], *names: str) -> bool:
    present = {e.get("name") for e in container.get("env") or []}
    return any(n in present for n in names)


def eks_mutation(pod: dict[str, Any], sa: dict[str, str],
                 settings: eks.WebhookSettings,
                 skip_label: str = f"{EKS_PREFIX}/skip-pod-identity-webhook") -> Mutation | None:
    role_arn = sa.get(f"{EKS_PREFIX}/role-arn")
    labels = pod.get("metadata", {}).get("labels") or {}
    if not role_arn or skip_label in labels:  # the label: objectSelector DoesNotExist
        return None
    annotations = pod.get("metadata", {}).get("annotations") or {}
    audience = sa.get(f"{EKS_PREFIX}/audience", settings.token_audience)
    expiration = eks.token_expiration(sa.get(f"{EKS_PREFIX}/token-expiration"),
                                      annotations.get(f"{EKS_PREFIX}/token-expiration"), settings)
    regional = sa.get(f"{EKS_PREFIX}/sts-regional-endpoints")
    parsed = eks.parse_go_bool(regional) if regional is not None else None
    if parsed is not None:  # Go's ParseBool; an invalid value keeps the flag (cache.go)
        settings = replace(settings, sts_regional_endpoints=parsed)
    windows = eks.is_windows(pod.get("spec", {}).get("nodeSelector"))
    return Mutation(
        env=eks.injected_env(role_arn, settings, windows=windows),
        mount={"name": eks.VOLUME_NAME, "mountPath": settings.token_mount_path, "readOnly": True},
        volume={"name": eks.VOLUME_NAME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": audience, "expirationSeconds": expiration,
            "path": eks.TOKEN_FILE}}]}},
        skip=eks.skip_containers(annotations.get(f"{EKS_PREFIX}/skip-containers")),
        env_groups=eks.ENV_GROUPS,
    )


def azure_mutation(pod: dict[str, Any], sa: dict[str, str],
                   settings: MutatorSettings) -> Mutation | None:
    """Raises Denied where the webhook answers 400 (expiration out of 3600..86400)."""
    labels = pod.get("metadata", {}).get("labels") or {}
    if labels.get(f"{AZWI_PREFIX}/use") != "true":  # v1.0+: the pod label, exactly "true"
        return None
    annotations = pod.get("metadata", {}).get("annotations") or {}
    try:
        expiration = azwi.token_expiration(
            annotations.get(f"{AZWI_PREFIX}/service-account-token-expiration"),
            sa.get(f"{AZWI_PREFIX}/service-account-token-expiration"),
            settings.azure.default_expiration)
    except ValueError as exc:
        raise Denied(str(exc)) from exc
    tenant = sa.get(f"{AZWI_PREFIX}/tenant-id", settings.azure_tenant_id)
    env = azwi.injected_env(sa.get(f"{AZWI_PREFIX}/client-id", ""), tenant,
                            settings.azure.token_path, settings.azure_authority_host)
    volume_name = settings.azure.volume_name(pod.get("metadata", {}))
    return Mutation(
        env=env,
        mount={"name": volume_name, "mountPath": settings.azure.token_dir, "readOnly": True},
        volume={"name": volume_name, "projected": {"sources": [{"serviceAccountToken": {
            "audience": azwi.DEFAULT_AUDIENCE, "expirationSeconds": expiration,
            "path": azwi.TOKEN_FILE}}]}},
        skip=azwi.skip_containers(annotations.get(f"{AZWI_PREFIX}/skip-containers")),
    )


def _container_patches(kind: str, index: int, container: dict[str, Any],
                       mutation: Mutation) -> list[dict[str, Any]]:
    base = f"/spec/{kind}/{index}"
    patches: list[dict[str, Any]] = []
    env = [{"name": k, "value": v} for k, v in mutation.env.items()
           if not _has_env(container, k) and not any(
               k in group and _has_env(container, *group) for group in mutation.env_groups)]
    if env:
        if not container.get("env"):
            patches.append({"op": "add", "path": f"{base}/env", "value": env})
        else:
            patches += [{"op": "add", "path": f"{base}/env/-", "value": e} for e in env]
        # the working copy follows the patch, so a second webhook's mutation appends to it
        container["env"] = [*(container.get("env") or []), *env]
    mounts = container.get("volumeMounts") or []
    if mutation.mount and not any(m.get("name") == mutation.mount["name"] for m in mounts):
        if not mounts:
            patches.append({"op": "add", "path": f"{base}/volumeMounts",
                            "value": [mutation.mount]})
        else:
            patches.append({"op": "add", "path": f"{base}/volumeMounts/-",
                            "value": mutation.mount})
        container["volumeMounts"] = [*mounts, mutation.mount]
    return patches


def _inject_proxy(pod: dict[str, Any], settings: MutatorSettings,
                  ) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """azure-workload-identity's inject-proxy-sidecar (by presence, any value): the patches
    and the container lists as they are after them (the injected ones are mutated too)."""
    spec = pod.get("spec", {})
    inits, containers = list(spec.get("initContainers") or []), list(spec.get("containers") or [])
    if spec.get("hostNetwork"):  # v1.2+
        raise Denied("hostNetwork is set to true, cannot inject proxy sidecar")
    annotations = pod.get("metadata", {}).get("annotations") or {}
    try:
        port = azwi.proxy_port(annotations.get(f"{AZWI_PREFIX}/proxy-sidecar-port"))
    except ValueError as exc:
        raise Denied(str(exc)) from exc
    patches: list[dict[str, Any]] = []
    new_inits = list(inits)
    if not any(c.get("name") == azwi.PROXY_INIT_NAME for c in inits):
        new_inits.append(azwi.proxy_init_container(settings.azure, port))
    native = settings.azure_native_sidecar
    target = new_inits if native else containers
    if not any(c.get("name") == azwi.PROXY_SIDECAR_NAME for c in target):
        target.insert(0, azwi.proxy_sidecar_container(settings.azure, port, native))
    if new_inits != inits:
        patches.append({"op": "add", "path": "/spec/initContainers", "value": new_inits})
    if containers != list(spec.get("containers") or []):
        patches.append({"op": "add", "path": "/spec/containers/0", "value": containers[0]})
    return patches, new_inits, containers


def pod_patch(pod: dict[str, Any], namespace: str, lookup: AnnotationLookup,
              settings: MutatorSettings) -> tuple[list[dict[str, Any]], str | None]:
    """The JSON patch for a pod, and a denial message when the contract denies it."""
    spec = pod.get("spec", {})
    sa_name = spec.get("serviceAccountName") or "default"
    sa = lookup(namespace, sa_name)
    wants_azure = (pod.get("metadata", {}).get("labels") or {}).get(f"{AZWI_PREFIX}/use")
    if sa is None:
        if wants_azure == "true":  # azure-workload-identity denies pods of a missing SA
            return [], f"service account {namespace}/{sa_name} not found"
        return [], None
    patches: list[dict[str, Any]] = []
    # working copies: _container_patches keeps them in step with the patches emitted
    lists = {"initContainers": copy.deepcopy(spec.get("initContainers") or []),
             "containers": copy.deepcopy(spec.get("containers") or [])}
    try:
        azure = azure_mutation(pod, sa, settings)
        annotations = pod.get("metadata", {}).get("annotations") or {}
        if azure is not None and f"{AZWI_PREFIX}/inject-proxy-sidecar" in annotations:
            patches, inits, containers = _inject_proxy(pod, settings)
            lists = {"initContainers": copy.deepcopy(inits),
                     "containers": copy.deepcopy(containers)}
    except Denied as exc:
        return [], str(exc)
    mutations = [m for m in (eks_mutation(pod, sa, settings.eks, settings.skip_label), azure)
                 if m is not None]
    volumes = spec.get("volumes") or []
    new_volumes = [m.volume for m in mutations
                   if m.volume and not any(v.get("name") == m.volume["name"] for v in volumes)]
    if new_volumes:
        if not volumes:
            patches.append({"op": "add", "path": "/spec/volumes", "value": new_volumes})
        else:
            patches += [{"op": "add", "path": "/spec/volumes/-", "value": v}
                        for v in new_volumes]
    for kind, containers in lists.items():
        for index, container in enumerate(containers):
            for mutation in mutations:
                # both webhooks: skip-containers covers initContainers and containers alike
                if container.get("name") not in mutation.skip:
                    patches += _container_patches(kind, index, container, mutation)
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
