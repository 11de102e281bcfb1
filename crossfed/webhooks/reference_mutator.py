"""crossfed's reference mutator: an admission webhook served from the host that applies the
documented mutation contracts of amazon-eks-pod-identity-webhook (IRSA path) and of
azure-workload-identity's webhook, for a chosen version of each.

Used where the real webhooks' images cannot be pulled, and as the oracle their mutation is
compared with. Pure functions build the JSON patch; the WSGI app only speaks AdmissionReview.
"""

from __future__ import annotations

import base64
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
AZWI_VOLUME = "azure-identity-token"

# namespace, name -> the ServiceAccount's annotations (None: it does not exist)
AnnotationLookup = Callable[[str, str], "dict[str, str] | None"]


@dataclass(frozen=True)
class MutatorSettings:
    eks: eks.WebhookSettings = eks.CHART_DEFAULTS
    azure: azwi.Contract = azwi.CONTRACTS[azwi.DEFAULT_VERSION]
    azure_tenant_id: str = ""
    azure_authority_host: str = azwi.PUBLIC_AUTHORITY_HOST
    skip_label: str = f"{EKS_PREFIX}/skip-pod-identity-webhook"


@dataclass
class Mutation:
    env: dict[str, str] = field(default_factory=dict)
    mount: dict[str, Any] | None = None
    volume: dict[str, Any] | None = None


def _has_env(container: dict[str, Any], *names: str) -> bool:
    present = {e.get("name") for e in container.get("env") or []}
    return any(n in present for n in names)


def eks_mutation(pod: dict[str, Any], sa: dict[str, str],
                 settings: eks.WebhookSettings) -> Mutation | None:
    role_arn = sa.get(f"{EKS_PREFIX}/role-arn")
    labels = pod.get("metadata", {}).get("labels") or {}
    if not role_arn or f"{EKS_PREFIX}/skip-pod-identity-webhook" in labels:
        return None
    annotations = pod.get("metadata", {}).get("annotations") or {}
    audience = sa.get(f"{EKS_PREFIX}/audience", settings.token_audience)
    expiration = eks.token_expiration(sa.get(f"{EKS_PREFIX}/token-expiration"),
                                      annotations.get(f"{EKS_PREFIX}/token-expiration"), settings)
    regional = sa.get(f"{EKS_PREFIX}/sts-regional-endpoints")
    if regional is not None:  # Go's ParseBool, as the webhook reads the annotation
        settings = replace(settings, sts_regional_endpoints=regional.lower() in (
            "1", "t", "true"))
    return Mutation(
        env=eks.injected_env(role_arn, settings),
        mount={"name": eks.VOLUME_NAME, "mountPath": settings.token_mount_path, "readOnly": True},
        volume={"name": eks.VOLUME_NAME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": audience, "expirationSeconds": expiration,
            "path": eks.TOKEN_FILE}}]}},
    )


def azure_mutation(pod: dict[str, Any], sa: dict[str, str],
                   settings: MutatorSettings) -> Mutation | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    if labels.get(f"{AZWI_PREFIX}/use") != "true":  # v1.0+: the pod label, exactly "true"
        return None
    annotations = pod.get("metadata", {}).get("annotations") or {}
    expiration = int(annotations.get(f"{AZWI_PREFIX}/service-account-token-expiration")
                     or sa.get(f"{AZWI_PREFIX}/service-account-token-expiration")
                     or settings.azure.default_expiration)
    tenant = sa.get(f"{AZWI_PREFIX}/tenant-id", settings.azure_tenant_id)
    env = azwi.injected_env(sa.get(f"{AZWI_PREFIX}/client-id", ""), tenant,
                            settings.azure.token_path, settings.azure_authority_host)
    return Mutation(
        env=env,
        mount={"name": AZWI_VOLUME, "mountPath": settings.azure.token_dir, "readOnly": True},
        volume={"name": AZWI_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": azwi.DEFAULT_AUDIENCE, "expirationSeconds": expiration,
            "path": azwi.TOKEN_FILE}}]}},
    )


def _container_patches(kind: str, index: int, container: dict[str, Any], mutation: Mutation,
                       skip_if_any: tuple[str, ...]) -> list[dict[str, Any]]:
    base = f"/spec/{kind}/{index}"
    patches: list[dict[str, Any]] = []
    env = [{"name": k, "value": v} for k, v in mutation.env.items()
           if not (_has_env(container, k) or (k in skip_if_any and _has_env(container,
                                                                             *skip_if_any)))]
    if env:
        if not container.get("env"):
            patches.append({"op": "add", "path": f"{base}/env", "value": env})
        else:
            patches += [{"op": "add", "path": f"{base}/env/-", "value": e} for e in env]
    mounts = container.get("volumeMounts") or []
    if mutation.mount and not any(m.get("name") == mutation.mount["name"] for m in mounts):
        if not mounts:
            patches.append({"op": "add", "path": f"{base}/volumeMounts",
                            "value": [mutation.mount]})
        else:
            patches.append({"op": "add", "path": f"{base}/volumeMounts/-",
                            "value": mutation.mount})
    return patches


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
    mutations = [(m, skip) for m, skip in (
        (eks_mutation(pod, sa, settings.eks), ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")),
        (azure_mutation(pod, sa, settings), ()),
    ) if m is not None]
    patches: list[dict[str, Any]] = []
    volumes = spec.get("volumes") or []
    new_volumes = [m.volume for m, _ in mutations
                   if m.volume and not any(v.get("name") == m.volume["name"] for v in volumes)]
    if new_volumes:
        if not volumes:
            patches.append({"op": "add", "path": "/spec/volumes", "value": new_volumes})
        else:
            patches += [{"op": "add", "path": "/spec/volumes/-", "value": v}
                        for v in new_volumes]
    skipped = set(filter(None, ((pod.get("metadata", {}).get("annotations") or {}).get(
        f"{EKS_PREFIX}/skip-containers", "")).split(",")))
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            for mutation, skip_if_any in mutations:
                if container.get("name") in skipped and mutation.mount and (
                        mutation.mount["name"] == eks.VOLUME_NAME):
                    continue
                patches += _container_patches(kind, index, container, mutation, skip_if_any)
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
