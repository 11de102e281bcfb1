"""The ARM stand-in as the cloud tier sees it: the cloud's metadata document, resource groups as
real objects (tags, tag $filter, delete as a long-running operation), soft-deleted vaults with
list/get/purge, and RBAC (a federated workload may not add a credential to its own identity).

Module stand-ins come from tests/local/test_arm.py's recipe; the RBAC case runs end to end on
the session's stand-ins: a service-account token exchanged by azure-identity at the Entra
stand-in for a management token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from crossfed.azure.arm.server import ArmStandIn
from crossfed.azure.directory import Directory, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.pki import RunCA
from tests.local.test_arm import KV_API, RecordingVaultHost, SignerCredential

pytestmark = [pytest.mark.local, pytest.mark.azure]

RG_API = "2022-09-01"  # what azure-mgmt-resource 23.x sends for resource groups
AUD = "api://AzureADTokenExchange"
AUTHORITY = "https://login.stand-in.test"


class Arm:
    def __init__(self, ca: RunCA, implicit_groups: bool) -> None:
        self.ca, self.directory, self.signer = ca, Directory(), AccessTokenSigner()
        self.tenant = self.directory.add_tenant()
        self.subscription = str(uuid.uuid4())
        self.admin = self.directory.add(ServicePrincipal(self.tenant, "admin",
                                                         kind="application"))
        self.host = RecordingVaultHost()
        self.arm = ArmStandIn(ca, self.directory, self.signer, self.tenant, self.subscription,
                              self.host, authority_host=AUTHORITY,
                              implicit_groups=implicit_groups).start()
        self.credential = SignerCredential(self.signer, self.admin)
        self.verify = str(ca.bundle_path)

    def kv(self) -> KeyVaultManagementClient:
        return KeyVaultManagementClient(self.credential, self.subscription,
                                        base_url=self.arm.endpoint, connection_verify=self.verify)

    def msi(self, credential: Any = None) -> ManagedServiceIdentityClient:
        return ManagedServiceIdentityClient(credential or self.credential, self.subscription,
                                            base_url=self.arm.endpoint,
                                            connection_verify=self.verify)

    def raw(self, method: str, path: str, api: str = RG_API, token: bool = True,
            **kwargs: Any) -> requests.Response:
        headers = {}
        if token:
            bearer = self.signer.issue(self.admin, "https://management.azure.com").token
            headers["Authorization"] = f"Bearer {bearer}"
        params = {"api-version": api, **kwargs.pop("params", {})}
        url = path if path.startswith("https://") else self.arm.endpoint + path
        return requests.request(method, url, headers=headers, params=params, verify=self.verify,
                                timeout=10, **kwargs)

    def group(self, name: str) -> str:
        return f"/subscriptions/{self.subscription}/resourcegroups/{name}"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(Path(tmp_path_factory.mktemp("arm-tier-ca")))


@pytest.fixture
def arm(ca: RunCA) -> Iterator[Arm]:
    env = Arm(ca, implicit_groups=True)
    yield env
    env.arm.stop()


@pytest.fixture
def strict(ca: RunCA) -> Iterator[Arm]:
    env = Arm(ca, implicit_groups=False)
    yield env
    env.arm.stop()


def vault_body(env: Arm, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {"location": "westeurope", "tags": tags or {}, "properties": {
        "tenantId": env.tenant, "sku": {"family": "A", "name": "standard"},
        "accessPolicies": []}}


# --- 1. the metadata document -----------------------------------------------------------

def test_metadata_document_names_the_stand_ins_without_a_token(arm: Arm) -> None:
    response = arm.raw("GET", "/metadata/endpoints", token=False)
    assert response.status_code == 200
    doc = response.json()
    assert doc["resourceManager"] == arm.arm.endpoint.rstrip("/") + "/"
    assert doc["authentication"]["loginEndpoint"] == AUTHORITY + "/"
    assert doc["authentication"]["audiences"] == ["https://management.core.windows.net/",
                                                  "https://management.azure.com/"]
    assert doc["suffixes"]["keyVaultDns"] == "vault.azure.net"
    assert doc["microsoftGraphResourceId"] == "https://graph.microsoft.com/"
    assert {"name", "portal", "graph", "graphAudience", "batch", "sqlManagement",
            "activeDirectoryDataLake", "vmImageAliasDoc"} <= set(doc)
    # every audience it lists is one ARM accepts
    for audience in doc["authentication"]["audiences"]:
        token = arm.signer.issue(arm.admin, audience).token
        listed = requests.get(arm.arm.endpoint + arm.group("any") + "/providers/"
                              "Microsoft.KeyVault/vaults", params={"api-version": KV_API},
                              headers={"Authorization": f"Bearer {token}"}, verify=arm.verify,
                              timeout=10)
        assert listed.status_code == 200
    assert arm.raw("GET", "/metadata/endpoints", api="", token=False).status_code == 400


def test_metadata_drives_the_sdks_end_to_end(crossfed_clouds: LocalStandIns) -> None:
    """What a registered cloud does: log in where loginEndpoint says, for audiences[0], and
    manage through resourceManager."""
    azure, ca = crossfed_clouds.azure, str(crossfed_clouds.ca.bundle_path)
    doc = requests.get(azure.arm.endpoint + "/metadata/endpoints",
                       params={"api-version": "2022-09-01"}, verify=ca, timeout=10).json()
    assert doc["authentication"]["loginEndpoint"].rstrip("/") == azure.entra.authority_host
    admin = ClientSecretCredential(azure.tenant_id, azure.admin.client_id, azure.admin_secret,
                                   authority=doc["authentication"]["loginEndpoint"],
                                   connection_verify=ca, disable_instance_discovery=True)
    msi = ManagedServiceIdentityClient(
        admin, azure.subscription_id, base_url=doc["resourceManager"], connection_verify=ca,
        credential_scopes=[doc["authentication"]["audiences"][0] + ".default"])
    assert isinstance(list(msi.user_assigned_identities.list_by_resource_group("md-rg")), list)


# --- 2. resource groups -----------------------------------------------------------------

def test_resource_group_put_get_head_list_by_tag(arm: Arm) -> None:
    created = arm.raw("PUT", arm.group("rg-a"), json={"location": "westeurope",
                                                      "tags": {"wif-e2e": "true", "run": "1"}})
    assert created.status_code == 201
    body = created.json()
    assert body["id"] == f"/subscriptions/{arm.subscription}/resourceGroups/rg-a"
    assert body["type"] == "Microsoft.Resources/resourceGroups"
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert arm.raw("PUT", arm.group("rg-b"), json={"location": "westeurope",
                                                   "tags": {"wif-e2e": "false"}}).status_code == 201
    again = arm.raw("PUT", arm.group("RG-A"), json={"location": "westeurope",
                                                    "tags": {"wif-e2e": "true"}})
    assert again.status_code == 200 and again.json()["tags"] == {"wif-e2e": "true"}
    moved = arm.raw("PUT", arm.group("rg-a"), json={"location": "eastus"})
    assert moved.status_code == 409 and moved.json()["error"]["code"] == \
        "InvalidResourceGroupLocation"
    assert arm.raw("GET", arm.group("rg-a")).json()["name"] == "rg-a"
    assert arm.raw("HEAD", arm.group("rg-a")).status_code == 204
    assert arm.raw("HEAD", arm.group("nope")).status_code == 404
    missing = arm.raw("GET", arm.group("nope"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ResourceGroupNotFound"

    groups = f"/subscriptions/{arm.subscription}/resourcegroups"

    def names(filter_: str) -> list[str]:
        response = arm.raw("GET", groups, params={"$filter": filter_})
        assert response.status_code == 200, response.text
        return sorted(g["name"] for g in response.json()["value"])

    assert names("tagName eq 'wif-e2e' and tagValue eq 'true'") == ["rg-a"]
    assert names("tagName eq 'WIF-E2E'") == ["rg-a", "rg-b"]
    assert names("tagName eq 'wif-e2e' and tagValue eq 'TRUE'") == []
    assert arm.raw("GET", groups, params={"$filter": "location eq 'x'"}).status_code == 400


def test_deleting_a_group_deletes_what_it_holds_as_a_long_running_operation(arm: Arm) -> None:
    arm.raw("PUT", arm.group("doomed"), json={"location": "westeurope"})
    identity = arm.msi().user_assigned_identities.create_or_update(
        "doomed", "id-1", {"location": "westeurope", "tags": {"k": "v"}})
    assert identity.tags == {"k": "v"}
    vault = arm.kv().vaults.begin_create_or_update("doomed", "kv-doomed",
                                                   vault_body(arm, {"t": "1"})).result()
    assert vault.tags == {"t": "1"}
    assert vault.properties.enable_soft_delete is True
    deleted = arm.raw("DELETE", arm.group("doomed"))
    assert deleted.status_code == 202
    assert deleted.headers["Location"].startswith(
        f"/subscriptions/{arm.subscription}/operationresults/")
    assert arm.raw("GET", arm.arm.endpoint + deleted.headers["Location"].split("?")[0]
                   ).status_code == 200
    assert arm.raw("HEAD", arm.group("doomed")).status_code == 404
    assert arm.directory.by_client_id(arm.tenant, identity.client_id) is None
    assert arm.host.closed == ["kv-doomed"]
    assert [v.name for v in arm.kv().vaults.list_deleted()] == ["kv-doomed"]
    assert arm.raw("DELETE", arm.group("doomed")).status_code == 404


def test_strict_groups_answer_resource_group_not_found(strict: Arm) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        strict.msi().user_assigned_identities.create_or_update("never-put", "id-x",
                                                               {"location": "westeurope"})
    assert caught.value.error.code == "ResourceGroupNotFound"
    assert strict.raw("PUT", strict.group("now-put"), json={"location": "westeurope"}
                      ).status_code == 201
    assert strict.msi().user_assigned_identities.create_or_update(
        "now-put", "id-x", {"location": "westeurope"}).client_id


def test_implicit_groups_keep_todays_callers_working(arm: Arm) -> None:
    arm.msi().user_assigned_identities.create_or_update("implicit", "id-x",
                                                        {"location": "westeurope"})
    assert arm.raw("GET", arm.group("implicit")).json()["location"] == "westeurope"


# --- 3. soft-deleted vaults -------------------------------------------------------------

def test_a_deleted_vault_stays_soft_deleted_until_purged(arm: Arm) -> None:
    kv = arm.kv()
    kv.vaults.begin_create_or_update("rg", "kv-soft", vault_body(arm, {"a": "b"})).result()
    kv.vaults.delete("rg", "kv-soft")
    with pytest.raises(ResourceExistsError) as caught:
        kv.vaults.begin_create_or_update("rg", "kv-soft", vault_body(arm)).result()
    assert caught.value.status_code == 409
    assert caught.value.error.code == "ConflictError"
    assert "already exists in deleted state" in caught.value.error.message
    with pytest.raises(ResourceExistsError):  # in another group too: names are global
        kv.vaults.begin_create_or_update("rg-2", "kv-soft", vault_body(arm)).result()

    listed = list(kv.vaults.list_deleted())
    assert [v.name for v in listed] == ["kv-soft"]
    deleted = kv.vaults.get_deleted("kv-soft", "westeurope")
    assert deleted.type == "Microsoft.KeyVault/deletedVaults"
    assert deleted.id == (f"/subscriptions/{arm.subscription}/providers/Microsoft.KeyVault/"
                          "locations/westeurope/deletedVaults/kv-soft")
    assert deleted.properties.vault_id.endswith("/resourceGroups/rg/providers/"
                                                "Microsoft.KeyVault/vaults/kv-soft")
    assert deleted.properties.tags == {"a": "b"}
    assert deleted.properties.purge_protection_enabled is False
    retention = deleted.properties.scheduled_purge_date - deleted.properties.deletion_date
    assert retention.days == 90
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get_deleted("kv-soft", "eastus")

    kv.vaults.begin_purge_deleted("kv-soft", "westeurope").result()
    assert list(kv.vaults.list_deleted()) == []
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get_deleted("kv-soft", "westeurope")
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.begin_purge_deleted("kv-soft", "westeurope").result()
    assert kv.vaults.begin_create_or_update("rg", "kv-soft", vault_body(arm)).result().name


def test_purge_answers_202_with_a_location_that_answers_200(arm: Arm) -> None:
    arm.kv().vaults.begin_create_or_update("rg", "kv-lro", vault_body(arm)).result()
    arm.kv().vaults.delete("rg", "kv-lro")
    path = (f"/subscriptions/{arm.subscription}/providers/Microsoft.KeyVault/locations/"
            "westeurope/deletedVaults/kv-lro/purge")
    purged = arm.raw("POST", path, api=KV_API)
    assert purged.status_code == 202 and purged.headers["Retry-After"] == "0"
    status = arm.raw("GET", arm.arm.endpoint + purged.headers["Location"].split("?")[0],
                     api=KV_API)
    assert status.status_code == 200


# --- 4. RBAC ----------------------------------------------------------------------------

def test_a_federated_workload_cannot_add_a_credential_to_its_own_identity(
        crossfed_clouds: LocalStandIns, tmp_path: Path) -> None:
    azure, ca = crossfed_clouds.azure, str(crossfed_clouds.ca.bundle_path)
    admin = azure.admin_credential()
    common = {"base_url": azure.arm.endpoint, "connection_verify": ca}
    msi = ManagedServiceIdentityClient(admin, azure.subscription_id, **common)
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    identity = msi.user_assigned_identities.create_or_update("crossfed", name,
                                                             {"location": "westeurope"})
    issuer = crossfed_clouds.issuer
    account = ServiceAccountRef("rbac", "workload")
    msi.federated_identity_credentials.create_or_update("crossfed", name, "k8s", {
        "issuer": issuer.url, "subject": account.subject, "audiences": [AUD]})
    token_file = tmp_path / "token"
    token_file.write_text(issuer.issuer.mint(account, [AUD]))
    workload = WorkloadIdentityCredential(
        tenant_id=azure.tenant_id, client_id=identity.client_id,
        token_file_path=str(token_file), authority=azure.entra.authority_host,
        connection_verify=ca)
    as_workload = ManagedServiceIdentityClient(workload, azure.subscription_id, **common)
    try:
        with pytest.raises(HttpResponseError) as caught:
            as_workload.federated_identity_credentials.create_or_update(
                "crossfed", name, "backdoor", {"issuer": "https://attacker.example",
                                               "subject": "me", "audiences": [AUD]})
        assert caught.value.status_code == 403
        assert caught.value.error.code == "AuthorizationFailed"
        action = ("Microsoft.ManagedIdentity/userAssignedIdentities/"
                  "federatedIdentityCredentials/write")
        message = caught.value.error.message
        assert f"with object id '{identity.principal_id}'" in message
        assert f"perform action '{action}' over scope '/subscriptions/" in message
        assert message.endswith("/federatedIdentityCredentials/backdoor' or the scope is invalid."
                                " If access was recently granted, please refresh your "
                                "credentials.")
        names = [c.name for c in msi.federated_identity_credentials.list("crossfed", name)]
        assert names == ["k8s"]
        assert azure.arm.decisions.all()[-1].check == "authorization"
    finally:
        msi.user_assigned_identities.delete("crossfed", name)


def test_roles_reader_reads_contributor_writes_scope_limits(arm: Arm) -> None:
    reader = arm.directory.add(ServicePrincipal(arm.tenant, "reader"))
    arm.arm.resources.assign_role(reader.object_id, "Reader")
    contributor = arm.directory.add(ServicePrincipal(arm.tenant, "contrib"))
    arm.arm.resources.assign_role(contributor.object_id, "Contributor",
                                  arm.arm.resources.group_id("mine"))
    arm.msi().user_assigned_identities.create_or_update("mine", "id-x", {"location": "westeurope"})
    as_reader = arm.msi(SignerCredential(arm.signer, reader))
    assert as_reader.user_assigned_identities.get("mine", "id-x").name == "id-x"
    with pytest.raises(HttpResponseError) as caught:
        as_reader.user_assigned_identities.delete("mine", "id-x")
    assert caught.value.status_code == 403
    as_contributor = arm.msi(SignerCredential(arm.signer, contributor))
    as_contributor.user_assigned_identities.create_or_update("mine", "id-y",
                                                             {"location": "westeurope"})
    with pytest.raises(HttpResponseError) as caught:  # "mine" is not a prefix of "mine-2"
        as_contributor.user_assigned_identities.create_or_update("mine-2", "id-y",
                                                                 {"location": "westeurope"})
    assert caught.value.status_code == 403
