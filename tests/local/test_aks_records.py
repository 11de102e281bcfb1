"""AKS records in the ARM stand-in: ArmStandIn.add_managed_cluster() registers a cluster that
GET .../providers/Microsoft.ContainerService/managedClusters/{name} answers in AKS's
ManagedCluster shape (what `az aks show --query oidcIssuerProfile.issuerUrl` reads), and ARM's
404 ResourceNotFound for any other name; raw HTTP with a management token, as the cloud tier's
issuer lookup sends it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from crossfed.azure.arm.server import ArmStandIn
from crossfed.azure.directory import Directory, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.pki import RunCA
from tests.local.test_arm import RecordingVaultHost

pytestmark = [pytest.mark.local, pytest.mark.azure]

AKS_API = "2025-07-01"
ISSUER = "https://westeurope.oic.prod-aks.azure.com/00000000-0000-0000-0000-000000000000/" \
         "11111111-1111-1111-1111-111111111111/"  # AKS issuers end with "/"


class Arm:
    def __init__(self, ca: RunCA, implicit_groups: bool = True) -> None:
        self.directory, self.signer = Directory(), AccessTokenSigner()
        self.tenant = self.directory.add_tenant()
        self.subscription = str(uuid.uuid4())
        self.admin = self.directory.add(ServicePrincipal(self.tenant, "admin",
                                                         kind="application"))
        self.arm = ArmStandIn(ca, self.directory, self.signer, self.tenant, self.subscription,
                              RecordingVaultHost(), implicit_groups=implicit_groups).start()
        self.verify = str(ca.bundle_path)

    def get(self, group: str, name: str, api: str | None = AKS_API,
            principal: ServicePrincipal | None = None) -> requests.Response:
        token = self.signer.issue(principal or self.admin, "https://management.azure.com").token
        path = (f"/subscriptions/{self.subscription}/resourceGroups/{group}/providers/"
                f"Microsoft.ContainerService/managedClusters/{name}")
        return requests.get(self.arm.endpoint + path, params={"api-version": api} if api else {},
                            headers={"Authorization": f"Bearer {token}"}, verify=self.verify,
                            timeout=10)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(Path(tmp_path_factory.mktemp("aks-ca")))


@pytest.fixture
def arm(ca: RunCA) -> Iterator[Arm]:
    made = Arm(ca)
    yield made
    made.arm.stop()


def test_registered_cluster_answers_a_managed_cluster(arm: Arm) -> None:
    assert arm.arm.add_managed_cluster("aks-rg", "prod-1", ISSUER) is None
    answer = arm.get("aks-rg", "prod-1")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["id"] == (f"/subscriptions/{arm.subscription}/resourcegroups/aks-rg/providers/"
                          "Microsoft.ContainerService/managedClusters/prod-1")
    assert body["name"] == "prod-1" and body["location"] == "westeurope"
    assert body["type"] == "Microsoft.ContainerService/ManagedClusters"
    properties = body["properties"]
    assert properties["provisioningState"] == "Succeeded"
    assert properties["oidcIssuerProfile"] == {"enabled": True, "issuerURL": ISSUER}
    assert properties["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert answer.headers["Content-Type"].startswith("application/json")


def test_names_ignore_case_and_location_is_kept(arm: Arm) -> None:
    arm.arm.add_managed_cluster("AKS-RG", "Dev", "https://issuer.example.test/dev/",
                                location="eastus2")
    body = arm.get("aks-rg", "dev").json()
    assert (body["name"], body["location"]) == ("Dev", "eastus2")
    assert body["properties"]["oidcIssuerProfile"]["issuerURL"] == \
        "https://issuer.example.test/dev/"  # exactly as registered


@pytest.mark.parametrize("api", ["2017-08-31", "2024-05-01", "2026-01-02-preview"])
def test_any_well_formed_api_version(arm: Arm, api: str) -> None:
    arm.arm.add_managed_cluster("aks-rg", "prod-1", ISSUER)
    assert arm.get("aks-rg", "prod-1", api=api).status_code == 200


def test_bad_or_missing_api_version_is_400(arm: Arm) -> None:
    arm.arm.add_managed_cluster("aks-rg", "prod-1", ISSUER)
    missing = arm.get("aks-rg", "prod-1", api=None)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
    old = arm.get("aks-rg", "prod-1", api="2016-01-01")
    assert old.status_code == 400 and old.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_unknown_cluster_is_404_resource_not_found(arm: Arm) -> None:
    arm.arm.add_managed_cluster("aks-rg", "prod-1", ISSUER)
    for group, name in (("aks-rg", "prod-2"), ("no-such-rg", "prod-1")):
        answer = arm.get(group, name)
        assert answer.status_code == 404
        assert answer.json() == {"error": {
            "code": "ResourceNotFound",
            "message": f"The Resource 'Microsoft.ContainerService/managedClusters/{name}' under "
                       f"resource group '{group}' was not found. For more details please go "
                       "to https://aka.ms/ARMResourceNotFoundFix"}}


def test_unknown_group_is_resource_group_not_found_without_implicit_groups(ca: RunCA) -> None:
    strict = Arm(ca, implicit_groups=False)
    try:
        strict.arm.add_managed_cluster("aks-rg", "prod-1", ISSUER)  # creates its group
        assert strict.get("aks-rg", "prod-1").status_code == 200
        missing = strict.get("other-rg", "prod-1")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "ResourceGroupNotFound"
    finally:
        strict.arm.stop()


def test_reading_a_cluster_needs_a_role(arm: Arm) -> None:
    arm.arm.add_managed_cluster("aks-rg", "prod-1", ISSUER)
    nobody = arm.directory.add(ServicePrincipal(arm.tenant, "nobody", kind="application"))
    denied = arm.get("aks-rg", "prod-1", principal=nobody)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "AuthorizationFailed"
    assert "Microsoft.ContainerService/managedClusters/read" in denied.json()["error"]["message"]
    arm.arm.resources.assign_role(nobody.object_id, "Reader",
                                  arm.arm.resources.group_id("aks-rg"))
    assert arm.get("aks-rg", "prod-1", principal=nobody).status_code == 200
    # records are read-only
    token = arm.signer.issue(arm.admin, "https://management.azure.com").token
    put = requests.put(arm.get("aks-rg", "prod-1").url, json={"location": "westeurope"},
                       headers={"Authorization": f"Bearer {token}"}, verify=arm.verify,
                       timeout=10)
    assert put.status_code == 405
