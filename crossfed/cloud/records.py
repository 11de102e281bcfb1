"""The clouds' own record of a cluster's issuer, for --aks-cluster RG/NAME (managedClusters
oidcIssuerProfile.issuerUrl) and --eks-cluster NAME (DescribeCluster identity.oidc.issuer): a
mismatch with the issuer the cluster's API server names stops the run, naming both."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crossfed.cloud.accounts import AwsCloud, AzureCloud, CloudSetupError

if TYPE_CHECKING:
    from crossfed.cloud.clusters import CloudCluster
    from crossfed.cloud.environment import CloudTier

AKS_API_VERSION = "2024-05-01"


def eks_issuer(session: Any, region: str, name: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cluster = session.client("eks", region_name=region).describe_cluster(name=name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CloudSetupError(f"--eks-cluster {name}: EKS answered {error.get('Code')}: "
                              f"{error.get('Message')}") from exc
    except BotoCoreError as exc:
        raise CloudSetupError(f"--eks-cluster {name}: cannot reach EKS: {exc}") from exc
    return str(cluster["cluster"].get("identity", {}).get("oidc", {}).get("issuer", ""))


def aks_issuer(azure: Any, group_and_name: str) -> str:
    """GET managedClusters/{name}: one read through the doctor's GET-only management pipeline
    (CHOICE: raw REST rather than azure-mgmt-containerservice, a large package for one field)."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    from crossfed.doctor.azure import arm_clients

    group, name = group_and_name.split("/", 1)
    arm = arm_clients(azure.cloud, azure.subscription, azure.ca_bundle)
    url = (f"/subscriptions/{azure.subscription}/resourceGroups/{group}/providers/"
           f"Microsoft.ContainerService/managedClusters/{name}?api-version={AKS_API_VERSION}")
    try:
        answer = arm.keyvault.send_request(HttpRequest("GET", url))
        answer.raise_for_status()
    except HttpResponseError as exc:
        raise CloudSetupError(f"--aks-cluster {group_and_name}: ARM answered "
                              f"{exc.status_code}: {' '.join(str(exc.message).split())[:200]}"
                              ) from exc
    profile = (answer.json().get("properties") or {}).get("oidcIssuerProfile") or {}
    issuer = profile.get("issuerURL")  # the REST name (the Python SDK's issuer_url)
    if not profile.get("enabled") or not issuer:
        raise CloudSetupError(f"AKS cluster {group_and_name} has no OIDC issuer: az aks update "
                              f"-g {group} -n {name} --enable-oidc-issuer")
    return str(issuer)


def cross_check(tier: CloudTier, cloud: str, cluster: CloudCluster) -> None:
    settings = tier.settings
    record, flag, named = None, "", ""
    # The record is read with the other cloud's credentials (an AKS cluster's through Azure's
    # chain), connected here if that cloud's scenarios are not selected.
    if cloud == "aws" and settings.aks_cluster:
        azure = tier.azure or AzureCloud.connect(settings, tier.run_id)
        record, flag = aks_issuer(azure, settings.aks_cluster), "--aks-cluster"
        named = settings.aks_cluster
    elif cloud == "azure" and settings.eks_cluster:
        aws = tier.aws or AwsCloud.connect(settings)
        record = eks_issuer(aws.session, aws.region, settings.eks_cluster)
        flag, named = "--eks-cluster", settings.eks_cluster
    if record is not None and record != cluster.issuer_url:
        pytest.exit(f"crossfed cloud: the issuer of context {cluster.context} is "
                    f"{cluster.issuer_url!r}, but {flag} {named} records {record!r}: the "
                    "context is not that cluster (or its issuer changed); fix the context or "
                    "the cluster name", returncode=4)
