"""Token-endpoint answers an outside check found missing (issue 11, point 7), each as Entra gives
it, through azure-identity, MSAL or raw HTTP:

- a client-credentials request without `scope` is AADSTS90014 (not 900144), for an assertion and
  for a client secret;
- any verb but POST on the token endpoint is AADSTS900561;
- a scope whose resource the tenant does not know is AADSTS500011 (invalid_resource), not a
  token; every resource the harness itself asks for stays known.

Sources are next to the error classes in crossfed/azure/entra/errors.py.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

from crossfed.azure.arm.server import MANAGEMENT_AUDIENCES
from crossfed.azure.directory import Directory, FederatedCredential, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner, resource_of
from crossfed.azure.entra.server import KNOWN_RESOURCES, EntraStandIn
from crossfed.azure.keyvault.errors import VAULT_RESOURCE
from crossfed.azure.provision import MANAGEMENT_SCOPE
from crossfed.decisions import Decision
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.pki import RunCA
from crossfed.plan import AZURE_AUDIENCE
from crossfed.probe.azure import VAULT_SCOPE

pytestmark = [pytest.mark.local, pytest.mark.azure]

SA = ServiceAccountRef("entra-deviations", "workload")
AUD = "api://AzureADTokenExchange"
VAULT = "https://vault.azure.net"
UNKNOWN = "https://unknown-resource.example.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DESCRIPTION = re.compile(
    r"^AADSTS(\d+): (.+)\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: \S+\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", re.DOTALL)
BODY_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id",
             "correlation_id", "error_uri"}


@dataclass
class Env:
    tmp: Path
    ca: RunCA
    issuer: IssuerServer
    tenant: str
    identity: ServicePrincipal
    app: ServicePrincipal
    app_secret: str
    entra: EntraStandIn

    @property
    def verify(self) -> str:
        return str(self.ca.bundle_path)

    @property
    def authority(self) -> str:
        return self.entra.authority_host

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant}/oauth2/v2.0/token"

    def assertion(self) -> str:
        return self.issuer.issuer.mint(SA, [AUD])

    def latest(self) -> Decision:
        return self.entra.decisions.all()[-1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("entra-deviations")
    ca = RunCA(tmp / "pki")
    issuer = IssuerServer(ca, "deviations-issuer").start()
    directory = Directory()
    tenant = directory.add_tenant()
    identity = directory.add(ServicePrincipal(tenant, "kv-reader"))
    directory.put_federated_credential(
        identity, FederatedCredential("kv-reader-fic", issuer.url, SA.subject, [AUD]))
    app_secret = secrets.token_urlsafe(30)
    app = directory.add(ServicePrincipal(tenant, "crossfed-admin", kind="application",
                                         client_secrets=[app_secret]))
    entra = EntraStandIn(ca, directory, AccessTokenSigner(),
                         trusted_roots=str(ca.bundle_path)).start()
    yield Env(tmp, ca, issuer, tenant, identity, app, app_secret, entra)
    entra.stop()
    issuer.stop()


@pytest.fixture
def msal_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    """MSAL's `verify=` is overridden by REQUESTS_CA_BUNDLE (requests' merge rule)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env.verify)
    return env


def _entra_body(response: requests.Response) -> tuple[int, str, list[int], str]:
    """(status, error, error_codes, the description's message) after checking Entra's shape."""
    body = response.json()
    assert set(body) == BODY_KEYS
    described = DESCRIPTION.match(body["error_description"])
    assert described, "error_description is not 'AADSTSn: msg' + Trace/Correlation/Timestamp"
    assert [int(described.group(1))] == body["error_codes"]
    assert body["error_uri"].endswith(f"/error?code={body['error_codes'][0]}")
    assert body["trace_id"] in body["error_description"]
    return response.status_code, body["error"], body["error_codes"], described.group(2)


def _credential_fields(env: Env, kind: str) -> dict[str, str]:
    if kind == "assertion":
        return {"client_id": env.identity.client_id, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": env.assertion()}
    return {"client_id": env.app.client_id, "client_secret": env.app_secret}


def _workload_credential(env: Env) -> WorkloadIdentityCredential:
    token_file = env.tmp / f"token-{uuid.uuid4().hex}"
    token_file.write_text(env.assertion())
    return WorkloadIdentityCredential(
        tenant_id=env.tenant, client_id=env.identity.client_id,
        token_file_path=str(token_file), authority=env.authority, connection_verify=env.verify)


def _secret_credential(env: Env) -> ClientSecretCredential:
    return ClientSecretCredential(
        env.tenant, env.app.client_id, env.app_secret, authority=env.authority,
        disable_instance_discovery=True, connection_verify=env.verify)


def _msal_app(env: Env) -> msal.ConfidentialClientApplication:
    assertion = env.assertion()
    return msal.ConfidentialClientApplication(
        env.identity.client_id, authority=f"{env.authority}/{env.tenant}",
        client_credential={"client_assertion": lambda: assertion},
        instance_discovery=False, verify=env.verify)


# --- AADSTS90014: no scope -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["assertion", "secret"])
@pytest.mark.parametrize("scope", [None, "", "  "], ids=["absent", "empty", "blank"])
def test_missing_scope_is_aadsts90014(env: Env, kind: str, scope: str | None) -> None:
    fields = {"grant_type": "client_credentials", **_credential_fields(env, kind)}
    if scope is not None:
        fields["scope"] = scope
    response = requests.post(env.token_url, data=fields, verify=env.verify, timeout=10)
    status, error, codes, message = _entra_body(response)
    assert (status, error, codes) == (400, "invalid_request", [90014])
    assert message.startswith("The required field 'scope' is missing from the credential.")
    decision = env.latest()
    assert (decision.allowed, decision.code, decision.check) == (False, "AADSTS90014", "request")


def test_msal_without_scopes_gets_aadsts90014(msal_env: Env) -> None:
    """MSAL sends no `scope` field for an empty scope list and returns Entra's error dict."""
    result = _msal_app(msal_env).acquire_token_for_client([])
    assert "access_token" not in result
    assert (result["error"], result["error_codes"]) == ("invalid_request", [90014])
    assert "'scope' is missing" in result["error_description"]


# --- AADSTS900561: not a POST ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_verbs_on_the_token_endpoint_are_aadsts900561(env: Env, method: str) -> None:
    response = requests.request(method, env.token_url, params={"grant_type": "client_credentials"},
                                verify=env.verify, timeout=10)
    status, error, codes, message = _entra_body(response)
    assert (status, error, codes) == (400, "invalid_request", [900561])
    assert message == f"The endpoint only accepts POST requests. Received a {method} request."
    assert response.headers["Content-Type"].startswith("application/json")
    decision = env.latest()
    assert (decision.allowed, decision.code, decision.check) == (False, "AADSTS900561", "method")


def test_get_is_refused_before_the_tenant_is_looked_up(env: Env) -> None:
    response = requests.get(f"{env.authority}/{uuid.uuid4()}/oauth2/v2.0/token",
                            verify=env.verify, timeout=10)
    assert _entra_body(response)[:3] == (400, "invalid_request", [900561])


def test_post_still_answers_on_the_token_endpoint(env: Env) -> None:
    """The route now takes every verb: POST must still reach the grant."""
    issued = _secret_credential(env).get_token(f"{VAULT}/.default")
    assert env.entra.signer.verify(issued.token, (VAULT,))["appid"] == env.app.client_id


# --- AADSTS500011: a resource the tenant does not know ---------------------------------------


def _refused(call: Any) -> tuple[str, int | None]:
    with pytest.raises(ClientAuthenticationError) as caught:
        call()
    response = caught.value.response
    return str(caught.value), None if response is None else response.status_code


def test_workload_identity_for_an_unknown_resource_is_aadsts500011(env: Env) -> None:
    message, status = _refused(lambda: _workload_credential(env).get_token(f"{UNKNOWN}/.default"))
    assert status == 400
    assert "(invalid_resource) AADSTS500011: The resource principal named " in message
    assert f"named {UNKNOWN} was not found in the tenant named {env.tenant}." in message
    decision = env.latest()
    assert (decision.allowed, decision.code, decision.check) == (False, "AADSTS500011",
                                                                 "resource")
    assert decision.target == env.identity.client_id


def test_client_secret_for_an_unknown_resource_is_aadsts500011(env: Env) -> None:
    message, _ = _refused(lambda: _secret_credential(env).get_token(f"{UNKNOWN}/.default"))
    assert "AADSTS500011" in message
    assert env.latest().code == "AADSTS500011"


def test_msal_for_an_unknown_resource_gets_invalid_resource(msal_env: Env) -> None:
    result = _msal_app(msal_env).acquire_token_for_client([f"{UNKNOWN}/.default"])
    assert "access_token" not in result
    assert (result["error"], result["error_codes"]) == ("invalid_resource", [500011])


def test_raw_unknown_resource_body(env: Env) -> None:
    fields = {"grant_type": "client_credentials", "scope": f"{UNKNOWN}/.default",
              **_credential_fields(env, "secret")}
    response = requests.post(env.token_url, data=fields, verify=env.verify, timeout=10)
    status, error, codes, message = _entra_body(response)
    assert (status, error, codes) == (400, "invalid_resource", [500011])
    assert message.startswith(f"The resource principal named {UNKNOWN} was not found in the "
                              f"tenant named {env.tenant}.")
    assert "access_token" not in response.text


@pytest.mark.parametrize("scope, audience", [
    (f"{VAULT}/.default", VAULT),
    ("https://management.azure.com/.default", "https://management.azure.com"),
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
    (f"{AUD}/.default", AUD),
    ("https://graph.microsoft.com/.default", "https://graph.microsoft.com"),
], ids=["vault", "arm", "arm-core", "token-exchange", "graph"])
def test_known_resources_get_tokens(env: Env, scope: str, audience: str) -> None:
    token = _secret_credential(env).get_token(scope).token
    claims = env.entra.signer.verify(token, (audience,))
    assert claims["aud"].rstrip("/") == audience.rstrip("/")


def test_every_resource_the_harness_requests_is_known() -> None:
    """The harness's own scopes and audiences, read from the modules that use them."""
    wanted = {resource_of(VAULT_SCOPE), resource_of(MANAGEMENT_SCOPE), VAULT_RESOURCE,
              AZURE_AUDIENCE, *MANAGEMENT_AUDIENCES}
    unknown = sorted(r for r in wanted if r.rstrip("/") not in KNOWN_RESOURCES)
    assert not unknown, unknown
