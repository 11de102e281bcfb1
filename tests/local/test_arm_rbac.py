"""The ARM stand-in's Microsoft.Authorization API, driven by the real azure-mgmt-authorization
client (api-version 2022-04-01): built-in role definitions, role assignments (create, get,
list with ARM's filters, delete), ARM's errors for them, and that an assignment created
through the API is what authorizes ARM requests (after the propagation delay, when one is set).

Tokens come straight from the shared AccessTokenSigner (tests/local/test_arm.py's recipe).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from crossfed.azure.arm.rbac import BUILT_IN_ROLES
from crossfed.azure.arm.server import ArmStandIn
from crossfed.azure.directory import Directory, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.azure.propagation import Propagation
from crossfed.pki import RunCA
from tests.local.test_arm import RecordingVaultHost, SignerCredential

pytestmark = [pytest.mark.local, pytest.mark.azure]

GROUP = "rbac-rg"
REAL_GUIDS = {  # the brief's list, checked against the built-in roles docs
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Key Vault Purge Operator": "a68e7c17-0ab2-4c09-9a58-125dae29748c",
}
DELAY = 1.5


@dataclass
class Env:
    ca: RunCA
    directory: Directory
    signer: AccessTokenSigner
    tenant: str
    subscription: str
    admin: ServicePrincipal
    arm: ArmStandIn

    @property
    def verify(self) -> str:
        return str(self.ca.bundle_path)

    def auth(self, principal: ServicePrincipal | None = None) -> AuthorizationManagementClient:
        return AuthorizationManagementClient(
            SignerCredential(self.signer, principal or self.admin), self.subscription,
            base_url=self.arm.endpoint, connection_verify=self.verify)

    def msi(self, principal: ServicePrincipal | None = None) -> ManagedServiceIdentityClient:
        return ManagedServiceIdentityClient(
            SignerCredential(self.signer, principal or self.admin), self.subscription,
            base_url=self.arm.endpoint, connection_verify=self.verify)

    @property
    def sub(self) -> str:
        return f"/subscriptions/{self.subscription}"

    @property
    def group(self) -> str:
        return f"{self.sub}/resourceGroups/{GROUP}"

    def role_id(self, name: str) -> str:
        return f"{self.sub}/providers/Microsoft.Authorization/roleDefinitions/{REAL_GUIDS[name]}"

    def app(self, name: str) -> ServicePrincipal:
        """An application added after start: no role anywhere."""
        return self.directory.add(ServicePrincipal(self.tenant, name, kind="application"))

    def assign(self, scope: str, principal_id: str, role: str, principal: Any = None,
               principal_type: str | None = "ServicePrincipal", name: str | None = None,
               **kwargs: Any) -> Any:
        properties: dict[str, Any] = {"roleDefinitionId": self.role_id(role),
                                      "principalId": principal_id}
        if principal_type:
            properties["principalType"] = principal_type
        return self.auth(principal).role_assignments.create(
            scope, name or str(uuid.uuid4()), {"properties": properties}, **kwargs)


def make_env(ca: RunCA, delay: float = 0.0) -> Env:
    directory, signer = Directory(Propagation(delay)), AccessTokenSigner()
    tenant = directory.add_tenant()
    admin = directory.add(ServicePrincipal(tenant, "crossfed-admin", kind="application"))
    subscription = str(uuid.uuid4())
    arm = ArmStandIn(ca, directory, signer, tenant, subscription, RecordingVaultHost()).start()
    return Env(ca, directory, signer, tenant, subscription, admin, arm)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(Path(tmp_path_factory.mktemp("arm-rbac-ca")))


@pytest.fixture
def env(ca: RunCA) -> Iterator[Env]:
    setup = make_env(ca)
    yield setup
    setup.arm.stop()


@pytest.fixture
def slow(ca: RunCA) -> Iterator[Env]:
    setup = make_env(ca, DELAY)
    yield setup
    setup.arm.stop()


def status_and_body(response: Any, deserialized: Any, headers: Any) -> tuple[int, Any]:
    return response.http_response.status_code, deserialized


def code(exc: HttpResponseError) -> str | None:
    return exc.error.code if exc.error else None


# -- role definitions


@pytest.mark.parametrize("name", sorted(REAL_GUIDS))
def test_built_in_role_definitions_have_their_real_guids(env: Env, name: str) -> None:
    role = env.auth().role_definitions.get(env.sub, REAL_GUIDS[name])
    assert role.role_name == name and role.name == REAL_GUIDS[name]
    assert role.role_type == "BuiltInRole" and role.assignable_scopes == ["/"]
    assert role.id == env.role_id(name)
    assert role.type == "Microsoft.Authorization/roleDefinitions"
    assert BUILT_IN_ROLES[REAL_GUIDS[name]].name == name


def test_role_definition_permissions_are_the_built_ins(env: Env) -> None:
    auth = env.auth()
    user = auth.role_definitions.get(env.group, REAL_GUIDS["Key Vault Secrets User"])
    assert user.permissions[0].data_actions == [
        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]
    assert user.permissions[0].actions == []
    contributor = auth.role_definitions.get(env.sub, REAL_GUIDS["Contributor"])
    assert contributor.permissions[0].actions == ["*"]
    assert "Microsoft.Authorization/*/Write" in contributor.permissions[0].not_actions
    officer = auth.role_definitions.get(env.sub, REAL_GUIDS["Key Vault Secrets Officer"])
    assert officer.permissions[0].data_actions == ["Microsoft.KeyVault/vaults/secrets/*"]
    # tenant-level id (get_by_id), as azure-cli resolves built-ins
    root = auth.role_definitions.get_by_id(
        f"/providers/Microsoft.Authorization/roleDefinitions/{REAL_GUIDS['Reader']}")
    assert root.role_name == "Reader"
    assert root.id == f"/providers/Microsoft.Authorization/roleDefinitions/{REAL_GUIDS['Reader']}"


def test_role_definitions_list_by_role_name(env: Env) -> None:
    found = list(env.auth().role_definitions.list(
        env.sub, filter="roleName eq 'Key Vault Secrets User'"))
    assert [r.name for r in found] == [REAL_GUIDS["Key Vault Secrets User"]]
    assert len(list(env.auth().role_definitions.list(env.sub))) >= len(REAL_GUIDS)


def test_unknown_role_definition_is_404_role_definition_does_not_exist(env: Env) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError) as caught:
        env.auth().role_definitions.get(env.sub, missing)
    assert caught.value.status_code == 404
    assert code(caught.value) == "RoleDefinitionDoesNotExist"
    assert f"The specified role definition with ID '{missing}' does not exist." in str(
        caught.value)


# -- role assignments


def test_create_get_list_delete(env: Env) -> None:
    auth, principal = env.auth(), env.app("worker")
    name = str(uuid.uuid4())
    status, created = env.assign(env.group, principal.object_id, "Reader", name=name,
                                 cls=status_and_body)
    assert status == 201
    assert created.name == name and created.scope == env.group
    assert created.id == f"{env.group}/providers/Microsoft.Authorization/roleAssignments/{name}"
    assert created.role_definition_id == env.role_id("Reader")
    assert created.principal_id == principal.object_id
    assert created.principal_type == "ServicePrincipal"
    assert created.created_by == env.admin.object_id

    fetched = auth.role_assignments.get(env.group, name)
    assert (fetched.principal_id, fetched.role_definition_id) == (
        principal.object_id, env.role_id("Reader"))
    by_id = auth.role_assignments.get_by_id(created.id)
    assert by_id.name == name

    # atScope(): at or above the scope; the administrator's Owner is the seeded one above
    at_group = list(auth.role_assignments.list_for_scope(env.group, filter="atScope()"))
    assert {a.name for a in at_group} >= {name}
    assert env.admin.object_id in {a.principal_id for a in at_group}
    assert env.role_id("Owner") in {a.role_definition_id for a in at_group}
    # below the scope is not "at scope": the subscription's atScope() leaves the group's out
    at_sub = list(auth.role_assignments.list_for_scope(env.sub, filter="atScope()"))
    assert name not in {a.name for a in at_sub}
    whole = list(auth.role_assignments.list_for_subscription())
    assert name in {a.name for a in whole}
    mine = list(auth.role_assignments.list_for_subscription(
        filter=f"principalId eq '{principal.object_id}'"))
    assert [a.name for a in mine] == [name]
    in_group = list(auth.role_assignments.list_for_resource_group(
        GROUP, filter=f"assignedTo('{principal.object_id}')"))
    assert [a.name for a in in_group] == [name]

    status, deleted = auth.role_assignments.delete(env.group, name, cls=status_and_body)
    assert status == 200 and deleted.name == name
    status, again = auth.role_assignments.delete(env.group, name, cls=status_and_body)
    assert status == 204 and again is None
    with pytest.raises(ResourceNotFoundError) as caught:
        auth.role_assignments.get(env.group, name)
    assert code(caught.value) == "RoleAssignmentNotFound"


def test_same_grant_under_another_name_is_409_role_assignment_exists(env: Env) -> None:
    principal = env.app("twice")
    first = env.assign(env.group, principal.object_id, "Contributor")
    # the same PUT again under its own name is fine (200, the stored assignment)
    status, same = env.assign(env.group, principal.object_id, "Contributor", name=first.name,
                              cls=status_and_body)
    assert status == 200 and same.name == first.name
    with pytest.raises(ResourceExistsError) as caught:
        env.assign(env.group.upper().replace("SUBSCRIPTIONS", "subscriptions"),
                   principal.object_id.upper(), "Contributor")
    assert caught.value.status_code == 409
    assert code(caught.value) == "RoleAssignmentExists"
    assert "The role assignment already exists." in str(caught.value)
    # another role, or another scope, is another grant
    env.assign(env.group, principal.object_id, "Reader")
    env.assign(env.sub, principal.object_id, "Contributor")


def test_changing_a_named_assignment_is_400_update_not_permitted(env: Env) -> None:
    principal = env.app("moved")
    first = env.assign(env.group, principal.object_id, "Reader")
    with pytest.raises(HttpResponseError) as caught:
        env.assign(env.group, env.app("other").object_id, "Reader", name=first.name)
    assert caught.value.status_code == 400
    assert code(caught.value) == "RoleAssignmentUpdateNotPermitted"


def test_unknown_principal_without_type_is_400_principal_not_found(env: Env) -> None:
    stranger = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as caught:
        env.assign(env.group, stranger, "Reader", principal_type=None)
    assert caught.value.status_code == 400 and code(caught.value) == "PrincipalNotFound"
    message = str(caught.value)
    assert f"Principal {stranger.replace('-', '')} does not exist in the directory " \
           f"{env.tenant}" in message
    assert "set the role assignment principalType property" in message
    # with principalType the directory is not asked (what avoids the replication race)
    made = env.assign(env.group, stranger, "Reader", principal_type="ServicePrincipal")
    assert made.principal_type == "ServicePrincipal"
    # a known principal needs no type; its type is found
    known = env.assign(env.group, env.app("known").object_id, "Reader", principal_type=None)
    assert known.principal_type == "ServicePrincipal"


def test_wrong_principal_type_and_bad_names_are_400(env: Env) -> None:
    principal = env.app("typed")
    with pytest.raises(HttpResponseError) as caught:
        env.assign(env.group, principal.object_id, "Reader", principal_type="User")
    assert caught.value.status_code == 400 and code(caught.value) == "UnmatchedPrincipalType"
    with pytest.raises(HttpResponseError) as caught:
        env.assign(env.group, principal.object_id, "Reader", name="not-a-guid")
    assert caught.value.status_code == 400 and code(caught.value) == "InvalidRoleAssignmentId"


def test_unknown_role_definition_on_create_is_400(env: Env) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as caught:
        env.auth().role_assignments.create(env.group, str(uuid.uuid4()), {"properties": {
            "roleDefinitionId": f"{env.sub}/providers/Microsoft.Authorization/roleDefinitions/"
                                f"{missing}",
            "principalId": env.app("nobody").object_id, "principalType": "ServicePrincipal"}})
    assert caught.value.status_code == 400
    assert code(caught.value) == "RoleDefinitionDoesNotExist"
    assert missing in str(caught.value)


def test_only_owner_and_user_access_administrator_may_write_assignments(env: Env) -> None:
    contributor, uaa, reader = env.app("contrib"), env.app("uaa"), env.app("reader")
    env.assign(env.sub, contributor.object_id, "Contributor")
    env.assign(env.sub, uaa.object_id, "User Access Administrator")
    env.assign(env.sub, reader.object_id, "Reader")
    target = env.app("target")
    for caller in (contributor, reader):
        name = str(uuid.uuid4())
        with pytest.raises(HttpResponseError) as caught:
            env.assign(env.group, target.object_id, "Reader", principal=caller, name=name)
        assert caught.value.status_code == 403 and code(caught.value) == "AuthorizationFailed"
        assert (f"does not have authorization to perform action "
                f"'Microsoft.Authorization/roleAssignments/write' over scope '{env.group}/"
                f"providers/Microsoft.Authorization/roleAssignments/{name}'") in str(caught.value)
        # ... but may read them (Contributor and Reader both have */read)
        assert list(env.auth(caller).role_assignments.list_for_scope(env.group))
    made = env.assign(env.group, target.object_id, "Reader", principal=uaa)
    assert made.created_by == uaa.object_id
    with pytest.raises(HttpResponseError) as caught:
        env.auth(contributor).role_assignments.delete(env.group, made.name)
    assert caught.value.status_code == 403
    env.auth(uaa).role_assignments.delete(env.group, made.name)
    # a principal with no role at all may not even read
    with pytest.raises(HttpResponseError) as caught:
        list(env.auth(target).role_assignments.list_for_scope(env.group))
    assert caught.value.status_code == 403


def test_an_assignment_made_through_the_api_grants_its_role(env: Env) -> None:
    worker = env.app("grantee")
    msi = env.msi(worker)
    env.msi().user_assigned_identities.create_or_update(GROUP, "target-id",
                                                        {"location": "westeurope"})
    with pytest.raises(HttpResponseError) as caught:
        msi.user_assigned_identities.get(GROUP, "target-id")
    assert caught.value.status_code == 403
    reader = env.assign(env.group, worker.object_id, "Reader")
    assert msi.user_assigned_identities.get(GROUP, "target-id").name == "target-id"
    with pytest.raises(HttpResponseError) as caught:  # Reader is read-only
        msi.user_assigned_identities.create_or_update(GROUP, "made-by-reader",
                                                      {"location": "westeurope"})
    assert caught.value.status_code == 403 and code(caught.value) == "AuthorizationFailed"
    env.assign(env.group, worker.object_id, "Contributor")
    msi.user_assigned_identities.create_or_update(GROUP, "made-by-contributor",
                                                  {"location": "westeurope"})
    # outside the group's scope nothing is granted
    with pytest.raises(HttpResponseError):
        msi.user_assigned_identities.create_or_update("other-rg", "elsewhere",
                                                      {"location": "westeurope"})
    # the seeded Owner of the administrator is an assignment like these: the API lists it
    owners = [a for a in env.auth().role_assignments.list_for_subscription(
        filter=f"principalId eq '{env.admin.object_id}'")]
    assert [a.role_definition_id for a in owners] == [env.role_id("Owner")]
    env.auth().role_assignments.delete(env.group, reader.name)


def test_unsupported_filter_is_400(env: Env) -> None:
    with pytest.raises(HttpResponseError) as caught:
        list(env.auth().role_assignments.list_for_scope(env.sub, filter="roleName eq 'x'"))
    assert caught.value.status_code == 400 and code(caught.value) == "UnsupportedQuery"


def test_role_assignments_need_an_api_version_and_a_token(env: Env) -> None:
    url = f"{env.arm.endpoint}{env.sub}/providers/Microsoft.Authorization/roleAssignments"
    bare = requests.get(url, verify=env.verify, timeout=10)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "AuthenticationFailed"
    token = env.signer.issue(env.admin, "https://management.azure.com").token
    unversioned = requests.get(url, headers={"Authorization": f"Bearer {token}"},
                               verify=env.verify, timeout=10)
    assert unversioned.status_code == 400
    assert unversioned.json()["error"]["code"] == "MissingApiVersionParameter"


# -- propagation


def test_new_identity_is_principal_not_found_until_it_propagates(slow: Env) -> None:
    identity = slow.msi().user_assigned_identities.create_or_update(
        GROUP, "fresh", {"location": "westeurope"})
    created = time.monotonic()
    with pytest.raises(HttpResponseError) as caught:
        slow.assign(slow.group, identity.principal_id, "Reader", principal_type=None)
    assert time.monotonic() - created < DELAY
    assert code(caught.value) == "PrincipalNotFound"
    slow.assign(slow.group, identity.principal_id, "Reader")  # with principalType: at once
    time.sleep(DELAY + 0.2)
    later = slow.assign(slow.sub, identity.principal_id, "Reader", principal_type=None)
    assert later.principal_type == "ServicePrincipal"


def test_new_assignment_is_read_at_once_and_grants_after_the_delay(slow: Env) -> None:
    worker = slow.app("patient")
    written = time.monotonic()
    made = slow.assign(slow.group, worker.object_id, "Contributor")
    assert slow.auth().role_assignments.get(slow.group, made.name).principal_id == \
        worker.object_id
    with pytest.raises(HttpResponseError) as caught:
        slow.msi(worker).user_assigned_identities.create_or_update(
            GROUP, "too-early", {"location": "westeurope"})
    assert time.monotonic() - written < DELAY, "too slow to see the refusal"
    assert caught.value.status_code == 403 and code(caught.value) == "AuthorizationFailed"
    time.sleep(max(0.0, written + DELAY - time.monotonic()) + 0.2)
    slow.msi(worker).user_assigned_identities.create_or_update(
        GROUP, "in-time", {"location": "westeurope"})
