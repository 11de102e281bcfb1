"""AKS records in the ARM stand-in: what `az aks show` (GET
G/providers/Microsoft.ContainerService/managedClusters/{name}) reads of a cluster that federates,
its location and OIDC issuer, so the cloud tier can learn an issuer the way it does from AKS.

Registered by the harness (ArmStandIn.add_managed_cluster, `crossfed serve --aks-cluster
RG/NAME=ISSUER`), read-only over HTTP: there is no cluster behind a record.

CHOICES (the record is a shape, not a cluster):
- properties carry what a workload-identity cluster shows (SPECS containerservice
  ManagedClustersGet example; wire names oidcIssuerProfile.issuerURL and
  securityProfile.workloadIdentity.enabled as azure-mgmt-containerservice maps them):
  provisioningState Succeeded, powerState Running, a dnsPrefix and fqdn from the name, a
  kubernetesVersion; nothing else (no agent pools, no network profile);
- the issuer URL is returned exactly as registered (AKS issuers end with "/": the caller keeps
  whatever it was given, as a real cluster's string must be copied, never rebuilt);
- any well-formed api-version is answered with the same shape;
- registering a record creates its resource group if there is none (AKS needs one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from crossfed.azure.arm.common import CLUSTER_TYPE, NOT_FOUND_FIX, ArmError

KUBERNETES_VERSION = "1.33.2"  # CHOICE: shown, never enforced


@dataclass
class ManagedCluster:
    name: str
    resource_group: str
    issuer_url: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)


def cluster_not_found(group: str, name: str) -> ArmError:
    """ARM's ResourceNotFound body for a resource that is not there (message seen in the
    field, with its aka.ms pointer)."""
    return ArmError(404, "ResourceNotFound", f"The Resource '{CLUSTER_TYPE}/{name}' under "
                    f"resource group '{group}' was not found. {NOT_FOUND_FIX}")


class ManagedClusters:
    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        self._clusters: dict[tuple[str, str], ManagedCluster] = {}  # lower-case (group, name)
        self._lock = threading.Lock()

    def add(self, cluster: ManagedCluster) -> None:
        with self._lock:
            self._clusters[(cluster.resource_group.lower(), cluster.name.lower())] = cluster

    def cluster_id(self, cluster: ManagedCluster) -> str:
        # AKS spells "resourcegroups" in lower case in ids (SPECS ManagedClustersGet.json)
        return (f"/subscriptions/{self.subscription_id}/resourcegroups/{cluster.resource_group}"
                f"/providers/{CLUSTER_TYPE}/{cluster.name}")

    def cluster_json(self, cluster: ManagedCluster) -> dict[str, Any]:
        prefix = cluster.name.lower()[:54]
        return {
            "id": self.cluster_id(cluster), "location": cluster.location,
            # AKS spells the type with a capital M here (az aks show; SPECS example)
            "name": cluster.name, "type": "Microsoft.ContainerService/ManagedClusters",
            "tags": dict(cluster.tags),
            "properties": {
                "provisioningState": "Succeeded", "powerState": {"code": "Running"},
                "kubernetesVersion": KUBERNETES_VERSION,
                "currentKubernetesVersion": KUBERNETES_VERSION,
                "dnsPrefix": prefix,
                "fqdn": f"{prefix}-crossfed.hcp.{cluster.location.replace(' ', '').lower()}"
                        ".azmk8s.io",
                "oidcIssuerProfile": {"enabled": True, "issuerURL": cluster.issuer_url},
                "securityProfile": {"workloadIdentity": {"enabled": True}},
            },
        }

    def get(self, group: str, name: str) -> dict[str, Any]:
        with self._lock:
            cluster = self._clusters.get((group.lower(), name.lower()))
        if cluster is None:
            raise cluster_not_found(group, name)
        return self.cluster_json(cluster)
