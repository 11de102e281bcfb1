"""Key Vault's api-version (issue 11, point 7): there is no default, so a request without one is
400 BadParameter, and so is a value that is no version's shape ("abc", "7.x"); a well-formed
version is accepted even where Key Vault has no such version (7.9). Driven through the real
SecretClient (its `api_version` is sent as given) and raw HTTP.

Sources are next to the messages in crossfed/azure/keyvault/errors.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import HttpChallengeCache

from crossfed.azure.directory import ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner, resource_of
from crossfed.azure.keyvault.errors import LATEST_API_VERSION
from crossfed.azure.keyvault.model import AccessPolicy, Vault
from crossfed.azure.keyvault.server import KeyVaultFleet
from crossfed.decisions import Decision
from crossfed.pki import RunCA

pytestmark = [pytest.mark.local, pytest.mark.azure]

VAULT = "https://vault.azure.net"
AUTHORITY = "https://login.microsoftonline.com"  # only named in the challenge, never called
VALUE = "api-version-probe"


class SignerCredential:
    """A TokenCredential: signs the token Entra would issue for this principal and scope."""

    def __init__(self, signer: AccessTokenSigner, principal: ServicePrincipal) -> None:
        self.signer, self.principal = signer, principal

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        issued = self.signer.issue(self.principal, resource_of(scopes[0]))
        return AccessToken(issued.token, int(time.time()) + 3599)


@dataclass
class Env:
    ca: RunCA
    signer: AccessTokenSigner
    reader: ServicePrincipal
    fleet: KeyVaultFleet
    vault: Vault

    @property
    def verify(self) -> str:
        return str(self.ca.bundle_path)

    def client(self, api_version: str | None = None) -> SecretClient:
        options: dict[str, Any] = {} if api_version is None else {"api_version": api_version}
        return SecretClient(vault_url=self.vault.uri,
                            credential=SignerCredential(self.signer, self.reader),
                            verify_challenge_resource=False, connection_verify=self.verify,
                            **options)

    def latest(self) -> Decision:
        return self.fleet.decisions.all()[-1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca = RunCA(tmp_path_factory.mktemp("keyvault-deviations") / "pki")
    signer = AccessTokenSigner()
    tenant = str(uuid.uuid4())
    reader = ServicePrincipal(tenant, "kv-reader")
    fleet = KeyVaultFleet(ca, signer, AUTHORITY)
    vault = Vault("kv-versions", tenant,
                  access_policies=[AccessPolicy(tenant, reader.object_id, ["get", "list"])])
    fleet.open_vault(vault)
    HttpChallengeCache.remove_challenge_for_url(vault.uri)  # a reused port's old challenge
    vault.set_secret("probe", VALUE)
    yield Env(ca, signer, reader, fleet, vault)
    fleet.stop()


@pytest.mark.parametrize("version", ["abc", "7.x", "7", "7.4.1", "v7.4", "2025-13-01",
                                     "2025-07-01-beta", "latest"])
def test_malformed_api_version_is_bad_parameter(env: Env, version: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        env.client(version).get_secret("probe")
    error = caught.value
    assert error.status_code == 400
    assert error.error is not None and error.error.code == "BadParameter"
    assert error.error.message == (
        f"The specified version ({version}) is not recognized. Consider using the latest "
        f"supported version ({LATEST_API_VERSION}).")
    decision = env.latest()
    assert (decision.allowed, decision.code, decision.check) == (False, "BadParameter",
                                                                 "api_version")


def test_empty_api_version_from_the_sdk_is_missing(env: Env) -> None:
    with pytest.raises(HttpResponseError) as caught:
        env.client("").get_secret("probe")
    error = caught.value
    assert error.status_code == 400
    assert error.error is not None and error.error.code == "BadParameter"
    assert error.error.message.startswith("The api-version query parameter is required")


@pytest.mark.parametrize("path", ["secrets/probe", "secrets/probe/", "secrets"])
def test_no_api_version_is_bad_parameter_before_the_challenge(env: Env, path: str) -> None:
    """Key Vault has no default version; the refusal comes before any 401 challenge."""
    response = requests.get(f"{env.vault.uri}{path}", verify=env.verify, timeout=10)
    assert response.status_code == 400
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "BadParameter"
    assert body["error"]["message"] == (
        "The api-version query parameter is required: Key Vault has no default version. "
        f"Consider using the latest supported version ({LATEST_API_VERSION}).")
    assert env.latest().check == "api_version"


@pytest.mark.parametrize("version", [None, "7.4", "7.9", "2016-10-01", "2025-07-01",
                                     "7.6-preview.2", "2031-01-01", "2025-06-01-preview"],
                         ids=lambda v: v or "sdk-default")
def test_well_formed_api_versions_are_served(env: Env, version: str | None) -> None:
    served = env.client(version).get_secret("probe").value == VALUE
    assert served
    assert env.latest().allowed


def test_no_api_version_is_refused_with_a_token_too(env: Env) -> None:
    token = env.signer.issue(env.reader, VAULT).token
    response = requests.get(f"{env.vault.uri}secrets/probe", verify=env.verify, timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "BadParameter"
    assert VALUE not in response.text
