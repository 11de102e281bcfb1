"""Pinned Helm releases of the two webhooks (and cert-manager), as exact `helm` argv.

Facts: shared/reference/kind-and-charts-facts.md §4, aws-federation-facts.md §5,
azure-federation-facts.md §6. Values go through a values file written next to the argv (no
`--set` parsing of commas, colons or PEM text); each release installs with
`helm upgrade --install NAME CHART --repo URL --version X --namespace NS --create-namespace
--values FILE --wait --timeout T`. Bare `--wait` is a bool in Helm 3 and the `watcher` strategy
in Helm 4; `--atomic` is not used (deprecated in Helm 4).

What the charts already do and therefore is NOT set here (and must not be added through
`config.extraArgs`, which would duplicate flags):
- the jkroepke chart's Deployment always passes `--in-cluster=false` (the webhook's default
  `true` uses the CSR path that is broken after v0.3.0);
- its MutatingWebhookConfiguration fixes `admissionReviewVersions: [v1beta1]`, which the
  webhook up to v0.6.17 needs on kind (a `v1` review is answered without apiVersion/kind and
  rejected by kube-apiserver); `webhook_configuration_problems` checks it after install;
- the azure-workload-identity chart fixes `failurePolicy: Fail` and generates its own certs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crossfed.secret_files import private_dir, write_private
from crossfed.webhooks import azure_workload_identity, eks_pod_identity
from crossfed.webhooks.versions import WebhookVersions

DEFAULT_TIMEOUT = "5m0s"

CERT_MANAGER_REPO = "https://charts.jetstack.io"
CERT_MANAGER_CHART = "cert-manager"
CERT_MANAGER_VERSION = "v1.21.1"  # chart versions start with "v"
CERT_MANAGER_NAMESPACE = "cert-manager"

EKS_WEBHOOK_REPO = "https://jkroepke.github.io/helm-charts"
EKS_WEBHOOK_CHART = "amazon-eks-pod-identity-webhook"
EKS_WEBHOOK_VERSION = "2.6.5"  # webhook v0.6.17
EKS_WEBHOOK_NAMESPACE = "pod-identity-webhook"
EKS_ADMISSION_REVIEW_VERSIONS = ["v1beta1"]

AZWI_REPO = "https://azure.github.io/azure-workload-identity/charts"
AZWI_CHART = "workload-identity-webhook"
# Chart version = app version without "v"; pinned to the contract crossfed judges against.
AZWI_VERSION = azure_workload_identity.DEFAULT_VERSION.removeprefix("v")
AZWI_NAMESPACE = "azure-workload-identity-system"
AZWI_ENVIRONMENT = "AzurePublicCloud"


@dataclass(frozen=True)
class HelmRelease:
    """One `helm upgrade --install`: chart from `repo` at `version`, or a local `chart_path`."""

    name: str
    chart: str
    version: str
    namespace: str
    repo: str | None
    values: Mapping[str, Any] = field(default_factory=dict)
    timeout: str = DEFAULT_TIMEOUT
    chart_path: str | None = None

    def values_yaml(self) -> str:
        return yaml.safe_dump(dict(self.values), sort_keys=False, default_flow_style=False)

    def write_values(self, directory: Path | str) -> Path:
        """Write the values file (owner-only: it may hold a webhook's private key)."""
        directory = private_dir(directory)
        path = directory / f"{self.name}.values.yaml"
        write_private(path, self.values_yaml().encode())
        return path

    def argv(self, helm_bin: Path | str, values_file: Path | str) -> list[str]:
        if self.chart_path:
            source = [self.chart_path]  # a `helm pull`ed archive: its version is in its name
        else:
            source = [self.chart, "--repo", str(self.repo), "--version", self.version]
        return [str(helm_bin), "upgrade", "--install", self.name, *source,
                "--namespace", self.namespace, "--create-namespace",
                "--values", str(values_file), "--wait", "--timeout", self.timeout]

    def install_argv(self, helm_bin: Path | str, workdir: Path | str) -> list[str]:
        """Write the values file into `workdir` and return the argv that installs with it."""
        return self.argv(helm_bin, self.write_values(workdir))


def _version_tuple(version: str) -> tuple[int, ...]:
    core = version.removeprefix("v").split("-")[0].split("+")[0]
    try:
        return tuple(int(part) for part in core.split("."))
    except ValueError as exc:
        raise ValueError(f"not a semantic version: {version!r}") from exc


def _local_chart(chart_path: str | os.PathLike[str] | None, chart: str,
                 version: str) -> str | None:
    if chart_path is None:
        return None
    path = Path(chart_path).expanduser().resolve()
    if path.suffix == ".tgz" and path.name != f"{chart}-{version}.tgz":
        raise ValueError(f"{path.name}: expected the archive of {chart} {version} "
                         f"({chart}-{version}.tgz, as `helm pull` names it)")
    return str(path)


def cert_manager(version: str = CERT_MANAGER_VERSION, *, timeout: str = DEFAULT_TIMEOUT,
                 chart_path: str | os.PathLike[str] | None = None,
                 extra_values: Mapping[str, Any] | None = None) -> HelmRelease:
    """cert-manager with its CRDs (crds.enabled from v1.15.0, installCRDs before)."""
    if not version.startswith("v"):
        raise ValueError(f"cert-manager chart versions start with 'v' (e.g. "
                         f"{CERT_MANAGER_VERSION}), got {version!r}")
    crds = {"crds": {"enabled": True}} if _version_tuple(version) >= (1, 15) else {
        "installCRDs": True}
    return HelmRelease(CERT_MANAGER_CHART, CERT_MANAGER_CHART, version, CERT_MANAGER_NAMESPACE,
                       CERT_MANAGER_REPO, {**crds, **(extra_values or {})}, timeout,
                       _local_chart(chart_path, CERT_MANAGER_CHART, version))


@dataclass(frozen=True)
class WebhookPKI:
    """A serving certificate for the EKS webhook without cert-manager (PEM text).

    The certificate must cover `<fullname>.<namespace>.svc` of the release.
    """

    cert_pem: str
    key_pem: str = field(repr=False)
    ca_pem: str


def eks_pod_identity_webhook(version: str = EKS_WEBHOOK_VERSION, *,
                             settings: eks_pod_identity.WebhookSettings = (
                                 eks_pod_identity.CHART_DEFAULTS),
                             failure_policy: str = "Fail",
                             namespace: str = EKS_WEBHOOK_NAMESPACE,
                             pki: WebhookPKI | None = None, image_tag: str | None = None,
                             timeout: str = DEFAULT_TIMEOUT,
                             chart_path: str | os.PathLike[str] | None = None,
                             extra_values: Mapping[str, Any] | None = None) -> HelmRelease:
    """jkroepke's amazon-eks-pod-identity-webhook chart, configured as `settings` says.

    failurePolicy defaults to Fail (the chart's Ignore lets pods through unmutated while the
    webhook or its caBundle is not ready, which a test would misread as a federation failure).
    With `pki` None the chart's cert-manager Issuer/Certificate is used: install `cert_manager()`
    first (with --wait), then check the caBundle with `webhook_configuration_problems`.
    From chart 2.6.0 unknown top-level keys fail the install (values.schema.json).
    """
    if failure_policy not in ("Fail", "Ignore"):
        raise ValueError(f"failurePolicy is Fail or Ignore, got {failure_policy!r}")
    values: dict[str, Any] = {
        "config": {
            "defaultAwsRegion": settings.default_region or "",  # "": no region env injected
            "stsRegionalEndpoint": settings.sts_regional_endpoints,
            "tokenAudience": settings.token_audience,
            "tokenExpiration": settings.token_expiration,
            "tokenMountPath": settings.token_mount_path,
        },
        "mutatingWebhook": {"failurePolicy": failure_policy},
    }
    if pki is None:
        values["pki"] = {"certManager": {"enabled": True}}
    else:  # the chart base64-encodes these itself
        values["pki"] = {"certManager": {"enabled": False}, "cert": pki.cert_pem,
                         "key": pki.key_pem, "caBundle": pki.ca_pem}
    if image_tag:
        values["image"] = {"tag": image_tag}
    _merge(values, extra_values or {})
    return HelmRelease(EKS_WEBHOOK_CHART, EKS_WEBHOOK_CHART, version, namespace,
                       EKS_WEBHOOK_REPO, values, timeout,
                       _local_chart(chart_path, EKS_WEBHOOK_CHART, version))


def azure_workload_identity_webhook(tenant_id: str, version: str = AZWI_VERSION, *,
                                    azure_environment: str = AZWI_ENVIRONMENT,
                                    image_release: str | None = None,
                                    timeout: str = DEFAULT_TIMEOUT,
                                    chart_path: str | os.PathLike[str] | None = None,
                                    extra_values: Mapping[str, Any] | None = None,
                                    ) -> HelmRelease:
    """The azure-workload-identity webhook chart; `tenant_id` is required by its template.

    The chart has no value for the authority host: the webhook derives AZURE_AUTHORITY_HOST
    from azureEnvironment (public cloud: https://login.microsoftonline.com/). crossfed points
    workloads at its Entra stand-in by setting AZURE_AUTHORITY_HOST on the container itself
    (`authority_host_env`): the webhook only adds variables the container does not define.
    The image tag key of this chart is `image.release`, not `image.tag`.
    """
    if not tenant_id or not tenant_id.strip():
        raise ValueError("azureTenantID is required by the workload-identity-webhook chart "
                         "(its template fails without it): pass the tenant id")
    values: dict[str, Any] = {"azureTenantID": tenant_id, "azureEnvironment": azure_environment}
    if image_release:
        values["image"] = {"release": image_release}
    _merge(values, extra_values or {})
    return HelmRelease(AZWI_CHART, AZWI_CHART, version, AZWI_NAMESPACE, AZWI_REPO, values,
                       timeout, _local_chart(chart_path, AZWI_CHART, version))


def authority_host_env(authority_host: str) -> list[dict[str, str]]:
    """The container env entry that keeps the webhook's public-cloud authority host out."""
    if not authority_host.startswith("https://"):
        raise ValueError(f"authority host must be an https:// URL, got {authority_host!r}")
    return [{"name": "AZURE_AUTHORITY_HOST", "value": authority_host}]


def eks_webhook_stack(*, cert_manager_version: str = CERT_MANAGER_VERSION,
                      **kwargs: Any) -> list[HelmRelease]:
    """The EKS webhook's releases in install order: cert-manager first unless pki is given.

    Install them one after the other (each with --wait): the webhook's Certificate needs
    cert-manager's CRDs and webhook to be up.
    """
    webhook = eks_pod_identity_webhook(**kwargs)
    if kwargs.get("pki") is not None:
        return [webhook]
    return [cert_manager(cert_manager_version, timeout=webhook.timeout), webhook]


# --- chart versions by webhook version (--webhook-versions / --upgrade-webhooks-to) --------

class ChartVersionError(ValueError):
    """No chart crossfed knows ships the webhook version asked for."""


# Which jkroepke chart version ships which webhook (its appVersion), newest chart per webhook
# version. Source: the chart's git tags `amazon-eks-pod-identity-webhook-X` (Chart.yaml
# appVersion), as tabulated in shared/reference/aws-federation-facts.md §5 and
# kind-and-charts-facts.md §4.2. Where several charts ship one webhook version the newest
# chart is taken (its templates carry the chart's own fixes; same image).
#
# A webhook version no chart ships is an error, not the nearest chart with `image.tag` set to
# it: the chart's Deployment is written for its appVersion (e.g. its probes call /healthz,
# which moved from the metrics port to the HTTPS port in v0.5.5 and left the metrics port in
# v0.5.6; flags such as --tls-cipher-suites exist only from v0.6.13), so a foreign tag can give
# a Deployment that never turns Ready or a webhook that rejects its flags. Passing `image_tag`
# to eks_pod_identity_webhook() stays possible for whoever accepts that risk.
EKS_CHART_FOR_WEBHOOK: dict[str, str] = {
    "v0.3.0": "1.1.0",
    "v0.4.0": "2.0.0",
    "v0.5.1": "2.1.2",
    "v0.5.2": "2.1.3",
    "v0.5.7": "2.2.0",
    "v0.6.1": "2.4.1",
    "v0.6.3": "2.4.2",
    "v0.6.4": "2.5.0",
    "v0.6.6": "2.5.1",
    "v0.6.7": "2.5.3",
    "v0.6.9": "2.5.6",
    "v0.6.11": "2.5.7",
    "v0.6.12": "2.6.0",
    "v0.6.13": "2.6.1",
    "v0.6.14": "2.6.2",
    "v0.6.15": "2.6.3",
    "v0.6.16": "2.6.4",
    "v0.6.17": "2.6.5",
}
# workload-identity-webhook chart versions (= app versions without "v"). Source: the
# project's gh-pages charts/index.yaml, as listed in kind-and-charts-facts.md §4.3.
AZWI_CHART_VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.2.2", "1.3.0", "1.4.0",
                       "1.4.1", "1.5.0", "1.5.1", "1.6.0")


def eks_chart_version(webhook_version: str) -> str:
    """The jkroepke chart version that ships amazon-eks-pod-identity-webhook `webhook_version`."""
    try:
        return EKS_CHART_FOR_WEBHOOK[webhook_version]
    except KeyError:
        raise ChartVersionError(
            f"eks={webhook_version}: no {EKS_WEBHOOK_CHART} chart ({EKS_WEBHOOK_REPO}) ships "
            "that webhook version; the charts ship "
            f"{', '.join(EKS_CHART_FOR_WEBHOOK)}") from None


def azwi_chart_version(webhook_version: str) -> str:
    """The workload-identity-webhook chart version of azure-workload-identity `webhook_version`."""
    chart = webhook_version.removeprefix("v")
    if not webhook_version.startswith("v") or chart not in AZWI_CHART_VERSIONS:
        raise ChartVersionError(
            f"azwi={webhook_version}: no {AZWI_CHART} chart ({AZWI_REPO}) of that version; "
            f"there are {', '.join('v' + v for v in AZWI_CHART_VERSIONS)}")
    return chart


def webhook_releases(azure_tenant_id: str, versions: WebhookVersions, *,
                     cert_manager_version: str = CERT_MANAGER_VERSION,
                     eks: Mapping[str, Any] | None = None,
                     azwi: Mapping[str, Any] | None = None) -> list[HelmRelease]:
    """Every release for `versions`, in install order: cert-manager (unless `eks` gives a pki),
    the EKS webhook's chart, the azwi chart. `eks`/`azwi`: further keyword arguments of
    eks_pod_identity_webhook() / azure_workload_identity_webhook(). ChartVersionError when a
    version has no chart (both are checked before anything is built)."""
    eks_chart, azwi_chart = eks_chart_version(versions.eks), azwi_chart_version(versions.azwi)
    return [*eks_webhook_stack(cert_manager_version=cert_manager_version, version=eks_chart,
                               **dict(eks or {})),
            azure_workload_identity_webhook(azure_tenant_id, azwi_chart, **dict(azwi or {}))]


def webhook_configuration_problems(configuration: Mapping[str, Any], *,
                                   failure_policy: str | None = None,
                                   admission_review_versions: Sequence[str] | None = None,
                                   ) -> list[str]:
    """What is wrong with an installed MutatingWebhookConfiguration (as `kubectl get -o json`).

    Checks every webhook for a non-empty caBundle (cert-manager's cainjector fills it after the
    install), the expected failurePolicy, and that the first admissionReviewVersion is the
    expected one (v1beta1 for amazon-eks-pod-identity-webhook <= v0.6.17).
    """
    name = configuration.get("metadata", {}).get("name", "?")
    webhooks = configuration.get("webhooks") or []
    if not webhooks:
        return [f"{name}: no webhooks"]
    problems = []
    for hook in webhooks:
        label = f"{name}/{hook.get('name', '?')}"
        if not (hook.get("clientConfig") or {}).get("caBundle"):
            problems.append(f"{label}: empty caBundle (CA not injected yet)")
        if failure_policy and hook.get("failurePolicy") != failure_policy:
            problems.append(f"{label}: failurePolicy {hook.get('failurePolicy')!r}, "
                            f"expected {failure_policy!r}")
        versions = hook.get("admissionReviewVersions") or []
        if admission_review_versions and versions[:1] != list(admission_review_versions)[:1]:
            problems.append(f"{label}: admissionReviewVersions {versions}, expected "
                            f"{list(admission_review_versions)} first")
    return problems


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
