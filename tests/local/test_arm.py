"""The ARM stand-in, driven by the real azure-mgmt-msi and azure-mgmt-keyvault clients.

Tokens come straight from the shared AccessTokenSigner (the Entra stand-in is tested
elsewhere) and vaults open on a recording VaultHost (the data plane is tested elsewhere).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from crossfed.azure.arm.server import ArmStandIn
from crossfed.azure.directory import MAX_FEDERATED_CREDENTIALS, Directory, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner, resource_of
from crossfed.azure.keyvault.model import Vault
from crossfed.pki import RunCA

pytestmark = [pytest.mark.local, pytest.mark.azure]

MANAGEMENT_SCOPE = "https://management.azure.com/.default"
ISSUER = "https://issuer.example.test/cluster-1"
AUD = "api://AzureADTokenExchange"
MSI_API = "2024-11-30"  # what azure-mgmt-msi 7.1.0 sends
KV_API = "2026-05-15"  # what azure-mgmt-keyvault 14.1.0 sends
GROUP = "crossfed-rg"


class RecordingVaultHost:
    """Gives each vault a fake https URI and remembers what ARM opened and closed."""

    def __init__(self) -> None:
        self.opened: dict[str, Vault] = {}
        self.closed: list[str] = []

    def open_vault(self, vault: Vault) -> str:
        self.opened[vault.name] = vault
        return f"https://{vault.name.lower()}.vault.example.test/"

    def close_vault(self, vault: Vault) -> None:
        self.closed.append(vault.name)


class SignerCredential:
    """A TokenCredential that signs tokens for one principal, for the scope's resource."""

    def __init__(self, signer: AccessTokenSigner, principal: ServicePrincipal,
                 audience: str | None = None) -> None:
        self.signer, self.principal, self.audience = signer, principal, audience
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        issued = self.signer.issue(self.principal, self.audience or resource_of(scopes[0]))
        return AccessToken(issued.token, int(issued.claims["exp"]))


@dataclass
class Env:
    ca: RunCA
    directory: Directory
    signer: AccessTokenSigner
    tenant: str
    subscription: str
    admin: ServicePrincipal
    host: RecordingVaultHost
    arm: ArmStandIn
    credential: SignerCredential

    def msi(self, credential: Any = None,
            subscription: str | None = None) -> ManagedServiceIdentityClient:
        return ManagedServiceIdentityClient(
            credential or self.credential, subscription or self.subscription,
            base_url=self.arm.endpoint, connection_verify=str(self.ca.bundle_path))

    def kv(self, credential: Any = None) -> KeyVaultManagementClient:
        return KeyVaultManagementClient(
            credential or self.credential, self.subscription, base_url=self.arm.endpoint,
            connection_verify=str(self.ca.bundle_path))

    def token(self, principal: ServicePrincipal | None = None,
              audience: str = "https://management.azure.com", **kwargs: Any) -> str:
        return self.signer.issue(principal or self.admin, audience, **kwargs).token

    def raw(self, method: str, path: str, token: str | None = None, api: str | None = MSI_API,
            **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        params = {"api-version": api} if api else {}
        return requests.request(method, self.arm.endpoint + path, headers=headers,
                                params=params, verify=str(self.ca.bundle_path), timeout=10,
                                **kwargs)

    def group_path(self, group: str = GROUP, subscription: str | None = None) -> str:
        return f"/subscriptions/{subscription or self.subscription}/resourceGroups/{group}"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(Path(tmp_path_factory.mktemp("arm-ca")))


@pytest.fixture
def env(ca: RunCA) -> Iterator[Env]:
    directory, signer = Directory(), AccessTokenSigner()
    tenant = directory.add_tenant()
    subscription = str(uuid.uuid4())
    admin = directory.add(ServicePrincipal(tenant, "crossfed-admin", kind="application"))
    host = RecordingVaultHost()
    arm = ArmStandIn(ca, directory, signer, tenant, subscription, host).start()
    try:
        yield Env(ca, directory, signer, tenant, subscription, admin, host, arm,
                  SignerCredential(signer, admin))
    finally:
        arm.stop()


def status_and_body(response: Any, deserialized: Any, headers: Any) -> tuple[int, Any]:
    """cls= hook: the SDK models hide the HTTP status (201 create vs 200 update)."""
    return response.http_response.status_code, deserialized


def fic(subject: str, audiences: list[str] | None = None, issuer: str = ISSUER) -> dict[str, Any]:
    return {"issuer": issuer, "subject": subject, "audiences": audiences or [AUD]}


def vault_body(env: Env, policies: list[dict[str, Any]]) -> dict[str, Any]:
    return {"location": "westeurope", "tags": {"run": "t"},
            "properties": {"tenantId": env.tenant, "sku": {"family": "A", "name": "standard"},
                           "accessPolicies": policies}}


def policy(env: Env, object_id: str, secrets: list[str]) -> dict[str, Any]:
    return {"tenantId": env.tenant, "objectId": object_id, "permissions": {"secrets": secrets}}


def new_identity(env: Env, name: str = "workload-id") -> Any:
    return env.msi().user_assigned_identities.create_or_update(
        GROUP, name, {"location": "westeurope"})


# -- identities


def test_identity_create_get_list_delete(env: Env) -> None:
    msi = env.msi()
    status, created = msi.user_assigned_identities.create_or_update(
        GROUP, "workload-id", {"location": "westeurope", "tags": {"a": "1"}},
        cls=status_and_body)
    assert status == 201
    assert created.client_id != created.principal_id
    assert str(uuid.UUID(created.client_id)) == created.client_id
    assert created.tenant_id == env.tenant
    assert created.type == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert created.id.endswith(
        f"/resourcegroups/{GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
        "workload-id")
    principal = env.directory.by_client_id(env.tenant, created.client_id)
    assert principal is not None and principal.kind == "managed_identity"
    assert principal.object_id == created.principal_id
    assert env.directory.by_object_id(created.principal_id) is principal

    fetched = msi.user_assigned_identities.get(GROUP, "Workload-ID")  # names ignore case
    assert (fetched.client_id, fetched.principal_id) == (created.client_id, created.principal_id)
    assert fetched.tags == {"a": "1"}

    status, again = msi.user_assigned_identities.create_or_update(
        GROUP, "workload-id", {"location": "westeurope", "tags": {"b": "2"}},
        cls=status_and_body)
    assert status == 200
    assert (again.client_id, again.principal_id) == (created.client_id, created.principal_id)
    assert again.tags == {"b": "2"}

    msi.user_assigned_identities.create_or_update("other-rg", "elsewhere",
                                                  {"location": "westeurope"})
    listed = list(msi.user_assigned_identities.list_by_resource_group(GROUP))
    assert [i.name for i in listed] == ["workload-id"]

    msi.user_assigned_identities.delete(GROUP, "workload-id")
    assert env.directory.by_client_id(env.tenant, created.client_id) is None
    with pytest.raises(ResourceNotFoundError) as caught:
        msi.user_assigned_identities.get(GROUP, "workload-id")
    assert caught.value.error.code == "ResourceNotFound"
    assert list(msi.user_assigned_identities.list_by_resource_group(GROUP)) == []
    msi.user_assigned_identities.delete(GROUP, "workload-id")  # 204: already gone, no error


def test_identity_is_scoped_to_its_resource_group(env: Env) -> None:
    new_identity(env)
    with pytest.raises(ResourceNotFoundError):
        env.msi().user_assigned_identities.get("another-rg", "workload-id")


def test_identity_needs_a_location(env: Env) -> None:
    with pytest.raises(HttpResponseError) as caught:
        env.msi().user_assigned_identities.create_or_update(GROUP, "no-location", {})
    assert caught.value.status_code == 400
    assert caught.value.error.code == "LocationRequired"


def test_the_sdk_asks_for_the_management_scope(env: Env) -> None:
    new_identity(env)
    list(env.kv().vaults.list_by_resource_group(GROUP))
    assert env.credential.scopes and set(env.credential.scopes) == {(MANAGEMENT_SCOPE,)}


# -- federated identity credentials


def test_fic_create_update_list_delete(env: Env) -> None:
    msi = env.msi()
    identity = new_identity(env)
    creds = msi.federated_identity_credentials
    status, created = creds.create_or_update(GROUP, "workload-id", "kube-sa", fic("system:sa:a"),
                                             cls=status_and_body)
    assert status == 201
    assert (created.issuer, created.subject, created.audiences) == (ISSUER, "system:sa:a", [AUD])
    assert created.type == ("Microsoft.ManagedIdentity/userAssignedIdentities/"
                            "federatedIdentityCredentials")
    principal = env.directory.by_client_id(env.tenant, identity.client_id)
    assert principal is not None
    assert principal.federated_credentials["kube-sa"].subject == "system:sa:a"

    status, updated = creds.create_or_update(GROUP, "workload-id", "Kube-SA", fic("system:sa:b"),
                                             cls=status_and_body)
    assert status == 200 and updated.name == "kube-sa"  # same resource, name kept
    assert principal.federated_credentials["kube-sa"].subject == "system:sa:b"
    assert [c.name for c in creds.list(GROUP, "workload-id")] == ["kube-sa"]
    assert creds.get(GROUP, "workload-id", "kube-sa").subject == "system:sa:b"

    creds.delete(GROUP, "workload-id", "kube-sa")
    assert principal.federated_credentials == {}
    assert list(creds.list(GROUP, "workload-id")) == []
    with pytest.raises(ResourceNotFoundError):
        creds.get(GROUP, "workload-id", "kube-sa")


def test_21st_fic_is_refused(env: Env) -> None:
    new_identity(env)
    creds = env.msi().federated_identity_credentials
    for n in range(MAX_FEDERATED_CREDENTIALS):
        creds.create_or_update(GROUP, "workload-id", f"fic-{n}", fic(f"system:sa:{n}"))
    with pytest.raises(HttpResponseError) as caught:
        creds.create_or_update(GROUP, "workload-id", "fic-20", fic("system:sa:20"))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "BadRequest"
    assert "at most 20" in caught.value.error.message
    assert len(list(creds.list(GROUP, "workload-id"))) == MAX_FEDERATED_CREDENTIALS
    status, _ = creds.create_or_update(GROUP, "workload-id", "fic-0", fic("system:sa:new"),
                                       cls=status_and_body)
    assert status == 200  # updating one of the 20 is still allowed


@pytest.mark.parametrize("audiences", [[AUD, "api://other"], []])
def test_fic_needs_exactly_one_audience(env: Env, audiences: list[str]) -> None:
    new_identity(env)
    creds = env.msi().federated_identity_credentials
    with pytest.raises(HttpResponseError) as caught:
        creds.create_or_update(GROUP, "workload-id", "two-aud",
                               {"issuer": ISSUER, "subject": "s", "audiences": audiences})
    assert caught.value.status_code == 400
    assert "exactly one audience" in caught.value.error.message
    assert list(creds.list(GROUP, "workload-id")) == []


def test_fic_issuer_and_subject_must_be_unique(env: Env) -> None:
    new_identity(env)
    creds = env.msi().federated_identity_credentials
    creds.create_or_update(GROUP, "workload-id", "first", fic("system:sa:x"))
    with pytest.raises(HttpResponseError) as caught:
        creds.create_or_update(GROUP, "workload-id", "second", fic("system:sa:x"))
    assert caught.value.status_code == 400 and "first" in caught.value.error.message


@pytest.mark.parametrize("name", ["ab", "-starts-with-dash", "has.dot", "x" * 121])
def test_fic_name_rules(env: Env, name: str) -> None:
    new_identity(env)
    with pytest.raises(HttpResponseError) as caught:
        env.msi().federated_identity_credentials.create_or_update(
            GROUP, "workload-id", name, fic("system:sa:n"))
    assert caught.value.status_code == 400


def test_fic_without_subject_is_refused(env: Env) -> None:
    new_identity(env)
    with pytest.raises(HttpResponseError) as caught:
        env.msi().federated_identity_credentials.create_or_update(
            GROUP, "workload-id", "partial", {"issuer": ISSUER, "audiences": [AUD]})
    assert caught.value.status_code == 400
    assert "must specify 'issuer', 'subject' and 'audience'" in caught.value.error.message


def test_fic_on_missing_identity_is_404(env: Env) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        env.msi().federated_identity_credentials.create_or_update(
            GROUP, "no-such-identity", "kube-sa", fic("system:sa:a"))
    assert caught.value.status_code == 404
    assert caught.value.error.code == "ResourceNotFound"


def test_deleting_the_identity_drops_its_fics(env: Env) -> None:
    msi = env.msi()
    identity = new_identity(env)
    msi.federated_identity_credentials.create_or_update(GROUP, "workload-id", "kube-sa",
                                                        fic("system:sa:a"))
    msi.user_assigned_identities.delete(GROUP, "workload-id")
    assert env.directory.by_client_id(env.tenant, identity.client_id) is None
    with pytest.raises(ResourceNotFoundError):
        list(msi.federated_identity_credentials.list(GROUP, "workload-id"))


# -- vaults


def test_vault_create_returns_the_hosts_uri_and_stores_policies(env: Env) -> None:
    identity = new_identity(env)
    kv = env.kv()
    poller = kv.vaults.begin_create_or_update(
        GROUP, "cf-vault-1", vault_body(env, [policy(env, identity.principal_id, ["get"])]))
    started = time.monotonic()
    vault = poller.result(timeout=20)
    assert poller.done() and time.monotonic() - started < 10  # no 30 s polling interval
    assert vault.properties.vault_uri == "https://cf-vault-1.vault.example.test/"
    assert vault.properties.provisioning_state == "Succeeded"
    assert vault.properties.tenant_id == env.tenant
    assert vault.id.endswith(f"/resourceGroups/{GROUP}/providers/Microsoft.KeyVault/vaults/"
                             "cf-vault-1")

    model = env.host.opened["cf-vault-1"]
    assert model.uri == vault.properties.vault_uri
    assert (model.tenant_id, model.location) == (env.tenant, "westeurope")
    assert model.enable_rbac_authorization is False
    assert [(p.object_id, p.secret_permissions) for p in model.access_policies] == [
        (identity.principal_id, ["get"])]
    assert model.allowed(env.tenant, identity.principal_id, "get")
    assert not model.allowed(env.tenant, identity.principal_id, "set")

    fetched = kv.vaults.get(GROUP, "cf-vault-1")
    assert fetched.properties.access_policies[0].object_id == identity.principal_id
    assert fetched.properties.access_policies[0].permissions.secrets == ["get"]
    assert [v.name for v in kv.vaults.list_by_resource_group(GROUP)] == ["cf-vault-1"]


def test_vault_put_again_updates_without_reopening(env: Env) -> None:
    kv = env.kv()
    kv.vaults.begin_create_or_update(GROUP, "cf-vault-2", vault_body(env, [])).result()
    body = vault_body(env, [policy(env, env.admin.object_id, ["get", "set"])])
    body["properties"]["enableRbacAuthorization"] = True
    updated = kv.vaults.begin_create_or_update(GROUP, "cf-vault-2", body).result()
    assert updated.properties.enable_rbac_authorization is True
    model = env.host.opened["cf-vault-2"]
    assert model.enable_rbac_authorization is True
    assert [p.object_id for p in model.access_policies] == [env.admin.object_id]
    assert list(env.host.opened) == ["cf-vault-2"] and env.host.closed == []


def test_update_access_policy_add_replace_remove(env: Env) -> None:
    identity = new_identity(env)
    kv = env.kv()
    kv.vaults.begin_create_or_update(
        GROUP, "cf-vault-3", vault_body(env, [policy(env, env.admin.object_id, ["all"])])
    ).result()
    model = env.host.opened["cf-vault-3"]

    def update(kind: str, secrets: list[str], keys: list[str] | None = None) -> Any:
        entry = policy(env, identity.principal_id, secrets)
        if keys:
            entry["permissions"]["keys"] = keys
        return kv.vaults.update_access_policy(GROUP, "cf-vault-3", kind,
                                              {"properties": {"accessPolicies": [entry]}})

    answer = update("add", ["get", "list"], keys=["get"])
    assert answer.type == "Microsoft.KeyVault/vaults/accessPolicies"
    assert model.allowed(env.tenant, identity.principal_id, "get")
    update("add", ["set", "GET"])  # merges, case-insensitively
    mine = [p for p in model.access_policies if p.object_id == identity.principal_id]
    assert len(mine) == 1 and mine[0].secret_permissions == ["get", "list", "set"]
    arm_view = kv.vaults.get(GROUP, "cf-vault-3").properties.access_policies
    assert arm_view[1].permissions["keys"] == ["get"]  # kept for the ARM view only

    update("replace", ["list"])
    assert not model.allowed(env.tenant, identity.principal_id, "get")
    assert model.allowed(env.tenant, identity.principal_id, "list")
    update("remove", [])
    assert [p.object_id for p in model.access_policies] == [env.admin.object_id]


def test_update_access_policy_on_missing_vault_is_404(env: Env) -> None:
    with pytest.raises(ResourceNotFoundError):
        env.kv().vaults.update_access_policy(
            GROUP, "cf-missing", "add",
            {"properties": {"accessPolicies": [policy(env, env.admin.object_id, ["get"])]}})


def test_vault_delete_closes_it_and_get_is_404(env: Env) -> None:
    kv = env.kv()
    kv.vaults.begin_create_or_update(GROUP, "cf-vault-4", vault_body(env, [])).result()
    kv.vaults.delete(GROUP, "cf-vault-4")
    assert env.host.closed == ["cf-vault-4"]
    with pytest.raises(ResourceNotFoundError) as caught:
        kv.vaults.get(GROUP, "cf-vault-4")
    assert caught.value.error.code == "ResourceNotFound"
    assert list(kv.vaults.list_by_resource_group(GROUP)) == []
    # soft-deleted: the name is free again once purged (tests/local/test_arm_cloud_tier.py)
    kv.vaults.begin_purge_deleted("cf-vault-4", "westeurope").result()
    kv.vaults.begin_create_or_update(GROUP, "cf-vault-4", vault_body(env, [])).result()


def test_vault_names_are_global(env: Env) -> None:
    kv = env.kv()
    kv.vaults.begin_create_or_update(GROUP, "cf-vault-5", vault_body(env, [])).result()
    with pytest.raises(ResourceExistsError) as caught:
        kv.vaults.begin_create_or_update("other-rg", "cf-vault-5", vault_body(env, [])).result()
    assert caught.value.status_code == 409
    assert caught.value.error.code == "VaultAlreadyExists"


@pytest.mark.parametrize("name", ["1starts-with-digit", "ab", "double--hyphen", "x" * 25])
def test_vault_name_rules(env: Env, name: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        env.kv().vaults.begin_create_or_update(GROUP, name, vault_body(env, [])).result()
    assert caught.value.status_code == 400
    assert caught.value.error.code == "VaultNameNotValid"


def test_snake_case_vault_body_is_refused(env: Env) -> None:
    """azure-mgmt-keyvault 14 sends a plain dict as is: snake_case keys reach the wire, so the
    required properties.tenantId is missing, as real ARM would see it."""
    body = {"location": "westeurope",
            "properties": {"tenant_id": env.tenant, "sku": {"family": "A", "name": "standard"},
                           "access_policies": []}}
    with pytest.raises(HttpResponseError) as caught:
        env.kv().vaults.begin_create_or_update(GROUP, "cf-vault-6", body).result()
    assert caught.value.status_code == 400 and "tenantId" in caught.value.error.message
    assert env.host.opened == {}


# -- authentication, subscription, api-version


def test_no_token_is_401_with_a_challenge(env: Env) -> None:
    response = env.raw("GET", env.group_path() + "/providers/Microsoft.ManagedIdentity/"
                       "userAssignedIdentities")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(
        f'Bearer authorization_uri="https://login.microsoftonline.com/{env.tenant}", '
        'error="invalid_token", error_description="')
    assert env.arm.decisions.all()[-1].code == "AuthenticationFailed"


def test_token_for_another_audience_is_401(env: Env) -> None:
    vault_credential = SignerCredential(env.signer, env.admin, audience="https://vault.azure.net")
    with pytest.raises(ClientAuthenticationError) as caught:
        env.msi(vault_credential).user_assigned_identities.get(GROUP, "x")
    assert caught.value.status_code == 401
    assert caught.value.error.code == "InvalidAuthenticationTokenAudience"


@pytest.mark.parametrize("case", ["garbage", "foreign-signer", "expired", "other-tenant",
                                  "basic-scheme"])
def test_invalid_tokens_are_401(env: Env, case: str) -> None:
    path = env.group_path() + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    expected = {"garbage": "InvalidAuthenticationToken",
                "foreign-signer": "InvalidAuthenticationToken",
                "expired": "ExpiredAuthenticationToken",
                "other-tenant": "InvalidAuthenticationTokenTenant",
                "basic-scheme": "AuthenticationFailedInvalidHeader"}[case]
    if case == "basic-scheme":
        response = requests.get(env.arm.endpoint + path, params={"api-version": MSI_API},
                                headers={"Authorization": "Basic dXNlcjpwYXNz"},
                                verify=str(env.ca.bundle_path), timeout=10)
    else:
        token = {
            "garbage": lambda: "not-a-jwt",
            "foreign-signer": lambda: AccessTokenSigner().issue(
                env.admin, "https://management.azure.com").token,
            "expired": lambda: env.token(lifetime=-3600),
            "other-tenant": lambda: env.token(ServicePrincipal(
                env.directory.add_tenant(), "stranger", kind="application")),
        }[case]()
        response = env.raw("GET", path, token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == expected
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_unknown_principal_of_the_tenant_is_403(env: Env) -> None:
    ghost = ServicePrincipal(env.tenant, "never-registered", kind="application")
    response = env.raw("GET", env.group_path() + "/providers/Microsoft.KeyVault/vaults",
                       env.token(ghost), api=KV_API)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AuthorizationFailed"


def test_a_principal_without_a_role_assignment_is_403(env: Env) -> None:
    """Only the administrator holds a role (Owner); a managed identity's token may not write."""
    identity = new_identity(env)
    principal = env.directory.by_client_id(env.tenant, identity.client_id)
    assert principal is not None
    as_identity = env.msi(SignerCredential(env.signer, principal))
    with pytest.raises(HttpResponseError) as caught:
        as_identity.user_assigned_identities.create_or_update(
            GROUP, "made-by-identity", {"location": "westeurope"})
    assert caught.value.status_code == 403
    assert caught.value.error.code == "AuthorizationFailed"
    assert "'Microsoft.ManagedIdentity/userAssignedIdentities/write'" in caught.value.message


def test_wrong_subscription_is_404(env: Env) -> None:
    other = str(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError) as caught:
        env.msi(subscription=other).user_assigned_identities.create_or_update(
            GROUP, "workload-id", {"location": "westeurope"})
    assert caught.value.error.code == "SubscriptionNotFound"
    assert other in caught.value.error.message


def test_api_version_is_required_and_fics_need_2022_or_later(env: Env) -> None:
    new_identity(env)
    token = env.token()
    identity = env.group_path() + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" \
        "workload-id"
    missing = env.raw("GET", identity, token, api=None)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
    assert env.raw("GET", identity, token, api="2018-11-30").status_code == 200
    too_old = env.raw("GET", identity + "/federatedIdentityCredentials", token, api="2018-11-30")
    assert too_old.status_code == 400
    assert too_old.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_paths_are_case_insensitive_and_bodies_must_be_json(env: Env) -> None:
    token = env.token()
    lower = (f"/subscriptions/{env.subscription}/resourcegroups/{GROUP}/providers/"
             "microsoft.managedidentity/userassignedidentities/lower-case")
    created = env.raw("PUT", lower, token, json={"location": "westeurope"})
    assert created.status_code == 201
    assert created.json()["properties"]["clientId"]
    broken = env.raw("PUT", lower, token, data=b"{not json")
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "InvalidRequestContent"


def test_management_core_audience_is_accepted(env: Env) -> None:
    token = env.token(audience="https://management.core.windows.net/")
    response = env.raw("GET", env.group_path() + "/providers/Microsoft.KeyVault/vaults", token,
                       api=KV_API)
    assert response.status_code == 200 and response.json() == {"value": []}
    assert jwt.decode(token, options={"verify_signature": False})["aud"].endswith("/")
