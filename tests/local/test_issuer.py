"""The self-hosted issuer: key files, what it serves over HTTPS, and the claims it mints."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from crossfed.issuer.keys import SigningKey
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.pki import RunCA

pytestmark = [pytest.mark.local]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    ca = RunCA(tmp_path_factory.mktemp("pki"))
    server = IssuerServer(ca).start()
    yield ca, server
    server.stop()


def test_private_keys_are_written_owner_only(tmp_path: Path) -> None:
    private, public = SigningKey.generate().write(tmp_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in public.read_bytes()
    ca = RunCA(tmp_path / "pki")
    ca.server_context("srv", "127.0.0.1")
    assert stat.S_IMODE((tmp_path / "pki" / "srv.key").stat().st_mode) == 0o600


def test_discovery_and_jwks_are_served_over_https_with_the_run_ca(served) -> None:
    ca, server = served
    discovery = requests.get(f"{server.url}/.well-known/openid-configuration",
                             verify=str(ca.bundle_path), timeout=5).json()
    assert discovery["issuer"] == server.url
    assert discovery["jwks_uri"] == f"{server.url}/openid/v1/jwks"
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = requests.get(discovery["jwks_uri"], verify=str(ca.bundle_path), timeout=5).json()
    assert [k["kid"] for k in keys["keys"]] == [server.issuer.key.kid]
    assert keys["keys"][0]["kty"] == "RSA" and "d" not in keys["keys"][0]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/.well-known/openid-configuration", timeout=5)  # system roots
    assert server.app.fetches["/openid/v1/jwks"] >= 1


def test_minted_token_has_the_claims_of_a_projected_token(served) -> None:
    ca, server = served
    token = server.issuer.mint(ServiceAccountRef("team-a", "reader"), ["sts.amazonaws.com"], 900)
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK(server.issuer.jwks()["keys"][0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="sts.amazonaws.com",
                        issuer=server.url)
    assert header["alg"] == "RS256" and header["kid"] == server.issuer.key.kid
    assert claims["sub"] == "system:serviceaccount:team-a:reader"
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["exp"] - claims["iat"] == 900 and claims["nbf"] == claims["iat"]
    kube = claims["kubernetes.io"]
    assert kube["namespace"] == "team-a" and kube["serviceaccount"]["name"] == "reader"
    assert {"name", "uid"} <= set(kube["pod"])


def test_kid_is_derived_from_the_public_key_like_kube_apiserver() -> None:
    key = SigningKey.generate()
    # kind facts §1.2: kid = base64url_nopad(sha256(DER(PKIX public key))), computed here
    der = key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert key.kid == expected
    assert key.kid != SigningKey.generate().kid


@pytest.mark.parametrize("text", ["nons", "/x", "ns/", "a/b/c"])
def test_service_account_reference_rejects_malformed_names(text: str) -> None:
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        ServiceAccountRef.parse(text)


# --- the issuer, as kube-apiserver publishes and signs (kind-and-charts-facts.md §1.2) ---

def test_jwks_keys_carry_kube_apiservers_fields_only(served) -> None:
    ca, server = served
    [key] = requests.get(server.issuer.jwks_uri, verify=str(ca.bundle_path),
                         timeout=5).json()["keys"]
    assert set(key) == {"use", "kty", "kid", "alg", "n", "e"}  # no key_ops next to use
    assert (key["use"], key["kty"], key["alg"]) == ("sig", "RSA", "RS256")
    assert key["kid"] == server.issuer.kid


def test_token_header_is_alg_and_kid_like_kube_apiserver(served) -> None:
    _, server = served
    token = server.issuer.mint(ServiceAccountRef("team-a", "reader"), ["sts.amazonaws.com"])
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": server.issuer.kid}


def test_issuer_documents_answer_head(served) -> None:
    ca, server = served
    for path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
        response = requests.head(server.url + path, verify=str(ca.bundle_path), timeout=5)
        assert response.status_code == 200 and response.content == b""
