"""Key Vault's Azure RBAC permission model on the stand-ins, through the real SDKs only
(azure-mgmt-keyvault, azure-mgmt-authorization, azure-keyvault-secrets, azure-identity): a
vault with enableRbacAuthorization ignores its access policies and lets role assignments at
the vault, its group or the subscription decide; denials are Key Vault's 403 ForbiddenByRbac
and the decision log names check "role_assignment"; soft delete drops the vault's assignments;
new assignments take effect after the propagation delay (in process, and in `crossfed serve
--propagation-delay` as a separate process); AzureProvisioner provisions both permission
models (positive and negative plans, run end to end by the probe).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import HttpChallengeCache
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from crossfed.azure.directory import ServicePrincipal
from crossfed.azure.provision import (
    HARNESS_WAIT,
    AzureAccount,
    AzureProvisioner,
    principal_type,
)
from crossfed.cleanup import Teardown
from crossfed.decisions import Decision
from crossfed.doctor.azure import Arm, _read_only_policy
from crossfed.doctor.azure_rbac import rbac_access_check
from crossfed.environments.azure_standins import AzureStandIns
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.pki import RunCA
from crossfed.plan import AZURE_AUDIENCE, AzureTarget, FederationPlan
from crossfed.verdict import AzureEvidence, check_azure
from crossfed.workload.process import AzureWorkload, SdkTargets, run_probe
from fixtures.serve import Serve, ServeInfo, mint_token, start_serve
from tests.local.test_arm import SignerCredential as ManagementSigner
from tests.local.test_keyvault import SignerCredential

pytestmark = [pytest.mark.local, pytest.mark.azure]

GROUP = "crossfed"  # AzureStandIns' resource group
LOCATION = "westeurope"
ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
}
DELAY = 1.5
SERVE_DELAY = 3.0
SLACK = 0.5


class Azure:
    """The Azure stand-ins, with management clients as the administrator."""

    def __init__(self, stand_ins: AzureStandIns) -> None:
        self.s = stand_ins
        admin = stand_ins.admin_credential()
        common = {"base_url": stand_ins.arm.endpoint, "connection_verify": stand_ins.ca_bundle}
        self.admin = admin
        self.vaults = KeyVaultManagementClient(admin, stand_ins.subscription_id, **common)
        self.msi = ManagedServiceIdentityClient(admin, stand_ins.subscription_id, **common)
        self.auth = AuthorizationManagementClient(admin, stand_ins.subscription_id, **common)

    @property
    def sub(self) -> str:
        return f"/subscriptions/{self.s.subscription_id}"

    @property
    def group(self) -> str:
        return f"{self.sub}/resourceGroups/{GROUP}"

    def vault(self, name: str, rbac: bool = True,
              policies: list[dict[str, Any]] | None = None) -> Any:
        made = self.vaults.vaults.begin_create_or_update(GROUP, name, {
            "location": LOCATION, "properties": {
                "tenantId": self.s.tenant_id, "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": rbac, "accessPolicies": policies or []}}).result()
        HttpChallengeCache.remove_challenge_for_url(made.properties.vault_uri)  # ports recur
        return made

    def assign(self, scope: str, principal_id: str, role: str) -> Any:
        return self.auth.role_assignments.create(scope, str(uuid.uuid4()), {"properties": {
            "roleDefinitionId": f"{self.sub}/providers/Microsoft.Authorization/"
                                f"roleDefinitions/{ROLES[role]}",
            "principalId": principal_id, "principalType": "ServicePrincipal"}})

    def identity(self, name: str) -> ServicePrincipal:
        made = self.msi.user_assigned_identities.create_or_update(GROUP, name,
                                                                  {"location": LOCATION})
        principal = self.s.directory.by_client_id(self.s.tenant_id, made.client_id)
        assert principal is not None
        return principal

    def client(self, vault: Any, principal: ServicePrincipal | None = None) -> SecretClient:
        credential = (SignerCredential(self.s.signer, principal) if principal is not None
                      else self.admin)
        return SecretClient(vault.properties.vault_uri, credential,
                            verify_challenge_resource=False, connection_verify=self.s.ca_bundle)

    def last_denial(self, vault: Any) -> Decision:
        mine = [d for d in self.s.vaults.decisions.all() if d.target.startswith(f"{vault.name}/")]
        assert mine and not mine[-1].allowed, mine[-1:]
        return mine[-1]


def start_azure(ca: RunCA, delay: float = 0.0) -> tuple[Azure, Teardown]:
    teardown = Teardown()
    return Azure(AzureStandIns.start(ca, teardown, propagation_delay=delay)), teardown


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(tmp_path_factory.mktemp("kv-rbac") / "pki")


@pytest.fixture(scope="module")
def azure(ca: RunCA) -> Iterator[Azure]:
    made, teardown = start_azure(ca)
    yield made
    assert teardown.run() == []


@pytest.fixture
def slow(ca: RunCA) -> Iterator[Azure]:
    made, teardown = start_azure(ca, DELAY)
    yield made
    assert teardown.run() == []


def status(exc: HttpResponseError) -> str:
    inner = re.search(r"\"code\":\s*\"(\w+)\"\s*}\s*}", str(exc.response.text()))
    return f"{exc.status_code} {exc.error.code if exc.error else None}" + (
        f"/{inner.group(1)}" if inner else "")


# -- the permission model -------------------------------------------------------------------


def test_rbac_vault_ignores_access_policies_and_owner_has_no_data_actions(azure: Azure) -> None:
    admin_oid = azure.s.admin.object_id
    vault = azure.vault("kvrbacowner", policies=[{
        "tenantId": azure.s.tenant_id, "objectId": admin_oid,
        "permissions": {"secrets": ["all"]}}])
    assert vault.properties.enable_rbac_authorization is True
    with pytest.raises(HttpResponseError) as caught:  # Owner on the subscription, a policy
        azure.client(vault).set_secret("db-password", "x")
    assert caught.value.status_code == 403 and caught.value.error.code == "Forbidden"
    body = caught.value.response.json()["error"]
    assert body["innererror"] == {"code": "ForbiddenByRbac"}
    message = body["message"]
    assert message.startswith("Caller is not authorized to perform action on resource.\r\n"
                              "If role assignments, deny assignments or role definitions were "
                              "changed recently, please observe propagation time.\r\n")
    assert f"Caller: appid={azure.s.admin.client_id};oid={admin_oid};iss=https://sts." \
           f"windows.net/{azure.s.tenant_id}/\r\n" in message
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'\r\n" in message
    resource = f"{azure.group}/providers/Microsoft.KeyVault/vaults/kvrbacowner/secrets/db-password"
    assert f"Resource: '{resource.lower()}'\r\n" in message
    assert "Assignment: (not found)\r\nDenyAssignmentId: null\r\n" \
           "DecisionReason: 'DeniedWithNoValidRBAC' \r\n" in message
    assert message.endswith("Vault: kvrbacowner;location=westeurope\r\n")
    denied = azure.last_denial(vault)
    assert denied.check == "role_assignment" and denied.code == "Forbidden/ForbiddenByRbac"
    assert "Owner and Contributor grant no data actions" in denied.detail


def test_secrets_officer_writes_secrets_user_reads_at_any_covering_scope(azure: Azure) -> None:
    vault = azure.vault("kvrbacroles")
    azure.assign(vault.id, azure.s.admin.object_id, "Key Vault Secrets Officer")
    writer = azure.client(vault)
    writer.set_secret("db-password", "s3cret")
    assert writer.get_secret("db-password").value == "s3cret"
    assert [p.name for p in writer.list_properties_of_secrets()] == ["db-password"]
    # Officer: all secret operations, delete and purge included
    writer.set_secret("scratch", "x")
    writer.begin_delete_secret("scratch").result()
    writer.purge_deleted_secret("scratch")

    in_group, in_sub, outsider = (azure.identity(n) for n in ("kv-rg", "kv-sub", "kv-none"))
    azure.assign(azure.group, in_group.object_id, "Key Vault Secrets User")
    azure.assign(azure.sub, in_sub.object_id, "Key Vault Secrets User")
    for reader in (in_group, in_sub):
        client = azure.client(vault, reader)
        assert client.get_secret("db-password").value == "s3cret"
        assert [p.name for p in client.list_properties_of_secrets()] == ["db-password"]
        with pytest.raises(HttpResponseError) as caught:  # Secrets User: no writes
            client.set_secret("db-password", "overwritten")
        assert caught.value.status_code == 403 and "ForbiddenByRbac" in str(caught.value)
        assert "secrets/setSecret/action" in str(caught.value)
    allowed = [d for d in azure.s.vaults.decisions.all()
               if d.target == "kvrbacroles/db-password" and d.allowed][-1]
    assert "Key Vault Secrets User" in allowed.detail
    with pytest.raises(HttpResponseError) as caught:
        azure.client(vault, outsider).get_secret("db-password")
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'" in str(caught.value)
    assert azure.last_denial(vault).check == "role_assignment"
    # another vault's assignment covers nothing here
    other = azure.vault("kvrbacother")
    azure.assign(other.id, outsider.object_id, "Key Vault Administrator")
    with pytest.raises(HttpResponseError):
        azure.client(vault, outsider).get_secret("db-password")
    # Administrator at this vault: every data action
    azure.assign(vault.id, outsider.object_id, "Key Vault Administrator")
    admin_client = azure.client(vault, outsider)
    admin_client.set_secret("by-admin", "y")
    assert admin_client.get_secret("by-admin").value == "y"


def test_contributor_and_access_policies_grant_nothing_on_rbac_vaults(azure: Azure) -> None:
    worker = azure.identity("kv-contrib")
    vault = azure.vault("kvrbaccontrib", policies=[{
        "tenantId": azure.s.tenant_id, "objectId": worker.object_id,
        "permissions": {"secrets": ["get", "list"]}}])
    azure.assign(vault.id, azure.s.admin.object_id, "Key Vault Secrets Officer")
    azure.client(vault).set_secret("db-password", "x")
    azure.assign(vault.id, worker.object_id, "Contributor")
    with pytest.raises(HttpResponseError) as caught:
        azure.client(vault, worker).get_secret("db-password")
    assert caught.value.status_code == 403 and "ForbiddenByRbac" in str(caught.value)
    # the same vault with access policies: the policy decides, and its check is named
    azure.vault("kvrbaccontrib", rbac=False, policies=[{
        "tenantId": azure.s.tenant_id, "objectId": worker.object_id,
        "permissions": {"secrets": ["list"]}}])
    with pytest.raises(HttpResponseError) as caught:
        azure.client(vault, worker).get_secret("db-password")
    assert "AccessDenied" in str(caught.value)
    assert azure.last_denial(vault).check == "access_policy"


def test_soft_delete_drops_the_vaults_role_assignments(azure: Azure) -> None:
    worker = azure.identity("kv-deleted")
    vault = azure.vault("kvrbacgone")
    azure.assign(vault.id, worker.object_id, "Key Vault Secrets User")
    azure.assign(f"{vault.id}/secrets/one", worker.object_id, "Key Vault Secrets Officer")
    group_wide = azure.assign(azure.group, worker.object_id, "Key Vault Secrets Officer")
    assert len(list(azure.auth.role_assignments.list_for_scope(
        vault.id, filter=f"principalId eq '{worker.object_id}'"))) == 3
    azure.vaults.vaults.delete(GROUP, "kvrbacgone")
    left = list(azure.auth.role_assignments.list_for_subscription(
        filter=f"principalId eq '{worker.object_id}'"))
    assert [a.name for a in left] == [group_wide.name]  # only what was above the vault
    azure.vaults.vaults.begin_purge_deleted("kvrbacgone", LOCATION).result()
    again = azure.vault("kvrbacgone")  # same name, same id: nothing comes back
    mine = list(azure.auth.role_assignments.list_for_scope(again.id, filter="atScope()"))
    assert worker.object_id not in {a.principal_id for a in mine
                                    if a.scope.lower() == again.id.lower()}
    azure.auth.role_assignments.delete(azure.group, group_wide.name)
    with pytest.raises(HttpResponseError):
        azure.client(again, worker).get_secret("one")


def test_new_assignment_is_listed_at_once_and_grants_after_the_delay(slow: Azure) -> None:
    worker = slow.identity("kv-patient")
    vault = slow.vault("kvrbacslow")
    officer = slow.assign(vault.id, slow.s.admin.object_id, "Key Vault Secrets Officer")
    until(lambda: slow.client(vault).set_secret("db-password", "later"))
    written = time.monotonic()
    made = slow.assign(vault.id, worker.object_id, "Key Vault Secrets User")
    reader = slow.client(vault, worker)
    with pytest.raises(HttpResponseError) as caught:
        reader.get_secret("db-password")
    assert time.monotonic() - written < DELAY - SLACK, "too slow to see the refusal"
    assert caught.value.status_code == 403 and "ForbiddenByRbac" in str(caught.value)
    assert "has not propagated yet" in slow.last_denial(vault).detail
    listed = {a.name for a in slow.auth.role_assignments.list_for_scope(vault.id)}
    assert {made.name, officer.name} <= listed  # ARM reads see it at once
    secret, accepted = until(lambda: reader.get_secret("db-password"))
    assert secret.value == "later" and accepted - written >= DELAY


def until(attempt: Callable[[], Any], wait: float = 20.0) -> tuple[Any, float]:
    deadline = time.monotonic() + wait
    while True:
        try:
            return attempt(), time.monotonic()
        except HttpResponseError as exc:
            if exc.status_code != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- AzureProvisioner, both permission models, run by the probe -----------------------------


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIns]:
    clouds = LocalStandIns.start(tmp_path_factory.mktemp("kv-rbac-clouds"))
    yield clouds
    clouds.stop()


def _probe(clouds: LocalStandIns, plan: FederationPlan, account: AzureAccount,
           teardown: Teardown) -> Any:
    target = plan.azure
    assert target is not None
    applied = AzureProvisioner(account, clouds.run_id).apply(
        target, plan.name, clouds.issuer.url, plan.workload, teardown)
    HttpChallengeCache.clear()
    targets = SdkTargets(ca_bundle=str(clouds.ca.bundle_path),
                         authority_host=clouds.azure.entra.authority_host,
                         skip_challenge_resource_check=True)
    token = clouds.issuer.issuer.mint(plan.workload, [AZURE_AUDIENCE])
    result = run_probe(token, targets, azure=AzureWorkload(
        applied.client_id, applied.tenant_id, applied.vault_url, applied.secret_name))
    assert result.report.get("azure"), (result.report, result.stderr)
    decisions = clouds.azure.entra.decisions.for_target(applied.client_id) + [
        d for d in clouds.azure.vaults.decisions.all()
        if d.target.startswith(f"{applied.vault_name}/")]
    check_azure(plan, result.report, AzureEvidence(applied.client_id, applied.secret_sha256,
                                                   decisions))
    return applied


@pytest.mark.parametrize("model", ["access-policy", "rbac"])
def test_provisioner_both_models_positive_and_negative(clouds: LocalStandIns, model: str) -> None:
    account = dataclasses.replace(clouds.azure.account(), keyvault_authorization=model)
    check = "role_assignment" if model == "rbac" else "access_policy"
    allowed = FederationPlan(f"kv-{model}", ServiceAccountRef("kvrbac", f"{model}-ok"),
                             audience=AZURE_AUDIENCE, aws=None, azure=AzureTarget())
    denied = allowed.but(name=f"kv-{model}-none", workload=ServiceAccountRef(
        "kvrbac", f"{model}-none"), azure=AzureTarget(secret_permissions=())).denied(
        "Forbidden", check, step="secret")
    teardown = Teardown()
    try:
        applied = _probe(clouds, allowed, account, teardown)
        assert applied.rbac is (model == "rbac")
        assert applied.vault_id.endswith(f"/providers/Microsoft.KeyVault/vaults/"
                                         f"{applied.vault_name}")
        assert (HARNESS_WAIT in applied.propagation) is (model == "rbac")
        _probe(clouds, denied, account, teardown)
        vaults = AzureProvisioner(account, clouds.run_id).vaults.vaults
        shown = vaults.get(GROUP, applied.vault_name)
        assert shown.properties.enable_rbac_authorization is (model == "rbac")
        assert shown.tags == {"crossfed-run-id": clouds.run_id}
        if model == "rbac":
            assert shown.properties.access_policies == []
            assignments = list(AzureProvisioner(account, clouds.run_id).authorization
                               .role_assignments.list_for_scope(applied.vault_id))
            at_vault = {(a.principal_id, a.role_definition_id.rsplit("/", 1)[-1])
                        for a in assignments if a.scope == applied.vault_id}
            assert at_vault == {(clouds.azure.admin.object_id,
                                 ROLES["Key Vault Secrets Officer"]),
                                (applied.principal_id, ROLES["Key Vault Secrets User"])}
    finally:
        assert teardown.run() == []
    # torn down: vaults purged, the assignments gone with their undo
    provisioner = AzureProvisioner(account, clouds.run_id)
    assert applied.vault_name not in {v.name for v in provisioner.vaults.vaults.list_deleted()}
    assert not [a for a in provisioner.authorization.role_assignments.list_for_subscription()
                if a.principal_id == applied.principal_id]


def test_provisioner_tags_group_and_reserved_vault_names(
        clouds: LocalStandIns, caplog: pytest.LogCaptureFixture) -> None:
    tags = {"crossfed-run-id": clouds.run_id, "crossfed-delete-after": "2031-01-01T00:00:00Z"}
    account = dataclasses.replace(clouds.azure.account(), resource_group="kv-rbac-owned",
                                  keyvault_authorization="rbac", purge_vaults=False)
    provisioner = AzureProvisioner(account, clouds.run_id, tags=tags)
    teardown = Teardown()
    assert provisioner.ensure_resource_group(teardown) is True
    groups = provisioner.resources.resource_groups
    assert groups.get("kv-rbac-owned").tags == tags
    assert AzureProvisioner(account, clouds.run_id).ensure_resource_group(Teardown()) is False
    applied = provisioner.apply(AzureTarget(), "tagged", clouds.issuer.url,
                                ServiceAccountRef("kvrbac", "tagged"), teardown)
    identity = provisioner.msi.user_assigned_identities.get("kv-rbac-owned",
                                                            applied.identity_name)
    assert identity.tags == tags
    assert provisioner.vaults.vaults.get("kv-rbac-owned", applied.vault_name).tags == tags
    with caplog.at_level(logging.WARNING, logger="crossfed.azure"):
        assert teardown.run() == []
    reserved = [r.getMessage() for r in caplog.records if "stays reserved" in r.getMessage()]
    assert len(reserved) == 1 and applied.vault_name in reserved[0]
    assert re.search(r"until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(deleted \d{4}-", reserved[0])
    assert not groups.check_existence("kv-rbac-owned")  # created here, so deleted here
    deleted = {v.name for v in provisioner.vaults.vaults.list_deleted()}
    assert applied.vault_name in deleted  # not purged: the name stays taken
    provisioner.vaults.vaults.begin_purge_deleted(applied.vault_name, LOCATION).result()


def test_refused_purge_is_one_reserved_name_line(clouds: LocalStandIns,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Contributor on the resource group may delete its vault but not purge it: purge is a
    subscription-level action (.../locations/{loc}/deletedVaults/{name}/purge)."""
    azure = clouds.azure
    harness = azure.directory.add(ServicePrincipal(azure.tenant_id, "rg-contributor",
                                                   kind="application"))
    azure.arm.resources.assign_role(harness.object_id, "Contributor",
                                    azure.arm.resources.group_id("kv-rbac-purge"))
    account = dataclasses.replace(azure.account(), resource_group="kv-rbac-purge",
                                  credential=ManagementSigner(azure.signer, harness))
    provisioner = AzureProvisioner(account, clouds.run_id)
    teardown = Teardown()
    applied = provisioner.apply(AzureTarget(), "purge-refused", clouds.issuer.url,
                                ServiceAccountRef("kvrbac", "purge"), teardown)
    with caplog.at_level(logging.WARNING, logger="crossfed.azure"):
        assert teardown.run() == []
    lines = [r.getMessage() for r in caplog.records if "stays reserved" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"vault name {applied.vault_name} stays reserved until" in lines[0]
    assert "the purge was refused (AuthorizationFailed" in lines[0]
    admin = AzureProvisioner(azure.account(), clouds.run_id)
    assert applied.vault_name in {v.name for v in admin.vaults.vaults.list_deleted()}
    admin.vaults.vaults.begin_purge_deleted(applied.vault_name, LOCATION).result()


def test_principal_type_of_the_harness_follows_its_token() -> None:
    assert principal_type({"oid": "x"}) == "ServicePrincipal"
    assert principal_type({"oid": "x", "scp": "user_impersonation"}) == "User"
    assert principal_type({"idtyp": "app", "scp": "x"}) == "ServicePrincipal"
    assert principal_type({"idtyp": "user"}) == "User"
    with pytest.raises(ValueError):
        dataclasses.replace(AzureAccount(None, "t", "s", "g"),  # type: ignore[arg-type]
                            keyvault_authorization="policies")


# -- crossfed serve as a separate process ----------------------------------------------------


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    running = start_serve(tmp_path_factory.mktemp("serve-rbac"), "--propagation-delay",
                          str(SERVE_DELAY))
    yield running
    assert running.stop() == 0


def test_serve_rbac_vault_waits_out_propagation(serving: Serve, tmp_path: Path) -> None:
    info: ServeInfo = serving.info
    az, ca = info["azure"], info["ca_bundle"]
    admin = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                   az["admin_client_secret"], authority=az["authority_host"],
                                   connection_verify=ca, disable_instance_discovery=True)
    account = AzureAccount(admin, az["tenant_id"], az["subscription_id"], az["resource_group"],
                           arm_endpoint=az["arm_endpoint"], ca_bundle=ca,
                           skip_challenge_resource_check=True, keyvault_authorization="rbac")
    provisioner = AzureProvisioner(account, "servedrbac", propagation_timeout=60)
    account_ref = ServiceAccountRef("demo", "rbac")
    teardown = Teardown()
    try:
        started = time.monotonic()
        applied = provisioner.apply(AzureTarget(), "served", info["issuer"], account_ref,
                                    teardown)
        waited = applied.propagation[HARNESS_WAIT]
        # the harness's Officer assignment took the delay to take effect, and no longer
        assert SERVE_DELAY - SLACK <= waited <= time.monotonic() - started
        assert waited < SERVE_DELAY + 10
        token_file = tmp_path / "token"
        token_file.write_text(mint_token(info["state_dir"], "demo/rbac", AZURE_AUDIENCE))
        workload = WorkloadIdentityCredential(
            tenant_id=az["tenant_id"], client_id=applied.client_id,
            token_file_path=str(token_file), authority=az["authority_host"],
            connection_verify=ca)
        reader = SecretClient(applied.vault_url, workload, verify_challenge_resource=False,
                              connection_verify=ca)
        deadline = time.monotonic() + SERVE_DELAY + 20
        while True:  # the credential and the identity's assignment propagate too
            try:
                secret = reader.get_secret(applied.secret_name)
                break
            except Exception as exc:  # AADSTS70021, then ForbiddenByRbac, while propagating
                if time.monotonic() > deadline:
                    raise
                assert "70021" in str(exc) or "ForbiddenByRbac" in str(exc), type(exc)
                time.sleep(0.2)
        assert hashlib.sha256(secret.value.encode()).hexdigest() == applied.secret_sha256
    finally:
        assert teardown.run() == []
    assert token_file.read_text() not in serving.logs()  # the token is never logged


# -- the doctor's role_assignment check ------------------------------------------------------


def doctor_arm(azure: Azure) -> Arm:
    """The doctor's read-only pipeline (its GET-only policy) over the administrator."""
    common = {"base_url": azure.s.arm.endpoint, "connection_verify": azure.s.ca_bundle,
              "per_call_policies": [_read_only_policy()]}
    return Arm(ManagedServiceIdentityClient(azure.admin, azure.s.subscription_id, **common),
               KeyVaultManagementClient(azure.admin, azure.s.subscription_id, **common),
               azure.s.subscription_id)


def test_doctor_role_assignment_check(azure: Azure) -> None:
    arm = doctor_arm(azure)
    vault = azure.vault("kvrbacdoctor")
    shown = next(v for v in arm.vaults(GROUP) if v.name == "kvrbacdoctor")
    nobody, contributor, at_group, at_secret, other_secret = (
        azure.identity(n) for n in ("doc-none", "doc-contrib", "doc-group", "doc-secret",
                                    "doc-other"))
    azure.assign(vault.id, contributor.object_id, "Contributor")
    azure.assign(azure.group, at_group.object_id, "Key Vault Secrets Officer")
    azure.assign(f"{vault.id}/secrets/probe", at_secret.object_id, "Key Vault Secrets User")
    azure.assign(f"{vault.id}/secrets/elsewhere", other_secret.object_id,
                 "Key Vault Secrets User")

    failed = rbac_access_check(arm, shown, GROUP, "probe", nobody.object_id)
    assert failed.name == "role_assignment" and failed.status == "FAIL"
    assert "ForbiddenByRbac" in failed.summary
    assert failed.fix == (f"az role assignment create --role \"Key Vault Secrets User\" "
                          f"--assignee-object-id {nobody.object_id} --assignee-principal-type "
                          f"ServicePrincipal --scope {vault.id}")
    only_contributor = rbac_access_check(arm, shown, GROUP, "probe", contributor.object_id)
    assert only_contributor.status == "FAIL"
    assert "Owner and Contributor grant no data actions" in only_contributor.summary
    assert only_contributor.details == (
        f"Contributor at {vault.id}: grants no Microsoft.KeyVault/vaults/secrets/getSecret/"
        "action",)
    assert rbac_access_check(arm, shown, GROUP, "probe", other_secret.object_id).status == \
        "FAIL"
    for principal, role in ((at_group, "Key Vault Secrets Officer"),
                            (at_secret, "Key Vault Secrets User")):
        check = rbac_access_check(arm, shown, GROUP, "probe", principal.object_id)
        assert check.status == "ok" and role in check.summary, check.line()
        assert any("up to 10 min" in d for d in check.details)
    # the verdicts agree with the vault's own
    HttpChallengeCache.remove_challenge_for_url(vault.properties.vault_uri)
    azure.assign(vault.id, azure.s.admin.object_id, "Key Vault Secrets Officer")
    azure.client(vault).set_secret("probe", "x")
    assert azure.client(vault, at_secret).get_secret("probe").value == "x"
    with pytest.raises(HttpResponseError):
        azure.client(vault, contributor).get_secret("probe")
