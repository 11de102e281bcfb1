"""Clusters of the cloud tier, attached by kubeconfig context: --aks-context for the pods that
reach AWS, --eks-context for those that reach Azure (one attachment when both name the same).

The issuer is the cluster's own, read through its API server and used byte for byte (AKS
issuers end with "/", EKS ones do not). Pods are mutated by the cluster's real webhooks:
installed with helm on --install-webhooks, otherwise checked to be there; or, with
--crossfed-webhooks reference, by crossfed's reference mutator (the CI cluster has no
webhook images).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossfed.cloud.accounts import CloudSetupError
from crossfed.cloud.issuers import CloudIssuers
from crossfed.cloud.options import CloudSettings
from crossfed.environments.kubeconfig import KubeconfigCluster, KubeconfigOptions
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.learned import LearnedIssuer, LearnError, learn_from_api_server
from crossfed.webhooks import charts
from crossfed.webhooks.reference_mutator import MutatorSettings
from crossfed.workload.pod import PodSettings

log = logging.getLogger("crossfed.cloud")

# Where each direction's webhook is found: its chart's namespace, or (a managed cluster's own
# webhook, e.g. EKS's) a webhook of this name.
WEBHOOKS = {
    "aws": (charts.EKS_WEBHOOK_NAMESPACE, "pod-identity-webhook",
            "the AWS pod identity webhook with cert-manager (amazon-eks-pod-identity-webhook "
            "chart)"),
    "azure": (charts.AZWI_NAMESPACE, "azure-workload-identity",
              "azure-workload-identity's webhook (helm chart workload-identity-webhook with "
              "azureTenantID)"),
}


@dataclass
class CloudCluster:
    context: str
    kube: KubeconfigCluster
    learned: LearnedIssuer
    # What variant tokens are signed with: crossfed's key when the cluster signs with it (the
    # CI cluster), else the learned issuer, for which those variants are skipped.
    signing: Issuer | LearnedIssuer

    @property
    def issuer_url(self) -> str:
        return self.learned.url

    def stop(self) -> list[str]:
        return self.kube.stop()


def attach(settings: CloudSettings, context: str, clouds: tuple[str, ...],
           issuers: CloudIssuers, run_id: str, workload_ca: str | None,
           tenant_id: str = "", authority_host: str | None = None) -> CloudCluster:
    assert settings.kubeconfig is not None
    pods = PodSettings(image=settings.probe_image, node_name=settings.node_name,
                       pull_policy="IfNotPresent")
    options = KubeconfigOptions(settings.kubeconfig, pods,
                                reference_mutator=settings.reference_mutator, context=context,
                                workload_ca=workload_ca)
    mutator = MutatorSettings(azure_tenant_id=tenant_id,
                              **({"azure_authority_host": authority_host.rstrip("/") + "/"}
                                 if authority_host else {}))
    try:
        kube = KubeconfigCluster(options, issuers.ca, run_id, mutator)
    except Exception as exc:
        raise CloudSetupError(f"cannot attach context {context} of {settings.kubeconfig}: "
                              f"{exc}; check --kubeconfig and the context name") from exc
    try:
        learned = learn_from_api_server(kube.api_client)
        if not settings.reference_mutator:
            _webhooks(kube, clouds, settings, tenant_id, context)
    except (LearnError, CloudSetupError) as exc:
        kube.stop()
        raise CloudSetupError(f"context {context}: {exc}") from exc
    kids = [k.get("kid") for k in learned.published_jwks.get("keys", [])]
    own = issuers.primary
    signing: Issuer | LearnedIssuer = (own if learned.url == own.url and own.kid in kids
                                       else learned)
    log.info("crossfed cloud: context %s: issuer %s (%s)", context, learned.url,
             "signed with crossfed's key" if signing is own else "the cluster's own key")
    return CloudCluster(context, kube, learned, signing)


def _webhooks(kube: KubeconfigCluster, clouds: tuple[str, ...], settings: CloudSettings,
              tenant_id: str, context: str) -> None:
    if settings.install_webhooks:
        _install(clouds, settings, tenant_id, context)
    configurations = kube.admission.list_mutating_webhook_configuration().items
    missing = [cloud for cloud in clouds if not _present(configurations, cloud)]
    if missing:
        what = "; ".join(WEBHOOKS[cloud][2] for cloud in missing)
        raise CloudSetupError(f"no webhook mutates pods for {', '.join(missing)}: install "
                              f"{what}, or pass --install-webhooks (crossfed installs them "
                              "with helm), or --crossfed-webhooks reference")


def _present(configurations: list[Any], cloud: str) -> bool:
    namespace, name, _ = WEBHOOKS[cloud]
    for configuration in configurations:
        for hook in configuration.webhooks or []:
            service = getattr(hook.client_config, "service", None)
            if (service is not None and service.namespace == namespace) or name in hook.name:
                return True
    return False


def _install(clouds: tuple[str, ...], settings: CloudSettings, tenant_id: str,
             context: str) -> None:
    """helm upgrade --install, as the kind environment does (never run against a real
    managed cluster by this project: no registry here serves the webhook images)."""
    from crossfed.cluster.tools import find_tools, run_command

    tools = find_tools({}, helm=True)
    releases: list[charts.HelmRelease] = []
    if "aws" in clouds:
        releases += charts.eks_webhook_stack()
    if "azure" in clouds:
        releases.append(charts.azure_workload_identity_webhook(tenant_id))
    with tempfile.TemporaryDirectory(prefix="crossfed-helm-") as workdir:
        for release in releases:
            log.info("crossfed cloud: context %s: helm upgrade --install %s %s (waits for its "
                     "pods)", context, release.name, release.version)
            argv = [*release.install_argv(tools.helm, Path(workdir)), "--kubeconfig",
                    str(settings.kubeconfig), "--kube-context", context]
            done = run_command(argv, timeout=900)
            if done.returncode != 0:
                tail = " | ".join((done.stderr or "").strip().splitlines()[-3:])
                raise CloudSetupError(f"helm install of {release.name} failed: {tail}")
