"""`crossfed serve` and `crossfed token` as a user drives them: only what the JSON line says."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from crossfed.aws.trust_policy_templates import irsa_trust_policy
from crossfed.azure.directory import ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims, sign
from crossfed.jwt_view import parse
from crossfed.oidc.fetch import top_thumbprint
from fixtures.serve import CLI, Serve, ServeInfo, mint_token, start_serve

pytestmark = [pytest.mark.local]


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    state = tmp_path_factory.mktemp("serve")
    running = start_serve(state)
    yield running
    assert running.stop() == 0
    assert not (state / "state.json").exists()


@pytest.fixture(scope="module")
def served(serving: Serve) -> ServeInfo:
    return serving.info


def token(info: dict[str, Any], account: str, audience: str) -> str:
    return mint_token(info["state_dir"], account, audience)


def test_the_json_line_names_everything_needed(served: dict[str, Any]) -> None:
    for key in ("issuer", "ca_bundle", "state_dir"):
        assert served[key]
    for key in ("endpoint_url", "region", "account_id", "access_key_id", "secret_access_key"):
        assert served["aws"][key]
    for key in ("authority_host", "tenant_id", "subscription_id", "arm_endpoint",
                "admin_client_id", "admin_client_secret"):
        assert served["azure"][key]
    assert served["issuer"].startswith("https://127.0.0.1:")
    discovery = requests.get(served["issuer"] + "/.well-known/openid-configuration",
                             verify=served["ca_bundle"], timeout=10).json()
    assert discovery["issuer"] == served["issuer"]
    assert stat.S_IMODE(os.stat(served["signing_key"]).st_mode) == 0o600


def test_aws_federation_by_hand(served: dict[str, Any]) -> None:
    aws, ca = served["aws"], served["ca_bundle"]
    session = boto3.Session(aws_access_key_id=aws["access_key_id"], region_name=aws["region"],
                            aws_secret_access_key=aws["secret_access_key"])
    kwargs = {"endpoint_url": aws["endpoint_url"], "verify": ca}
    iam, s3 = session.client("iam", **kwargs), session.client("s3", **kwargs)
    s3.create_bucket(Bucket="by-hand")
    s3.put_object(Bucket="by-hand", Key="test-file.txt", Body=b"x")
    provider = iam.create_open_id_connect_provider(
        Url=served["issuer"], ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=[top_thumbprint(served["issuer"])])["OpenIDConnectProviderArn"]
    subject = ServiceAccountRef("demo", "app").subject
    role = iam.create_role(RoleName="by-hand", AssumeRolePolicyDocument=json.dumps(
        irsa_trust_policy(provider, served["issuer"], subject, "sts.amazonaws.com")))["Role"]
    iam.put_role_policy(RoleName="by-hand", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
             "Resource": ["arn:aws:s3:::by-hand", "arn:aws:s3:::by-hand/*"]}]}))
    sts = boto3.client("sts", region_name=aws["region"], config=Config(
        signature_version=UNSIGNED), **kwargs)
    answer = sts.assume_role_with_web_identity(
        RoleArn=role["Arn"], RoleSessionName="by-hand",
        WebIdentityToken=token(served, "demo/app", "sts.amazonaws.com"))
    assert answer["SubjectFromWebIdentityToken"] == subject
    creds = answer["Credentials"]
    assumed = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name=aws["region"])
    assert assumed.client("sts", **kwargs).get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{aws['account_id']}:assumed-role/by-hand/by-hand")
    listed = assumed.client("s3", **kwargs).list_objects_v2(Bucket="by-hand")["Contents"]
    assert [o["Key"] for o in listed] == ["test-file.txt"]
    # A key crossfed did not generate, with the right issuer and subject: refused.
    foreign = sign(service_account_claims(served["issuer"], ServiceAccountRef("demo", "app"),
                                          ["sts.amazonaws.com"]), SigningKey.generate())
    with pytest.raises(ClientError) as caught:
        sts.assume_role_with_web_identity(RoleArn=role["Arn"], RoleSessionName="foreign",
                                          WebIdentityToken=foreign)
    assert caught.value.response["Error"]["Code"] == "InvalidIdentityToken"
    feed = requests.get(aws["decisions_url"], verify=ca, timeout=10).json()
    assert any(d["code"] == "InvalidIdentityToken" for d in feed)
    leaked = foreign in json.dumps(feed)  # a boolean: a failure must not print the token
    assert not leaked, "the refused token appears in the decision feed"


def test_azure_federation_by_hand(served: dict[str, Any], tmp_path: Path) -> None:
    az, ca = served["azure"], served["ca_bundle"]
    admin = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                   az["admin_client_secret"], authority=az["authority_host"],
                                   connection_verify=ca, disable_instance_discovery=True)
    common = {"base_url": az["arm_endpoint"], "connection_verify": ca}
    msi = ManagedServiceIdentityClient(admin, az["subscription_id"], **common)
    vaults = KeyVaultManagementClient(admin, az["subscription_id"], **common)
    group = az["resource_group"]
    identity = msi.user_assigned_identities.create_or_update(group, "by-hand",
                                                             {"location": "westeurope"})
    msi.federated_identity_credentials.create_or_update(group, "by-hand", "k8s", {
        "issuer": served["issuer"], "subject": "system:serviceaccount:demo:kv",
        "audiences": ["api://AzureADTokenExchange"]})
    oid = parse(admin.get_token("https://management.azure.com/.default").token).claims["oid"]
    vault = vaults.vaults.begin_create_or_update(group, "byhand", {
        "location": "westeurope", "properties": {
            "tenantId": az["tenant_id"], "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [
                {"tenantId": az["tenant_id"], "objectId": oid,
                 "permissions": {"secrets": ["set", "get"]}},
                {"tenantId": az["tenant_id"], "objectId": identity.principal_id,
                 "permissions": {"secrets": ["get"]}}]}}).result()
    url = vault.properties.vault_uri
    SecretClient(url, admin, verify_challenge_resource=False,
                 connection_verify=ca).set_secret("greeting", "hello by hand")
    token_file = tmp_path / "token"
    token_file.write_text(token(served, "demo/kv", "api://AzureADTokenExchange"))
    workload = WorkloadIdentityCredential(tenant_id=az["tenant_id"],
                                          client_id=identity.client_id,
                                          token_file_path=str(token_file),
                                          authority=az["authority_host"], connection_verify=ca)
    reader = SecretClient(url, workload, verify_challenge_resource=False, connection_verify=ca)
    assert reader.get_secret("greeting").value == "hello by hand"
    # An assertion signed by a key crossfed did not generate: refused by Entra ID.
    token_file.write_text(sign(service_account_claims(
        served["issuer"], ServiceAccountRef("demo", "kv"), ["api://AzureADTokenExchange"]),
        SigningKey.generate()))
    stranger = WorkloadIdentityCredential(tenant_id=az["tenant_id"],
                                          client_id=identity.client_id,
                                          token_file_path=str(token_file),
                                          authority=az["authority_host"], connection_verify=ca)
    with pytest.raises(ClientAuthenticationError, match="AADSTS"):
        stranger.get_token("https://vault.azure.net/.default")
    # A bearer token the Entra stand-in did not sign: refused by Key Vault.
    forged = AccessTokenSigner().issue(ServicePrincipal(az["tenant_id"], "x"),
                                       "https://vault.azure.net").token
    response = requests.get(f"{url}secrets/greeting/?api-version=7.6", verify=ca, timeout=10,
                            headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    with pytest.raises(HttpResponseError):
        SecretClient(url, admin, verify_challenge_resource=False,
                     connection_verify=ca).get_secret("missing-secret")


def test_token_command_reports_bad_input(tmp_path: Path, served: dict[str, Any]) -> None:
    nothing = subprocess.run([*CLI, "token", "--state-dir", str(tmp_path), "--service-account",
                              "a/b", "--audience", "x"], capture_output=True, text=True)
    assert nothing.returncode == 2 and "crossfed serve" in nothing.stderr
    malformed = subprocess.run([*CLI, "token", "--state-dir", served["state_dir"],
                                "--service-account", "no-slash", "--audience", "x"],
                               capture_output=True, text=True)
    assert malformed.returncode == 2 and "NAMESPACE/NAME" in malformed.stderr
    missing = subprocess.run([*CLI, "serve"], capture_output=True, text=True)
    assert missing.returncode == 2 and "--state-dir" in missing.stderr


def _logged(serving: Serve, *lines: str, timeout: float = 5.0) -> str:
    """serve's logs once they hold every line (the drain thread runs behind)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = serving.logs()
        if all(line in logs for line in lines) or time.monotonic() > deadline:
            return logs
        time.sleep(0.05)


def test_serve_logs_carry_no_token(serving: Serve) -> None:
    """serve logs each request it answers (stderr), never the token the request carried: not
    from an STS POST body, an STS GET query string or an Entra client assertion."""
    info, ca = serving.info, serving.info["ca_bundle"]
    aws, az = info["aws"], info["azure"]
    minted = token(info, "demo/app", "sts.amazonaws.com")
    sts = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
           "RoleArn": f"arn:aws:iam::{aws['account_id']}:role/no-such-role",
           "RoleSessionName": "logs", "WebIdentityToken": minted}
    posted = requests.post(aws["endpoint_url"] + "/", data=sts, verify=ca, timeout=10)
    queried = requests.get(aws["endpoint_url"] + "/", params=sts, verify=ca, timeout=10)
    token_path = f"/{az['tenant_id']}/oauth2/v2.0/token"
    exchanged = requests.post(az["authority_host"] + token_path, verify=ca, timeout=10, data={
        "grant_type": "client_credentials", "client_id": "00000000-0000-0000-0000-000000000000",
        "scope": "https://vault.azure.net/.default", "client_assertion": minted,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    expected = [f"{aws['endpoint_url']} POST / -> {posted.status_code}",
                f"{aws['endpoint_url']} GET / -> {queried.status_code}",
                f"{az['authority_host']} POST {token_path} -> {exchanged.status_code}"]
    logs = _logged(serving, *expected)
    for line in expected:  # the logs saw these requests, so the absence below means something
        assert line in logs, f"serve's logs lack {line!r}; they end:\n{logs[-2000:]}"
    # booleans, so a failure does not make pytest print the token
    leaked, signature_leaked = minted in logs, minted.split(".")[2] in logs
    assert not leaked, "serve's logs carry the token"
    assert not signature_leaked, "serve's logs carry the token's signature"
