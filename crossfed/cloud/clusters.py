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
from dataclasses import dataclass, field
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
from crossfed.webhooks.versions import WebhookVersions
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

    # release name -> chart version crossfed installed (--install-webhooks), for the upgrade
    installed: dict[str, str] = field(default_factory=dict)

    def stop(self) -> list[str]:
        return self.kube.stop()


def attach(settings: CloudSettings, context: str, clouds: tuple[str, ...],
           issuers: CloudIssuers, run_id: str, workload_ca: str | None,
           tenant_id: str = "", authority_host: str | None = None,
           versions: WebhookVersions | None = None) -> CloudCluster:
    """Attach one context; `versions` (default: the contracts' defaults) are the webhook
    versions the pods get: the reference mutator's contract, or the charts installed."""
    versions = versions or WebhookVersions()
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
    kube.use_webhook_versions(versions)
    installed: dict[str, str] = {}
    try:
        learned = learn_from_api_server(kube.api_client)
        if not settings.reference_mutator:
            installed = _webhooks(kube, clouds, settings, tenant_id, context, versions)
    except charts.ChartVersionError as exc:
        kube.stop()
        raise CloudSetupError(f"context {context}: {exc}") from exc
    except (LearnError, CloudSetupError) as exc:
        kube.stop()
        raise CloudSetupError(f"context {context}: {exc}") from exc
    kids = [k.get("kid") for k in learned.published_jwks.get("keys", [])]
    own = issuers.primary
    signing: Issuer | LearnedIssuer = (own if learned.url == own.url and own.kid in kids
                                       else learned)
    log.info("crossfed cloud: context %s: issuer %s (%s)", context, learned.url,
             "signed with crossfed's key" if signing is own else "the cluster's own key")
    return CloudCluster(context, kube, learned, signing, installed)


def _webhooks(kube: KubeconfigCluster, clouds: tuple[str, ...], settings: CloudSettings,
              tenant_id: str, context: str, versions: WebhookVersions) -> dict[str, str]:
    installed = (_install(clouds, settings, tenant_id, context, versions)
                 if settings.install_webhooks else {})
    _check_present(kube, clouds)
    return installed


def _check_present(kube: KubeconfigCluster, clouds: tuple[str, ...]) -> None:
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


def releases_for(clouds: tuple[str, ...], tenant_id: str,
                 versions: WebhookVersions) -> list[charts.HelmRelease]:
    """The charts each direction's webhook needs at `versions`, in install order (cert-manager
    before the EKS webhook); ChartVersionError when no chart ships a version."""
    releases: list[charts.HelmRelease] = []
    if "aws" in clouds:
        releases += charts.eks_webhook_stack(version=charts.eks_chart_version(versions.eks))
    if "azure" in clouds:
        releases.append(charts.azure_workload_identity_webhook(
            tenant_id, charts.azwi_chart_version(versions.azwi)))
    return releases


def _install(clouds: tuple[str, ...], settings: CloudSettings, tenant_id: str,
             context: str, versions: WebhookVersions) -> dict[str, str]:
    """helm upgrade --install, as the kind environment does (never run against a real
    managed cluster by this project: no registry here serves the webhook images). Returns
    release name -> chart version installed."""
    releases = releases_for(clouds, tenant_id, versions)
    _helm(releases, settings, context, "install")
    return {release.name: release.version for release in releases}


def upgrade_webhooks(cluster: CloudCluster, clouds: tuple[str, ...], settings: CloudSettings,
                     tenant_id: str, versions: WebhookVersions) -> list[str]:
    """The webhook upgrade in place (--upgrade-webhooks-to) on one attached cluster; returns
    the releases upgraded.

    - Reference mutator: it switches contract, nothing is installed.
    - --install-webhooks: `helm upgrade --install ... --reset-values --wait` of each release
      whose chart version changes (cert-manager stays), then the same webhook check as after
      the install. --reset-values: the release gets the new chart's defaults plus crossfed's
      values, none of the old release's (see environments/kind_upgrade.UPGRADE_FLAGS).
    - Webhooks crossfed did not install: CloudSetupError (the pytest plugin refuses that set
      of options before anything starts).
    """
    from crossfed.environments.kind_upgrade import UPGRADE_FLAGS

    cluster.kube.use_webhook_versions(versions)
    if settings.reference_mutator:
        return []
    if not settings.install_webhooks:
        raise CloudSetupError(f"context {cluster.context}: crossfed did not install its "
                              "webhooks (no --install-webhooks), so it does not upgrade them")
    changed = [release for release in releases_for(clouds, tenant_id, versions)
               if cluster.installed.get(release.name) != release.version]
    for release in changed:  # each recorded once through: a re-run skips what is done
        _helm([release], settings, cluster.context, "upgrade", UPGRADE_FLAGS)
        cluster.installed[release.name] = release.version
    _check_present(cluster.kube, clouds)
    return [f"{release.name} {release.version}" for release in changed]


def _helm(releases: list[charts.HelmRelease], settings: CloudSettings, context: str,
          what: str, extra: tuple[str, ...] = ()) -> None:
    from crossfed.cluster.tools import ToolMissing, find_tool, run_command
    from crossfed.progress import progress

    if not releases:
        return
    try:
        helm = find_tool("helm")  # PATH, else the pinned release (fetched once, cached)
    except ToolMissing as exc:
        raise CloudSetupError(f"--install-webhooks needs helm: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="crossfed-helm-") as workdir:
        for release in releases:
            argv = [*release.install_argv(helm, Path(workdir)), *extra, "--kubeconfig",
                    str(settings.kubeconfig), "--kube-context", context]
            with progress(f"cloud: context {context}: helm {what} {release.name} "
                          f"{release.version} (waits for its pods)"):
                done = run_command(argv, timeout=900)
            if done.returncode != 0:
                tail = " | ".join((done.stderr or "").strip().splitlines()[-3:])
                raise CloudSetupError(f"helm {what} of {release.name} {release.version} "
                                      f"failed: {tail}")
