"""No secret in a repr: `pytest -l`, a traceback through a fixture, a log line with an object
show ids, claims and digests, never a client secret, a private key or a token."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossfed.azure.directory import ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.azure.keyvault.model import SecretVersion
from crossfed.issuer.keys import SigningKey
from crossfed.pki import RunCA
from crossfed.webhooks.charts import WebhookPKI

pytestmark = [pytest.mark.local]


def _pem_body(key: SigningKey) -> list[str]:
    """Lines of the private key's PEM (each a run of key material) and its private exponent."""
    lines = [line for line in key.private_pem().decode().splitlines() if "-----" not in line]
    return [*lines, str(key.private_key.private_numbers().d)]


def _leaks(text: str, *secrets: str) -> list[str]:
    return [secret[-12:] for secret in secrets if secret and secret in text]


def test_signing_key_repr_shows_its_kid_not_its_private_key() -> None:
    key = SigningKey.generate()
    shown = repr(key)
    assert key.kid in shown
    assert _leaks(shown, *_pem_body(key)) == [] and "PRIVATE" not in shown


def test_service_principal_repr_has_no_client_secret() -> None:
    principal = ServicePrincipal("tenant", "admin", kind="application",
                                 client_secrets=["s3cr3t-Value-0123456789abcdef"])
    assert principal.client_id in repr(principal)
    assert _leaks(repr(principal), *principal.client_secrets) == []


def test_access_token_and_secret_value_reprs_hide_the_value() -> None:
    principal = ServicePrincipal("tenant", "app")
    issued = AccessTokenSigner().issue(principal, "https://vault.azure.net")
    assert principal.object_id in repr(issued)  # the claims say what it is
    assert _leaks(repr(issued), issued.token, issued.token.split(".")[2]) == []
    version = SecretVersion("the-secret-value-of-the-vault")
    assert version.version in repr(version) and "the-secret-value" not in repr(version)


def test_web_identity_request_repr_has_no_token() -> None:
    from crossfed.aws.web_identity import parse_request

    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
    request = parse_request({"RoleArn": "arn:aws:iam::123456789012:role/r",
                             "RoleSessionName": "session", "WebIdentityToken": token})
    assert request.token == token and "arn:aws:iam::123456789012:role/r" in repr(request)
    assert _leaks(repr(request), token, token.split(".")[2]) == []


def test_webhook_pki_and_run_ca_reprs_hold_no_private_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    pki = WebhookPKI("CERT", key.private_pem().decode(), "CA")
    assert _leaks(repr(pki), *_pem_body(key)) == [] and "CERT" in repr(pki)
    ca = RunCA(tmp_path / "pki")
    context = ca.server_context("listener", "127.0.0.1")
    server_key = context.key_path.read_text()
    assert _leaks(repr(ca), *server_key.splitlines()[1:-1]) == []


def test_the_run_clouds_reprs_hold_no_azure_secret_or_signing_key(crossfed_clouds) -> None:
    azure = crossfed_clouds.azure
    secrets = [azure.admin_secret, *azure.admin.client_secrets]
    key = crossfed_clouds.issuer.issuer.key
    for shown in (repr(azure), repr(azure.admin), repr(crossfed_clouds.issuer),
                  repr(crossfed_clouds)):
        assert _leaks(shown, *secrets, *_pem_body(key)) == []
    assert azure.admin.client_id in repr(azure)  # the rest of the repr is still there


INNER_TEST = textwrap.dedent('''
    import json, os

    def _tell_the_outer_test(clouds):  # returns before the failure: not in the traceback
        key = clouds.issuer.issuer.key
        with open(os.environ["SECRETS_OUT"], "w") as out:
            json.dump({"admin_secret": clouds.azure.admin_secret,
                       "client_id": clouds.azure.admin.client_id,
                       "client_secrets": clouds.azure.admin.client_secrets,
                       "d": str(key.private_key.private_numbers().d),
                       "pem": [line for line in key.private_pem().decode().splitlines()
                               if "-----" not in line]}, out)

    def test_fails_with_the_clouds_in_scope(crossfed_clouds):
        clouds = crossfed_clouds
        _tell_the_outer_test(clouds)
        azure, admin, key = clouds.azure, clouds.azure.admin, clouds.issuer.issuer.key
        assert clouds is None, "fails on purpose: -l shows every local's repr"
''')


def test_a_failing_test_with_showlocals_prints_no_secret(tmp_path: Path) -> None:
    """A real pytest run (-l -vv: locals shown in full, not cut at 240 characters; long
    tracebacks) failing inside a test that holds the clouds."""
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = tmp_path / "secrets.json"
    env = {**os.environ, "SECRETS_OUT": str(out)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-l", "-vv", "--tb=long", "-p", "no:cacheprovider",
         "--crossfed-env", "process", "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    shown = done.stdout + done.stderr
    assert done.returncode == 1 and "fails on purpose" in shown, shown[-3000:]
    secrets = json.loads(out.read_text())
    # The locals really were printed, in full: the admin's client id is deep inside them.
    assert re.search(r"clouds\s+= LocalStandIns\(", shown), shown[-3000:]
    assert re.search(r"admin\s+= ServicePrincipal\(", shown), shown[-3000:]
    assert shown.count(secrets["client_id"]) >= 3, shown[-3000:]
    values = [secrets["admin_secret"], *secrets["client_secrets"], secrets["d"],
              *secrets["pem"]]
    assert _leaks(shown, *values) == []
