"""The Entra ID stand-in, driven by the real azure-identity and MSAL clients.

One directory: a managed identity federated with the cluster's issuer, an application with a
client secret, and identities whose credentials point at an unreachable or untrusted issuer.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

from crossfed.azure.directory import Directory, FederatedCredential, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner, v1_issuer
from crossfed.azure.entra.server import EntraStandIn
from crossfed.decisions import Decision
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims, sign
from crossfed.pki import RunCA

pytestmark = [pytest.mark.local, pytest.mark.azure]

SA = ServiceAccountRef("entra-test", "workload")
AUD = "api://AzureADTokenExchange"
VAULT = "https://vault.azure.net"
MANAGEMENT = "https://management.azure.com"
AADSTS = re.compile(r"AADSTS(\d+)")
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]*")
DESCRIPTION = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: \S+\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", re.DOTALL)
SENT: list[str] = []  # every assertion sent, to prove none reaches the decision feed


@dataclass
class Env:
    tmp: Path
    ca: RunCA
    issuer: IssuerServer
    rogue: IssuerServer  # serves fine, but no credential names it
    untrusted: IssuerServer  # certificate from a CA Entra does not trust
    unreachable_url: str
    directory: Directory
    signer: AccessTokenSigner
    tenant: str
    identity: ServicePrincipal
    lost: ServicePrincipal  # federated with the unreachable issuer
    distrusted: ServicePrincipal  # federated with the untrusted issuer
    app: ServicePrincipal
    app_secret: str
    entra: EntraStandIn

    @property
    def verify(self) -> str:
        return str(self.ca.bundle_path)

    @property
    def authority(self) -> str:
        return self.entra.authority_host


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}"  # nothing listens once the socket is closed


def _federate(directory: Directory, tenant: str, name: str, issuer: str,
              subject: str = SA.subject) -> ServicePrincipal:
    principal = directory.add(ServicePrincipal(tenant, name))
    directory.put_federated_credential(
        principal, FederatedCredential(f"{name}-fic", issuer, subject, [AUD]))
    return principal


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("entra")
    ca = RunCA(tmp / "pki")
    issuer = IssuerServer(ca, "entra-issuer").start()
    rogue = IssuerServer(ca, "rogue-issuer").start()
    untrusted = IssuerServer(RunCA(tmp / "other-pki", name="other CA"), "untrusted").start()
    unreachable_url = _closed_port_url()
    directory = Directory()
    tenant = directory.add_tenant()
    identity = _federate(directory, tenant, "kv-reader", issuer.url)
    lost = _federate(directory, tenant, "lost", unreachable_url)
    distrusted = _federate(directory, tenant, "distrusted", untrusted.url)
    app_secret = secrets.token_urlsafe(30)
    app = directory.add(ServicePrincipal(tenant, "crossfed-admin", kind="application",
                                         client_secrets=[app_secret]))
    signer = AccessTokenSigner()
    entra = EntraStandIn(ca, directory, signer, trusted_roots=str(ca.bundle_path)).start()
    yield Env(tmp, ca, issuer, rogue, untrusted, unreachable_url, directory, signer, tenant,
              identity, lost, distrusted, app, app_secret, entra)
    entra.stop()
    for server in (untrusted, rogue, issuer):
        server.stop()


# --- helpers ------------------------------------------------------------------------------


def _claims(issuer: IssuerServer | str, account: ServiceAccountRef = SA,
            audiences: tuple[str, ...] = (AUD,), **changes: Any) -> dict[str, Any]:
    url = issuer if isinstance(issuer, str) else issuer.url
    claims = service_account_claims(url, account, list(audiences))
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _projected(env: Env, **changes: Any) -> str:
    return sign(_claims(env.issuer, **changes), env.issuer.issuer.key)


def _workload_token(env: Env, assertion: str, client_id: str | None = None,
                    tenant: str | None = None, scope: str = f"{VAULT}/.default") -> str:
    """What a pod does: WorkloadIdentityCredential over the projected token file."""
    SENT.append(assertion)
    token_file = env.tmp / f"token-{uuid.uuid4().hex}"
    token_file.write_text(assertion)
    credential = WorkloadIdentityCredential(
        tenant_id=tenant or env.tenant, client_id=client_id or env.identity.client_id,
        token_file_path=str(token_file), authority=env.authority,
        connection_verify=env.verify)
    return credential.get_token(scope).token


def _refused(call: Callable[[], Any]) -> tuple[int, int | None, str]:
    """(AADSTS code, HTTP status, message) of a ClientAuthenticationError.

    The status is None for MSAL-based credentials (ClientSecretCredential): azure-identity
    builds their error from MSAL's result dict, without the HTTP response.
    """
    with pytest.raises(ClientAuthenticationError) as caught:
        call()
    message = str(caught.value)
    found = AADSTS.search(message)
    assert found, message
    response = caught.value.response
    return int(found.group(1)), None if response is None else response.status_code, message


def _latest(env: Env) -> Decision:
    return env.entra.decisions.all()[-1]


@pytest.fixture
def msal_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    """MSAL's `verify=` sets requests' Session.verify, which REQUESTS_CA_BUNDLE in the
    environment overrides (requests' merge rule): point that variable at the run CA too."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env.verify)
    return env


def _msal_app(env: Env, assertion: str, client_id: str | None = None,
              tenant: str | None = None) -> msal.ConfidentialClientApplication:
    SENT.append(assertion)
    return msal.ConfidentialClientApplication(
        client_id or env.identity.client_id,
        authority=f"{env.authority}/{tenant or env.tenant}",
        client_credential={"client_assertion": lambda: assertion},
        instance_discovery=False, verify=env.verify)


# --- success ------------------------------------------------------------------------------


def test_workload_identity_credential_gets_a_vault_token(env: Env) -> None:
    env.entra.keys.clear()
    fetched = dict(env.issuer.app.fetches)
    token = _workload_token(env, _projected(env))
    _workload_token(env, _projected(env))  # the second exchange uses the cached JWKS
    claims = env.signer.verify(token, (VAULT,))
    assert claims["oid"] == env.identity.object_id != env.identity.client_id
    assert claims["sub"] == env.identity.object_id
    assert claims["appid"] == env.identity.client_id
    assert claims["tid"] == env.tenant and claims["iss"] == v1_issuer(env.tenant)
    assert claims["appidacr"] == "2" and claims["aud"] == VAULT
    for path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):  # over HTTPS, once
        assert env.issuer.app.fetches[path] == fetched.get(path, 0) + 1, path
    decision = _latest(env)
    assert decision.allowed and decision.target == env.identity.client_id
    assert "kv-reader-fic" in decision.detail
    assert decision.token["sub"] == SA.subject and "fingerprint" in decision.token


def test_client_secret_credential_gets_a_management_token(env: Env) -> None:
    credential = ClientSecretCredential(
        env.tenant, env.app.client_id, env.app_secret, authority=env.authority,
        disable_instance_discovery=True, connection_verify=env.verify)
    claims = env.signer.verify(credential.get_token(f"{MANAGEMENT}/.default").token,
                               (MANAGEMENT,))
    assert claims["appidacr"] == "1" and claims["oid"] == env.app.object_id
    assert claims["appid"] == env.app.client_id and claims["tid"] == env.tenant
    decision = _latest(env)
    assert decision.allowed and decision.token == {"credential": "client_secret"}


def test_msal_with_a_callable_assertion(msal_env: Env) -> None:
    env = msal_env
    result = _msal_app(env, _projected(env)).acquire_token_for_client([f"{VAULT}/.default"])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer" and int(result["expires_in"]) > 300
    claims = env.signer.verify(result["access_token"], (VAULT,))
    assert claims["oid"] == env.identity.object_id and claims["appidacr"] == "2"


def test_msal_gets_entra_errors_as_a_dict(msal_env: Env) -> None:
    env = msal_env
    intruder = ServiceAccountRef(SA.namespace, "intruder")
    assertion = sign(_claims(env.issuer, account=intruder), env.issuer.issuer.key)
    result = _msal_app(env, assertion).acquire_token_for_client([f"{VAULT}/.default"])
    assert "access_token" not in result
    assert result["error"] == "invalid_client" and result["error_codes"] == [70021]


def test_assertion_of_exactly_25_hours_is_accepted(env: Env) -> None:
    now = int(time.time())
    token = _workload_token(env, _projected(env, iat=now, nbf=now, exp=now + 25 * 3600))
    assert env.signer.verify(token, (VAULT,))["oid"] == env.identity.object_id


def test_expiry_within_the_clock_skew_is_accepted(env: Env) -> None:
    now = int(time.time())
    assertion = _projected(env, iat=now - 3600, nbf=now - 3600, exp=now - 60)
    assert env.signer.verify(_workload_token(env, assertion), (VAULT,))


def test_a_rotated_key_is_fetched_again(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached JWKS lacks the new kid: one refetch, then the exchange succeeds."""
    _workload_token(env, _projected(env))  # the JWKS is cached now
    monkeypatch.setattr(env.entra.keys, "min_refetch_interval", 0.0)
    issuer = env.issuer.issuer
    old_key, new_key = issuer.key, SigningKey.generate()
    monkeypatch.setattr(issuer, "key", new_key)
    monkeypatch.setattr(issuer, "extra_public_keys", [old_key])
    fetches = env.issuer.app.fetches["/openid/v1/jwks"]
    token = _workload_token(env, sign(_claims(env.issuer), new_key))
    assert env.signer.verify(token, (VAULT,))
    assert env.issuer.app.fetches["/openid/v1/jwks"] == fetches + 1


# --- refusals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    name: str
    assertion: Callable[[Env], str]
    code: int
    status: int
    check: str
    says: tuple[str, ...] = ()  # fragments the diagnosis (decision detail) must contain
    client: Callable[[Env], str] = lambda env: env.identity.client_id


def _other_account(account: ServiceAccountRef) -> Callable[[Env], str]:
    return lambda env: sign(_claims(env.issuer, account=account), env.issuer.issuer.key)


def _timed(iat: int | None, exp: int, nbf: int | None = None) -> Callable[[Env], str]:
    def build(env: Env) -> str:
        now = int(time.time())
        return _projected(env, iat=None if iat is None else now + iat, exp=now + exp,
                          nbf=None if nbf is None else now + nbf)
    return build


def _forged_kid(env: Env) -> str:
    return jwt.encode(_claims(env.issuer), SigningKey.generate().private_key, algorithm="RS256",
                      headers={"kid": env.issuer.issuer.key.kid})


def _with_alg(alg: str) -> Callable[[Env], str]:
    def build(env: Env) -> str:
        key: Any = {"none": None, "HS256": secrets.token_bytes(32)}.get(
            alg, env.issuer.issuer.key.private_key)
        return jwt.encode(_claims(env.issuer), key, algorithm=alg,
                          headers={"kid": env.issuer.issuer.key.kid})
    return build


REFUSALS = [
    Refusal("credential-for-another-service-account",
            _other_account(ServiceAccountRef(SA.namespace, "intruder")), 70021, 401, "subject",
            ("same namespace 'entra-test'", "service account 'workload' vs the assertion's "
             "'intruder'", "kv-reader-fic")),
    Refusal("credential-for-another-namespace",
            _other_account(ServiceAccountRef("elsewhere", SA.name)), 70021, 401, "subject",
            ("namespace 'entra-test' vs the assertion's 'elsewhere'",)),
    Refusal("subject-differs-in-case",
            _other_account(ServiceAccountRef("Entra-Test", SA.name)), 7002138, 401, "subject",
            ("only in letter case",)),
    Refusal("issuer-not-registered",
            lambda env: env.rogue.issuer.mint(SA, [AUD]), 700211, 401, "issuer", ()),
    Refusal("issuer-with-trailing-slash",
            lambda env: sign(_claims(env.issuer.url + "/"), env.issuer.issuer.key),
            700211, 401, "issuer", ("only in the trailing slash",)),
    Refusal("wrong-audience",
            lambda env: sign(_claims(env.issuer, audiences=("api://other",)),
                             env.issuer.issuer.key),
            700212, 401, "audience", ("'api://other'", AUD)),
    Refusal("expired", _timed(-7200, -3600, -7200), 700024, 401, "lifetime",
            ("expired", "skew 300 s")),
    Refusal("not-yet-valid", _timed(0, 3600, 1800), 700024, 401, "lifetime",
            ("valid only from",)),
    Refusal("lifetime-over-25-hours", _timed(0, 25 * 3600 + 1), 70023, 400, "max_lifetime",
            ("90001 s",)),
    Refusal("no-iat", _timed(None, 3600), 70023, 400, "issued_at", ("no iat",)),
    Refusal("foreign-signing-key",
            lambda env: sign(_claims(env.issuer), SigningKey.generate()),
            7000272, 401, "kid", ("the issuer publishes kids",)),
    Refusal("forged-kid", _forged_kid, 50027, 400, "signature", ()),
    Refusal("alg-none", _with_alg("none"), 50027, 400, "algorithm", ("'none'",)),
    Refusal("hs256", _with_alg("HS256"), 50027, 400, "algorithm", ("'HS256'",)),
    Refusal("rs384-is-not-supported", _with_alg("RS384"), 50027, 400, "algorithm",
            ("'RS384'",)),
    Refusal("not-a-jwt", lambda env: "not-a-jwt", 50027, 400, "malformed", ()),
    Refusal("issuer-unreachable",
            lambda env: sign(_claims(env.unreachable_url), SigningKey.generate()),
            90061, 400, "keys", ("unreachable",), client=lambda env: env.lost.client_id),
    Refusal("issuer-certificate-not-publicly-trusted",
            lambda env: env.untrusted.issuer.mint(SA, [AUD]),
            90061, 400, "keys", ("untrusted", "certificate verify failed"),
            client=lambda env: env.distrusted.client_id),
    Refusal("unknown-client-id", lambda env: _projected(env), 700016, 400, "client",
            ("AZURE_CLIENT_ID",), client=lambda env: str(uuid.uuid4())),
    Refusal("principal-id-instead-of-client-id", lambda env: _projected(env), 700016, 400,
            "client", ("object (principal) id",), client=lambda env: env.identity.object_id),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[r.name for r in REFUSALS])
def test_workload_identity_refusals(env: Env, case: Refusal) -> None:
    assertion, client_id = case.assertion(env), case.client(env)
    code, status, message = _refused(lambda: _workload_token(env, assertion, client_id))
    assert (code, status) == (case.code, case.status), message
    decision = _latest(env)
    assert decision.target == client_id and not decision.allowed
    assert decision.code == f"AADSTS{case.code}" and decision.check == case.check, decision
    for fragment in case.says:
        assert fragment in decision.detail, decision.explain()


def test_subject_mismatch_echoes_the_assertion(env: Env) -> None:
    intruder = ServiceAccountRef(SA.namespace, "intruder")
    assertion = sign(_claims(env.issuer, account=intruder), env.issuer.issuer.key)
    _, _, message = _refused(lambda: _workload_token(env, assertion))
    assert (f"Assertion Issuer: '{env.issuer.url}'. Assertion Subject: '{intruder.subject}'. "
            f"Assertion Audience: '{AUD}'.") in message


def test_subject_differing_in_case_says_so_as_entra_does(env: Env) -> None:
    shouted = ServiceAccountRef(SA.namespace.upper(), SA.name)
    assertion = sign(_claims(env.issuer, account=shouted), env.issuer.issuer.key)
    code, status, message = _refused(lambda: _workload_token(env, assertion))
    assert (code, status) == (7002138, 401), message
    assert (f"presented assertion subject '{shouted.subject}'. The subject matches with "
            "case-insensitive comparison, but not with case-sensitive comparison.") in message


def test_unregistered_issuer_lists_the_registered_ones(env: Env) -> None:
    _, _, message = _refused(lambda: _workload_token(env, env.rogue.issuer.mint(SA, [AUD])))
    assert f"assertion issuer '{env.rogue.url}'" in message
    assert env.issuer.url in _latest(env).detail and env.rogue.url in _latest(env).detail
    assert env.rogue.app.fetches["/openid/v1/jwks"] == 0  # refused before any key fetch


def test_expired_assertion_message_gives_the_three_times(env: Env) -> None:
    _, _, message = _refused(lambda: _workload_token(env, _timed(-7200, -3600, -7200)(env)))
    times = re.search(r"Current time: (\S+), assertion valid from (\S+), expiry time of "
                      r"assertion (\S+)\.", message)
    assert times, message
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
    assert all(stamp.match(t) for t in times.groups()), times.groups()


def test_unknown_tenant(env: Env) -> None:
    code, status, _ = _refused(lambda: _workload_token(env, _projected(env),
                                                       tenant=str(uuid.uuid4())))
    assert (code, status) == (90002, 400)
    assert _latest(env).check == "tenant"


def _secret_status(env: Env, client_id: str, secret: str) -> int:
    """The HTTP status of the same secret request sent raw (the SDK error does not carry it)."""
    return _post_token(env, grant_type="client_credentials", client_id=client_id,
                       scope=f"{MANAGEMENT}/.default", client_secret=secret).status_code


def test_bad_client_secret(env: Env) -> None:
    credential = ClientSecretCredential(
        env.tenant, env.app.client_id, "not-the-secret", authority=env.authority,
        disable_instance_discovery=True, connection_verify=env.verify)
    code, _, _ = _refused(lambda: credential.get_token(f"{MANAGEMENT}/.default"))
    assert code == 7000215
    decision = _latest(env)
    assert decision.check == "client_secret" and decision.target == env.app.client_id
    assert decision.code == "AADSTS7000215" and "none of them" in decision.detail
    assert _secret_status(env, env.app.client_id, "not-the-secret") == 401


def test_a_managed_identity_has_no_client_secret(env: Env) -> None:
    credential = ClientSecretCredential(
        env.tenant, env.identity.client_id, env.app_secret, authority=env.authority,
        disable_instance_discovery=True, connection_verify=env.verify)
    code, _, _ = _refused(lambda: credential.get_token(f"{VAULT}/.default"))
    assert code == 7000215
    assert "managed identity" in _latest(env).detail
    assert _secret_status(env, env.identity.client_id, env.app_secret) == 401


# --- wire shapes --------------------------------------------------------------------------


def _post_token(env: Env, tenant: str | None = None, **fields: str) -> requests.Response:
    return requests.post(f"{env.authority}/{tenant or env.tenant}/oauth2/v2.0/token",
                         data=fields, headers={"client-request-id": "corr-1234"},
                         verify=env.verify, timeout=10)


def test_error_body_has_entra_shape(env: Env) -> None:
    response = _post_token(env, client_id=env.identity.client_id)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "error_description", "error_codes", "timestamp", "trace_id",
                         "correlation_id", "error_uri"}
    assert body["error"] == "invalid_request" and body["error_codes"] == [900144]
    assert DESCRIPTION.match(body["error_description"]), body["error_description"]
    assert "'grant_type'" in body["error_description"]
    assert body["correlation_id"] == "corr-1234"
    assert body["trace_id"] in body["error_description"]
    assert body["timestamp"] in body["error_description"]
    assert body["error_uri"] == f"{env.authority}/error?code=900144"


@pytest.mark.parametrize("fields, code, error, status, check", [
    ({"grant_type": "password"}, 70003, "unsupported_grant_type", 400, "request"),
    ({"grant_type": "client_credentials", "scope": f"{VAULT}/.default"}, 900144,
     "invalid_request", 400, "request"),
    ({"grant_type": "client_credentials", "client_id": "x", "scope": f"{VAULT}/.default"},
     7000218, "invalid_client", 401, "request"),
    ({"grant_type": "client_credentials", "client_id": "x", "scope": f"{VAULT}/.default",
      "client_assertion_type": "urn:wrong", "client_assertion": "a.b.c"}, 900144,
     "invalid_request", 400, "request"),
    ({"grant_type": "client_credentials", "client_id": "x", "scope": "User.Read",
      "client_secret": "s"}, 1002012, "invalid_scope", 400, "scope"),
], ids=["unsupported-grant", "no-client-id", "no-credential", "wrong-assertion-type",
        "scope-without-default"])
def test_request_shape_errors(env: Env, fields: dict[str, str], code: int, error: str,
                              status: int, check: str) -> None:
    response = _post_token(env, **fields)
    body = response.json()
    assert (response.status_code, body["error"], body["error_codes"]) == (status, error, [code])
    decision = _latest(env)
    assert (decision.code, decision.check, decision.allowed) == (f"AADSTS{code}", check, False)


def test_extra_fields_are_tolerated(env: Env) -> None:
    assertion = _projected(env)
    SENT.append(assertion)
    response = _post_token(
        env, grant_type="client_credentials", client_id=env.identity.client_id,
        scope=f"{VAULT}/.default openid profile offline_access", client_info="1",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
        claims=json.dumps({"access_token": {"xms_cc": {"values": ["CP1"]}}}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] > 300
    assert env.signer.verify(body["access_token"], (VAULT,))["appidacr"] == "2"


def test_openid_configuration_and_keys(env: Env) -> None:
    base = f"{env.authority}/{env.tenant}"
    document = requests.get(f"{base}/v2.0/.well-known/openid-configuration",
                            verify=env.verify, timeout=10).json()
    assert document["issuer"] == f"{base}/v2.0"
    assert document["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert document["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    keys = requests.get(document["jwks_uri"], verify=env.verify, timeout=10).json()
    assert keys == env.signer.jwks()


def test_unknown_tenant_discovery_is_aadsts90002(msal_env: Env) -> None:
    env = msal_env
    tenant = str(uuid.uuid4())
    response = requests.get(f"{env.authority}/{tenant}/v2.0/.well-known/openid-configuration",
                            verify=env.verify, timeout=10)
    body = response.json()
    assert (response.status_code, body["error"], body["error_codes"]) == (
        400, "invalid_tenant", [90002])
    assert f"Tenant '{tenant}' not found" in body["error_description"]
    with pytest.raises(ValueError, match="Unable to get authority configuration") as caught:
        _msal_app(env, _projected(env), tenant=tenant)
    assert "AADSTS90002" in str(caught.value.__context__)  # MSAL chains the discovery error


def test_msal_instance_discovery(msal_env: Env) -> None:
    """MSAL's own Authority resolves our tenant through /common/discovery/instance."""
    env = msal_env
    session = requests.Session()
    session.verify = env.verify
    authority = msal.authority.Authority(
        f"{env.authority}/{env.tenant}", session,
        instance_discovery=f"{env.authority}/common/discovery/instance")
    assert authority.token_endpoint == f"{env.authority}/{env.tenant}/oauth2/v2.0/token"
    payload = session.get(f"{env.authority}/common/discovery/instance", params={
        "api-version": "1.1",
        "authorization_endpoint": f"https://127.0.0.1/{env.tenant}/oauth2/v2.0/authorize",
    }, timeout=10).json()
    assert set(payload) == {"tenant_discovery_endpoint", "api-version", "metadata"}
    assert {"preferred_network", "preferred_cache", "aliases"} <= set(payload["metadata"][0])


# --- hygiene (keep last: it checks what the tests above sent) -----------------------------


def test_decision_feed_never_holds_an_assertion_or_secret(env: Env) -> None:
    _workload_token(env, _projected(env))
    _refused(lambda: _workload_token(env, _other_account(ServiceAccountRef("x", "y"))(env)))
    response = requests.get(env.entra.decisions_url, verify=env.verify, timeout=10)
    feed = response.text
    assert response.status_code == 200 and len(response.json()) >= 2
    assert SENT and not any(assertion in feed for assertion in SENT)
    assert not any(assertion.rsplit(".", 1)[-1] in feed for assertion in SENT
                   if assertion.count(".") == 2 and len(assertion.rsplit(".", 1)[-1]) > 20)
    assert not JWT.search(feed) and env.app_secret not in feed
    assert "sha256:" in feed
