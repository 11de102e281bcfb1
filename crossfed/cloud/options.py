"""The cloud tier's pytest options (interface fixed by issue 11, so outside checks can drive it)
and what a run makes of them (`CloudSettings`).

Credentials are never options: boto3's default chain and DefaultAzureCredential find them, and
endpoints and CA come only through the SDKs' own environment (AWS_ENDPOINT_URL[_<SERVICE>],
AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE, AZURE_AUTHORITY_HOST) or, for a non-public Azure cloud,
--azure-arm-endpoint's /metadata/endpoints document.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crossfed.cloud.tags import DEFAULT_TTL_HOURS

CLOUDS = ("aws", "azure")
KEYVAULT_MODELS = ("access-policy", "rbac")
DEFAULT_PROPAGATION_TIMEOUT = 300.0
FLAGS_LINE = ("cloud scenarios need --cloud aws and/or --cloud azure (credentials from boto3's "
              "default chain / DefaultAzureCredential; --aks-context/--eks-context for pods)")


def add_cloud_options(add: Callable[..., None]) -> None:
    """`add(name, **kwargs)`: crossfed's option adder (pytest_options.pytest_addoption)."""
    add("--cloud", action="append", choices=CLOUDS, default=None,
        help="run the scenarios of this direction against a real cloud (repeatable): aws "
             "(pods of --aks-context assume IAM roles), azure (pods of --eks-context read Key "
             "Vault); marker `cloud`")
    add("--aws-profile", default=None, help="boto3 profile [env AWS_PROFILE]")
    add("--aws-region", default=None, help="AWS region [env AWS_REGION, AWS_DEFAULT_REGION]")
    add("--azure-subscription", default=None,
        help="subscription to create the Azure objects in [env AZURE_SUBSCRIPTION_ID]")
    add("--azure-location", default=None, help="Azure region (default westeurope)")
    add("--azure-resource-group", default=None,
        help="resource group to create the objects in; it is never deleted (default: one "
             "group per run, created and deleted)")
    add("--azure-arm-endpoint", default=None, metavar="URL",
        help="a non-public Azure cloud's ARM; its /metadata/endpoints names the authority "
             "host, the Key Vault DNS suffix and the management audience")
    add("--azure-keyvault-authorization", choices=KEYVAULT_MODELS, default=None,
        help="the vault's permission model: access policies (default) or Azure RBAC")
    add("--aks-context", default=None,
        help="kubeconfig context of the cluster whose pods reach AWS (the AKS cluster)")
    add("--eks-context", default=None,
        help="kubeconfig context of the cluster whose pods reach Azure (the EKS cluster)")
    add("--aks-cluster", default=None, metavar="RG/NAME",
        help="cross-check --aks-context's issuer against this AKS cluster's "
             "oidcIssuerProfile.issuerUrl")
    add("--eks-cluster", default=None, metavar="NAME",
        help="cross-check --eks-context's issuer against this EKS cluster's "
             "identity.oidc.issuer")
    add("--install-webhooks", action="store_true", default=False,
        help="install the real webhooks with helm on the cloud-tier clusters (the AWS "
             "webhook with cert-manager on --aks-context, azure-workload-identity on "
             "--eks-context); without it they must be there already")
    add("--cloud-ttl-hours", type=float, default=None,
        help=f"crossfed-delete-after tag = now + this (default {DEFAULT_TTL_HOURS:g})")
    add("--cloud-propagation-timeout", type=float, default=None, metavar="SECONDS",
        help=f"how long to wait for IAM/Entra/Key Vault changes to take effect (default "
             f"{DEFAULT_PROPAGATION_TIMEOUT:g})")


@dataclass(frozen=True)
class CloudSettings:
    clouds: tuple[str, ...]
    aws_profile: str | None
    aws_region: str | None
    azure_subscription: str | None
    azure_location: str
    azure_resource_group: str | None
    azure_arm_endpoint: str | None
    keyvault_authorization: str
    kubeconfig: str | None
    aks_context: str | None
    eks_context: str | None
    aks_cluster: str | None
    eks_cluster: str | None
    install_webhooks: bool
    reference_mutator: bool
    ttl_hours: float
    propagation_timeout: float
    probe_image: str
    node_name: str | None

    @classmethod
    def from_options(cls, option: Callable[[str], Any]) -> CloudSettings:
        env = os.environ.get
        return cls(
            clouds=tuple(dict.fromkeys(option("--cloud") or ())),
            aws_profile=option("--aws-profile") or env("AWS_PROFILE"),
            aws_region=(option("--aws-region") or env("AWS_REGION")
                        or env("AWS_DEFAULT_REGION")),
            azure_subscription=option("--azure-subscription") or env("AZURE_SUBSCRIPTION_ID"),
            azure_location=option("--azure-location") or "westeurope",
            azure_resource_group=option("--azure-resource-group"),
            azure_arm_endpoint=option("--azure-arm-endpoint"),
            keyvault_authorization=option("--azure-keyvault-authorization") or "access-policy",
            kubeconfig=option("--crossfed-kubeconfig") or env("KUBECONFIG"),
            aks_context=option("--aks-context"),
            eks_context=option("--eks-context"),
            aks_cluster=option("--aks-cluster"),
            eks_cluster=option("--eks-cluster"),
            install_webhooks=bool(option("--install-webhooks")),
            reference_mutator=option("--crossfed-webhooks") == "reference",
            ttl_hours=(DEFAULT_TTL_HOURS if option("--cloud-ttl-hours") is None
                       else float(option("--cloud-ttl-hours"))),
            propagation_timeout=(DEFAULT_PROPAGATION_TIMEOUT
                                 if option("--cloud-propagation-timeout") is None
                                 else float(option("--cloud-propagation-timeout"))),
            probe_image=option("--crossfed-probe-image"),
            node_name=option("--crossfed-node"),
        )

    def context_for(self, cloud: str) -> str | None:
        """The context whose pods reach `cloud`: AWS from the AKS cluster, Azure from EKS."""
        return self.aks_context if cloud == "aws" else self.eks_context

    def problems(self) -> list[str]:
        """Option values that cannot work, each naming the fix (a UsageError at configure)."""
        found = []
        if self.ttl_hours <= 0:
            found.append("--cloud-ttl-hours must be more than 0")
        if self.propagation_timeout < 0:
            found.append("--cloud-propagation-timeout must be 0 or more seconds")
        if self.aks_cluster and (self.aks_cluster.count("/") != 1
                                 or "" in self.aks_cluster.split("/")):
            found.append(f"--aks-cluster {self.aks_cluster!r} is not RESOURCE_GROUP/NAME")
        if (self.aks_context or self.eks_context) and not self.kubeconfig:
            found.append("--aks-context/--eks-context need --kubeconfig (or KUBECONFIG)")
        return found

    def skip_reason(self, cloud: str | None, where: str) -> str | None:
        """Why a cloud scenario of direction `cloud` in `where` (process|cluster) cannot run."""
        if not self.clouds:
            return FLAGS_LINE
        if cloud is not None and cloud not in self.clouds:
            return f"{cloud} cloud scenarios need --cloud {cloud}"
        if where == "cluster" and cloud is not None and not self.context_for(cloud):
            flag = "--aks-context" if cloud == "aws" else "--eks-context"
            return (f"{cloud} cloud scenarios in pods need {flag} (a kubeconfig context whose "
                    "pods reach " + ("AWS" if cloud == "aws" else "Azure") + ")")
        return None
