"""The Key Vault data-plane stand-in, driven by the real SecretClient (azure-keyvault-secrets).

Tokens come straight from the Entra stand-in's signer through a small TokenCredential (the
token exchange is tested in test_entra.py); what is proven here is the vault: the challenge,
the token checks, access policies, the secret operations and the error shapes the SDK maps.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import HttpChallengeCache

from crossfed.azure.directory import ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner, resource_of, v1_issuer
from crossfed.azure.keyvault.model import AccessPolicy, Vault
from crossfed.azure.keyvault.server import KeyVaultFleet
from crossfed.decisions import Decision
from crossfed.pki import RunCA

pytestmark = [pytest.mark.local, pytest.mark.azure]

VAULT = "https://vault.azure.net"
AUTHORITY = "https://login.microsoftonline.com"  # only named in the challenge, never called
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
SECRET_ID = re.compile(r"^https://127\.0\.0\.1:(\d+)/secrets/([0-9A-Za-z-]+)/([0-9a-f]{32})$")
ISSUED: list[str] = []  # every bearer token handed to a client, to prove none is logged


class SignerCredential:
    """A TokenCredential: signs the token Entra would issue for this principal and scope."""

    def __init__(self, signer: AccessTokenSigner, principal: ServicePrincipal,
                 audience: str | None = None, lifetime: int = 3599) -> None:
        self.signer, self.principal = signer, principal
        self.audience, self.lifetime = audience, lifetime
        self.requests: list[tuple[tuple[str, ...], str | None]] = []  # (scopes, tenant_id)

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        self.requests.append((scopes, tenant_id))
        issued = self.signer.issue(self.principal, self.audience or resource_of(scopes[0]),
                                   lifetime=self.lifetime)
        ISSUED.append(issued.token)
        # The client's own expiry stays ahead so it sends even a token the vault finds expired.
        return AccessToken(issued.token, int(time.time()) + 3599)


@dataclass
class Env:
    ca: RunCA
    signer: AccessTokenSigner
    tenant: str
    writer: ServicePrincipal  # get, list, set, delete, recover, purge
    reader: ServicePrincipal  # get, list
    outsider: ServicePrincipal  # no access policy
    fleet: KeyVaultFleet
    vault: Vault
    opened: list[Vault] = field(default_factory=list)

    @property
    def verify(self) -> str:
        return str(self.ca.bundle_path)

    def open(self, name: str, policies: list[AccessPolicy] | None = None,
             rbac: bool = False) -> Vault:
        vault = Vault(name, self.tenant, access_policies=policies or self.policies(),
                      enable_rbac_authorization=rbac)
        self.fleet.open_vault(vault)
        # The SDK caches challenges per host:port for the process; a reused port must not
        # carry an earlier vault's challenge into this one.
        HttpChallengeCache.remove_challenge_for_url(vault.uri)
        self.opened.append(vault)
        return vault

    def policies(self) -> list[AccessPolicy]:
        return [
            AccessPolicy(self.tenant, self.writer.object_id,
                         ["get", "list", "set", "delete", "recover", "purge"]),
            AccessPolicy(self.tenant, self.reader.object_id, ["Get", "List"]),
        ]

    def client(self, vault: Vault, principal: ServicePrincipal | None = None,
               credential: SignerCredential | None = None) -> SecretClient:
        credential = credential or SignerCredential(self.signer, principal or self.reader)
        return SecretClient(vault_url=vault.uri, credential=credential,
                            verify_challenge_resource=False, connection_verify=self.verify)

    def bearer(self, principal: ServicePrincipal) -> dict[str, str]:
        token = self.signer.issue(principal, VAULT).token
        ISSUED.append(token)
        return {"Authorization": f"Bearer {token}"}

    def decisions(self, vault: Vault) -> list[Decision]:
        return [d for d in self.fleet.decisions.all() if d.target.startswith(f"{vault.name}/")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca = RunCA(tmp_path_factory.mktemp("keyvault") / "pki")
    signer = AccessTokenSigner()
    tenant = str(uuid.uuid4())
    writer = ServicePrincipal(tenant, "kv-writer")
    reader = ServicePrincipal(tenant, "kv-reader")
    outsider = ServicePrincipal(tenant, "kv-outsider")
    fleet = KeyVaultFleet(ca, signer, AUTHORITY)
    setup = Env(ca, signer, tenant, writer, reader, outsider, fleet, Vault("kv-main", tenant))
    setup.vault = setup.open("kv-main")
    yield setup
    fleet.stop()


def _denied(env: Env, vault: Vault) -> Decision:
    last = env.decisions(vault)[-1]
    assert not last.allowed, last.explain()
    return last


# --- secrets through the SDK -------------------------------------------------------------


def test_set_then_get_latest_and_by_version(env: Env) -> None:
    writer = env.client(env.vault, env.writer)
    first = writer.set_secret("db-password", "s3cret-one", content_type="text/plain",
                              tags={"app": "crossfed"})
    second = writer.set_secret("db-password", "s3cret-two")
    reader = env.client(env.vault, env.reader)

    latest = reader.get_secret("db-password")
    assert latest.value == "s3cret-two"
    assert latest.properties.version == second.properties.version != first.properties.version
    found = SECRET_ID.match(latest.id or "")
    assert found, latest.id
    assert env.vault.uri == f"https://127.0.0.1:{found.group(1)}/"
    assert found.group(2, 3) == ("db-password", second.properties.version)
    assert latest.properties.vault_url.rstrip("/") == env.vault.uri.rstrip("/")
    assert latest.properties.recovery_level == "Recoverable+Purgeable"
    assert latest.properties.created_on is not None and latest.properties.enabled is True

    older = reader.get_secret("db-password", first.properties.version)
    assert older.value == "s3cret-one"
    assert older.properties.version == first.properties.version
    assert older.properties.content_type == "text/plain"
    assert older.properties.tags == {"app": "crossfed"}
    decision = env.decisions(env.vault)[-1]
    assert decision.allowed and decision.action == "SecretGet"
    assert decision.target == "kv-main/db-password"
    assert decision.token["sub"] == env.reader.object_id


def test_list_pages_and_never_shows_values(env: Env) -> None:
    vault = env.open("kv-list")
    names = {f"item-{i:02d}" for i in range(30)}  # more than one page of 25
    for name in names:
        vault.set_secret(name, f"value-of-{name}")
    reader = env.client(vault)

    listed = list(reader.list_properties_of_secrets())
    assert {p.name for p in listed} == names
    assert all(not hasattr(p, "value") and p.version is None for p in listed)
    lists = [d for d in env.decisions(vault) if d.action == "SecretList" and d.allowed]
    assert len(lists) == 2  # 25 + 5: the SDK followed nextLink once

    pages = [list(page) for page in reader.list_properties_of_secrets(max_page_size=7)
             .by_page()]
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert {p.name for page in pages for p in page} == names

    raw = requests.get(f"{vault.uri}secrets", params={"api-version": "7.4", "maxresults": 4},
                       headers=env.bearer(env.reader), verify=env.verify, timeout=10)
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert len(body["value"]) == 4 and "$skiptoken=" in body["nextLink"]
    assert body["nextLink"].startswith(f"{vault.uri}secrets?")
    assert all("value" not in item and item["id"].startswith(f"{vault.uri}secrets/item-")
               for item in body["value"])
    assert "value-of-" not in raw.text


def test_versions_are_listed_without_values(env: Env) -> None:
    writer = env.client(env.vault, env.writer)
    made = [writer.set_secret("rotating", f"v{i}").properties.version for i in range(3)]
    listed = list(env.client(env.vault).list_properties_of_secret_versions("rotating"))
    assert sorted(p.version for p in listed) == sorted(made)
    assert all(p.name == "rotating" and not hasattr(p, "value") for p in listed)


def test_names_are_case_insensitive(env: Env) -> None:
    env.client(env.vault, env.writer).set_secret("MixedCase", "same-secret")
    found = env.client(env.vault).get_secret("mixedcase")
    assert found.value == "same-secret" and found.name == "MixedCase"


def test_soft_delete_recover_and_purge(env: Env) -> None:
    writer = env.client(env.vault, env.writer)
    writer.set_secret("short-lived", "bye")
    deleted = writer.begin_delete_secret("short-lived", _polling_interval=0).result()
    assert deleted.recovery_id == f"{env.vault.uri}deletedsecrets/short-lived"
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    with pytest.raises(ResourceNotFoundError):
        writer.get_secret("short-lived")
    assert writer.get_deleted_secret("short-lived").name == "short-lived"
    with pytest.raises(HttpResponseError) as caught:
        writer.set_secret("short-lived", "again")
    assert caught.value.status_code == 409 and caught.value.error.code == "Conflict"
    assert "ObjectIsDeletedButRecoverable" in str(caught.value)

    writer.begin_recover_deleted_secret("short-lived", _polling_interval=0).wait()
    assert writer.get_secret("short-lived").value == "bye"
    writer.begin_delete_secret("short-lived", _polling_interval=0).wait()
    writer.purge_deleted_secret("short-lived")
    with pytest.raises(ResourceNotFoundError):
        writer.get_deleted_secret("short-lived")


def test_disabled_secret_is_not_readable(env: Env) -> None:
    writer = env.client(env.vault, env.writer)
    writer.set_secret("switched-off", "x")
    writer.update_secret_properties("switched-off", enabled=False)
    with pytest.raises(HttpResponseError) as caught:
        env.client(env.vault).get_secret("switched-off")
    assert caught.value.status_code == 403 and "SecretDisabled" in str(caught.value)


# --- the challenge -----------------------------------------------------------------------


def test_first_request_gets_the_challenge(env: Env) -> None:
    vault = env.open("kv-fresh")
    vault.set_secret("greeting", "hello")
    credential = SignerCredential(env.signer, env.reader)
    assert env.client(vault, credential=credential).get_secret("greeting").value == "hello"
    first, second = env.decisions(vault)
    assert not first.allowed and first.check == "challenge" and first.token == {}
    assert first.code == "Unauthorized" and first.message.startswith("AKV10000")
    assert second.allowed and second.target == "kv-fresh/greeting"
    # The SDK asked for the challenge's tenant and resource.
    assert credential.requests == [((f"{VAULT}/.default",), env.tenant)]

    raw = requests.get(f"{vault.uri}secrets/greeting/", params={"api-version": "7.4"},
                       verify=env.verify, timeout=10)
    assert raw.status_code == 401
    assert raw.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{AUTHORITY}/{env.tenant}", resource="{VAULT}"')
    assert raw.json() == {"error": {"code": "Unauthorized",
                                    "message": "AKV10000: Request is missing a Bearer or PoP "
                                               "token."}}


def test_challenge_resource_check_refuses_loopback_unless_disabled(env: Env) -> None:
    """Why clients here pass verify_challenge_resource=False (see the server's docstring)."""
    strict = SecretClient(vault_url=env.vault.uri, connection_verify=env.verify,
                          credential=SignerCredential(env.signer, env.reader))
    with pytest.raises(ValueError, match="challenge resource"):
        strict.get_secret("db-password")


# --- tokens the vault refuses ------------------------------------------------------------


def _refused(env: Env, credential: SignerCredential, vault: Vault | None = None) -> str:
    vault = vault or env.vault
    with pytest.raises(ClientAuthenticationError) as caught:
        env.client(vault, credential=credential).get_secret("anything")
    assert caught.value.status_code == 401
    assert caught.value.error is not None and caught.value.error.code == "Unauthorized"
    return str(caught.value)


def test_wrong_audience_is_401(env: Env) -> None:
    message = _refused(env, SignerCredential(env.signer, env.reader,
                                             audience="https://management.azure.com"))
    assert "AKV10022: Invalid audience" in message and "management.azure.com" in message
    decision = _denied(env, env.vault)
    assert decision.check == "token" and decision.detail.startswith("audience")


def test_token_from_another_signer_is_401(env: Env) -> None:
    message = _refused(env, SignerCredential(AccessTokenSigner(), env.reader))
    assert "AKV10046" in message
    assert _denied(env, env.vault).detail.startswith("signature")


def test_token_from_another_tenant_is_401_even_with_a_policy(env: Env) -> None:
    other_tenant = str(uuid.uuid4())
    stranger = ServicePrincipal(other_tenant, "foreign")
    vault = env.open("kv-tenant", env.policies() + [
        AccessPolicy(other_tenant, stranger.object_id, ["get"])])
    vault.set_secret("anything", "x")
    message = _refused(env, SignerCredential(env.signer, stranger), vault)
    assert "AKV10032: Invalid issuer" in message
    assert v1_issuer(env.tenant) in message and v1_issuer(other_tenant) in message
    assert _denied(env, vault).detail.startswith("tenant")


def test_expired_token_is_401(env: Env) -> None:
    message = _refused(env, SignerCredential(env.signer, env.reader, lifetime=-600))
    assert "Token expired" in message


# --- authorization and errors ------------------------------------------------------------


def test_outsider_is_forbidden_by_access_policy(env: Env) -> None:
    with pytest.raises(HttpResponseError) as caught:
        env.client(env.vault, env.outsider).get_secret("db-password")
    error = caught.value
    assert error.status_code == 403 and error.error is not None
    assert error.error.code == "Forbidden" and "AccessDenied" in str(error)
    caller = (f"'appid={env.outsider.client_id};oid={env.outsider.object_id};"
              f"iss={v1_issuer(env.tenant)}'")
    assert caller in str(error)
    assert "does not have secrets get permission on key vault 'kv-main;location=westeurope'" \
        in str(error)
    decision = _denied(env, env.vault)
    assert decision.check == "access_policy" and decision.code == "Forbidden/AccessDenied"
    assert env.outsider.object_id in decision.detail


def test_policy_ids_match_whatever_their_case(env: Env) -> None:
    # ARM keeps the case it was given; the token's oid and tid are lower case.
    vault = env.open("kv-upper", [AccessPolicy(env.tenant.upper(),
                                               env.outsider.object_id.upper(), ["GET"])])
    vault.set_secret("shouting", "fine")
    assert env.client(vault, env.outsider).get_secret("shouting").value == "fine"


def test_compound_identity_entry_needs_its_application(env: Env) -> None:
    # An entry with applicationId grants the user only through that application.
    vault = env.open("kv-compound", [AccessPolicy(env.tenant, env.outsider.object_id, ["get"],
                                                  application_id=str(uuid.uuid4()))])
    vault.set_secret("compound", "x")
    with pytest.raises(HttpResponseError) as caught:
        env.client(vault, env.outsider).get_secret("compound")
    assert caught.value.status_code == 403
    assert _denied(env, vault).check == "access_policy"
    app_entry = AccessPolicy(env.tenant, env.outsider.object_id, ["get"],
                             application_id=env.outsider.client_id.upper())
    assert app_entry.allows(env.tenant, env.outsider.object_id, "get", env.outsider.client_id)


def test_reader_cannot_set(env: Env) -> None:
    env.vault.set_secret("guarded", "original")
    with pytest.raises(HttpResponseError) as caught:
        env.client(env.vault, env.reader).set_secret("guarded", "overwritten")
    assert caught.value.status_code == 403
    assert "does not have secrets set permission" in str(caught.value)
    assert env.client(env.vault).get_secret("guarded").value == "original"


def test_rbac_vault_denies_with_forbidden_by_rbac(env: Env) -> None:
    vault = env.open("kv-rbac", rbac=True)
    vault.set_secret("db-password", "x")
    with pytest.raises(HttpResponseError) as caught:
        env.client(vault, env.reader).get_secret("db-password")
    assert caught.value.status_code == 403 and "ForbiddenByRbac" in str(caught.value)
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in str(caught.value)


def test_missing_secret_is_404_secret_not_found(env: Env) -> None:
    reader = env.client(env.vault)
    with pytest.raises(ResourceNotFoundError) as caught:
        reader.get_secret("no-such-secret")
    assert caught.value.status_code == 404 and caught.value.error is not None
    assert caught.value.error.code == "SecretNotFound"
    assert "A secret with (name/id) no-such-secret was not found" in str(caught.value)
    with pytest.raises(ResourceNotFoundError):
        reader.get_secret("db-password", "0" * 32)
    assert _denied(env, env.vault).check == "not_found"


@pytest.mark.parametrize("name", ["under_score", "dot.ted", "x" * 128])
def test_invalid_name_is_400_bad_parameter(env: Env, name: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        env.client(env.vault, env.writer).set_secret(name, "x")
    assert caught.value.status_code == 400 and caught.value.error is not None
    assert caught.value.error.code == "BadParameter"
    assert _denied(env, env.vault).check == "name"


# --- raw HTTP ----------------------------------------------------------------------------


def _raw(env: Env, method: str, path: str, principal: ServicePrincipal | None = None,
         **params: Any) -> requests.Response:
    headers = env.bearer(principal) if principal else {}
    return requests.request(method, f"{env.vault.uri}{path}", headers=headers,
                            params={"api-version": "2026-04-01", **params},
                            verify=env.verify, timeout=10)


def test_raw_get_with_and_without_trailing_slash(env: Env) -> None:
    env.vault.set_secret("raw-read", "plain")
    for path in ("secrets/raw-read/", "secrets/raw-read", "//secrets/raw-read"):
        answer = _raw(env, "GET", path, env.reader)
        assert answer.status_code == 200, (path, answer.text)
        body = answer.json()
        assert body["value"] == "plain" and SECRET_ID.match(body["id"])
        assert set(body["attributes"]) >= {"enabled", "created", "updated", "recoveryLevel"}
        assert answer.headers["Content-Type"].startswith("application/json")
    version = SECRET_ID.match(body["id"]).group(3)  # type: ignore[union-attr]
    assert _raw(env, "GET", f"secrets/raw-read/{version}", env.reader).json()["value"] == "plain"


def test_unsupported_routes_and_missing_api_version(env: Env) -> None:
    unknown = _raw(env, "GET", "keys/some-key", env.reader)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"
    wrong_method = _raw(env, "POST", "secrets/raw-read", env.reader)
    assert wrong_method.status_code == 405 and "PUT" in wrong_method.headers["Allow"]
    no_version = requests.get(f"{env.vault.uri}secrets/raw-read",
                              headers=env.bearer(env.reader), verify=env.verify, timeout=10)
    assert no_version.status_code == 400
    assert no_version.json()["error"]["code"] == "BadParameter"


def test_bad_maxresults_is_400(env: Env) -> None:
    answer = _raw(env, "GET", "secrets", env.reader, maxresults=26)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadParameter"


# --- diagnosis -----------------------------------------------------------------------------


def test_decision_feed_explains_without_tokens(env: Env) -> None:
    _raw(env, "GET", "secrets/db-password", env.outsider)  # one denial, at least
    feed = requests.get(env.fleet.decisions_url(env.vault), verify=env.verify, timeout=10)
    assert feed.status_code == 200
    entries = feed.json()
    assert entries and all(e["target"].startswith("kv-main/") for e in entries)
    assert any(e["check"] == "access_policy" for e in entries)
    assert any(e["token"].get("fingerprint", "").startswith("sha256:") for e in entries)
    for text in (feed.text, json.dumps(env.fleet.decisions.as_json())):
        assert not JWT.search(text)
        assert ISSUED and not any(token in text for token in ISSUED)
        assert not any(token.rsplit(".", 1)[1] in text for token in ISSUED)  # no signature
        assert "s3cret-" not in text  # nor a secret value


def test_fleet_serves_vaults_by_name(env: Env) -> None:
    assert env.fleet.vault("KV-MAIN") is env.vault
    vault = env.open("kv-closing")
    uri = vault.uri
    env.fleet.close_vault(vault)
    assert env.fleet.vault("kv-closing") is None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{uri}secrets", verify=env.verify, timeout=5)
