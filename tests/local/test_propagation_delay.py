"""`crossfed serve --propagation-delay 3` as a separate process, driven through the SDKs only:
new IAM objects, federated credentials and Key Vault access policies take effect after the
delay and answer meanwhile as the clouds do during propagation; reads see them at once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from crossfed.aws.trust_policy_templates import irsa_trust_policy
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.jwt_view import parse
from crossfed.oidc.fetch import top_thumbprint
from fixtures.serve import Serve, ServeInfo, mint_token, start_serve

pytestmark = [pytest.mark.local]

DELAY = 3.0
SLACK = 0.5  # a refusal this long after the write is still inside the delay
WAIT = DELAY + 15.0  # every poll gives up after this
POLL = 0.2
VAULT_SCOPE = "https://vault.azure.net/.default"
T = TypeVar("T")


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    running = start_serve(tmp_path_factory.mktemp("serve-delay"), "--propagation-delay",
                          str(DELAY))
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def served(serving: Serve) -> ServeInfo:
    return serving.info


def token(info: dict[str, Any], account: str, audience: str) -> str:
    return mint_token(info["state_dir"], account, audience)


def until_accepted(attempt: Callable[[], T], refused: type[BaseException],
                   codes: list[str], code_of: Callable[[Any], str]) -> tuple[T, float]:
    """Retry `attempt` every POLL s while it raises `refused`; each refusal's code goes to
    `codes`. Returns the answer and when it came (monotonic). Fails after WAIT s."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return attempt(), time.monotonic()
        except refused as exc:
            codes.append(code_of(exc))
            if time.monotonic() > deadline:
                pytest.fail(f"still refused {WAIT:g} s after the write: {codes[-3:]}")
            time.sleep(POLL)


def aws_code(exc: Any) -> str:
    return str(exc.response["Error"]["Code"])


def test_serve_reports_the_delay(served: ServeInfo) -> None:
    assert served["propagation_delay"] == DELAY


@pytest.fixture(scope="module")
def aws(served: ServeInfo) -> dict[str, Any]:
    info, ca = served["aws"], served["ca_bundle"]
    kwargs = {"endpoint_url": info["endpoint_url"], "verify": ca}
    admin = boto3.Session(aws_access_key_id=info["access_key_id"], region_name=info["region"],
                          aws_secret_access_key=info["secret_access_key"])
    sts = boto3.client("sts", region_name=info["region"],
                       config=Config(signature_version=UNSIGNED), **kwargs)
    return {"iam": admin.client("iam", **kwargs), "s3": admin.client("s3", **kwargs),
            "sts": sts, "kwargs": kwargs, "region": info["region"]}


def test_aws_role_provider_and_policies_take_effect_after_the_delay(
        served: ServeInfo, aws: dict[str, Any]) -> None:
    iam, s3, sts = aws["iam"], aws["s3"], aws["sts"]
    for bucket in ("delay-one", "delay-two"):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    jwt = token(served, "demo/app", "sts.amazonaws.com")
    subject = ServiceAccountRef("demo", "app").subject

    # A new provider and role: AssumeRoleWithWebIdentity is refused as for a missing provider.
    thumbprint = top_thumbprint(served["issuer"])
    written = time.monotonic()  # before the write: no answer in effect comes before + DELAY
    provider = iam.create_open_id_connect_provider(
        Url=served["issuer"], ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=[thumbprint])["OpenIDConnectProviderArn"]
    trust = json.dumps(irsa_trust_policy(provider, served["issuer"], subject,
                                         "sts.amazonaws.com"))
    role = iam.create_role(RoleName="delay-one", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName="delay-one", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                "Resource": "arn:aws:s3:::delay-one/*"}]}))
    with pytest.raises(ClientError) as caught:
        sts.assume_role_with_web_identity(RoleArn=role["Arn"], RoleSessionName="delay",
                                          WebIdentityToken=jwt)
    assert time.monotonic() - written < DELAY - SLACK, "too slow to see the refusal"
    assert aws_code(caught.value) == "InvalidIdentityToken"
    assert "No OpenIDConnect provider found" in caught.value.response["Error"]["Message"]
    # ... while IAM's reads see both at once.
    assert iam.get_role(RoleName="delay-one")["Role"]["Arn"] == role["Arn"]
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider)
    assert iam.list_role_policies(RoleName="delay-one")["PolicyNames"] == ["read"]

    codes: list[str] = []
    answer, accepted = until_accepted(lambda: sts.assume_role_with_web_identity(
        RoleArn=role["Arn"], RoleSessionName="delay", WebIdentityToken=jwt), ClientError, codes,
        aws_code)
    assert accepted - written >= DELAY
    assert set(codes) == {"InvalidIdentityToken"}
    creds = answer["Credentials"]
    session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name=aws["region"])
    assumed_s3 = session.client("s3", **aws["kwargs"])
    codes = []
    until_accepted(lambda: assumed_s3.get_object(Bucket="delay-one", Key="k"), ClientError,
                   codes, aws_code)
    assert set(codes) <= {"AccessDenied"}

    # A second role, the provider now in effect: refused as for a missing role.
    written = time.monotonic()
    role_two = iam.create_role(RoleName="delay-two", AssumeRolePolicyDocument=trust)["Role"]
    with pytest.raises(ClientError) as caught:
        sts.assume_role_with_web_identity(RoleArn=role_two["Arn"], RoleSessionName="delay",
                                          WebIdentityToken=jwt)
    assert time.monotonic() - written < DELAY - SLACK
    assert aws_code(caught.value) == "AccessDenied"
    codes = []
    _, accepted = until_accepted(lambda: sts.assume_role_with_web_identity(
        RoleArn=role_two["Arn"], RoleSessionName="delay", WebIdentityToken=jwt), ClientError,
        codes, aws_code)
    assert accepted - written >= DELAY and set(codes) == {"AccessDenied"}

    # A managed policy attached to the role in effect: S3 refuses until it has propagated.
    policy = iam.create_policy(PolicyName="read-two", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                "Resource": "arn:aws:s3:::delay-two/*"}]}))
    written = time.monotonic()
    iam.attach_role_policy(RoleName="delay-one", PolicyArn=policy["Policy"]["Arn"])
    with pytest.raises(ClientError) as caught:
        assumed_s3.get_object(Bucket="delay-two", Key="k")
    assert time.monotonic() - written < DELAY - SLACK
    assert aws_code(caught.value) == "AccessDenied"
    attached = iam.list_attached_role_policies(RoleName="delay-one")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["read-two"]
    codes = []
    _, accepted = until_accepted(lambda: assumed_s3.get_object(Bucket="delay-two", Key="k"),
                                 ClientError, codes, aws_code)
    assert accepted - written >= DELAY and set(codes) == {"AccessDenied"}
    # The inline policy stays in force throughout.
    assert assumed_s3.get_object(Bucket="delay-one", Key="k")["Body"].read() == b"x"


def aadsts(exc: Any) -> str:
    found = re.search(r"AADSTS\d+", str(exc))
    return found.group(0) if found else type(exc).__name__


def kv_code(exc: Any) -> str:
    return f"{exc.status_code} {exc.error.code if exc.error else None}"


@pytest.fixture(scope="module")
def azure(served: ServeInfo) -> dict[str, Any]:
    az, ca = served["azure"], served["ca_bundle"]
    admin = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                   az["admin_client_secret"], authority=az["authority_host"],
                                   connection_verify=ca, disable_instance_discovery=True)
    common = {"base_url": az["arm_endpoint"], "connection_verify": ca}
    return {"admin": admin, "ca": ca, "az": az, "group": az["resource_group"],
            "msi": ManagedServiceIdentityClient(admin, az["subscription_id"], **common),
            "vaults": KeyVaultManagementClient(admin, az["subscription_id"], **common)}


def workload(azure: dict[str, Any], client_id: str, token_file: Path) -> Any:
    return WorkloadIdentityCredential(tenant_id=azure["az"]["tenant_id"], client_id=client_id,
                                      token_file_path=str(token_file),
                                      authority=azure["az"]["authority_host"],
                                      connection_verify=azure["ca"])


def test_azure_federated_credential_takes_effect_after_the_delay(
        served: ServeInfo, azure: dict[str, Any], tmp_path: Path) -> None:
    msi, group = azure["msi"], azure["group"]
    identity = msi.user_assigned_identities.create_or_update(group, "delay-fic",
                                                             {"location": "westeurope"})
    token_file = tmp_path / "token"
    token_file.write_text(token(served, "demo/fic", "api://AzureADTokenExchange"))
    written = time.monotonic()
    msi.federated_identity_credentials.create_or_update(group, "delay-fic", "k8s", {
        "issuer": served["issuer"], "subject": "system:serviceaccount:demo:fic",
        "audiences": ["api://AzureADTokenExchange"]})
    with pytest.raises(ClientAuthenticationError) as caught:
        workload(azure, identity.client_id, token_file).get_token(VAULT_SCOPE)
    assert time.monotonic() - written < DELAY - SLACK, "too slow to see the refusal"
    assert aadsts(caught.value) == "AADSTS70021"
    # ARM reads the credential at once.
    fic = msi.federated_identity_credentials.get(group, "delay-fic", "k8s")
    assert fic.subject == "system:serviceaccount:demo:fic"
    codes: list[str] = []
    got, accepted = until_accepted(
        lambda: workload(azure, identity.client_id, token_file).get_token(VAULT_SCOPE),
        ClientAuthenticationError, codes, aadsts)
    assert got.token and accepted - written >= DELAY
    assert set(codes) == {"AADSTS70021"}


def test_keyvault_access_policy_takes_effect_after_the_delay(
        served: ServeInfo, azure: dict[str, Any], tmp_path: Path) -> None:
    msi, vaults, group, admin = azure["msi"], azure["vaults"], azure["group"], azure["admin"]
    tenant, ca = azure["az"]["tenant_id"], azure["ca"]
    identity = msi.user_assigned_identities.create_or_update(group, "delay-kv",
                                                             {"location": "westeurope"})
    msi.federated_identity_credentials.create_or_update(group, "delay-kv", "k8s", {
        "issuer": served["issuer"], "subject": "system:serviceaccount:demo:kv",
        "audiences": ["api://AzureADTokenExchange"]})
    oid = parse(admin.get_token("https://management.azure.com/.default").token).claims["oid"]
    written = time.monotonic()
    vault = vaults.vaults.begin_create_or_update(group, "delaykv", {
        "location": "westeurope", "properties": {
            "tenantId": tenant, "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [{"tenantId": tenant, "objectId": oid,
                                "permissions": {"secrets": ["set", "get"]}}]}}).result()
    url = vault.properties.vault_uri
    writer = SecretClient(url, admin, verify_challenge_resource=False, connection_verify=ca)
    codes: list[str] = []
    _, accepted = until_accepted(lambda: writer.set_secret("greeting", "hello"),
                                 HttpResponseError, codes, kv_code)
    assert accepted - written >= DELAY and codes and set(codes) == {"403 Forbidden"}

    token_file = tmp_path / "token"
    token_file.write_text(token(served, "demo/kv", "api://AzureADTokenExchange"))
    reader = SecretClient(url, workload(azure, identity.client_id, token_file),
                          verify_challenge_resource=False, connection_verify=ca)
    written = time.monotonic()
    vaults.vaults.update_access_policy(group, "delaykv", "add", {"properties": {
        "accessPolicies": [{"tenantId": tenant, "objectId": identity.principal_id,
                            "permissions": {"secrets": ["get"]}}]}})
    with pytest.raises(HttpResponseError) as refused:
        reader.get_secret("greeting")
    assert time.monotonic() - written < DELAY - SLACK, "too slow to see the refusal"
    assert kv_code(refused.value) == "403 Forbidden"
    # ARM reads the new policy at once.
    listed = vaults.vaults.get(group, "delaykv").properties.access_policies
    assert identity.principal_id in [p.object_id for p in listed]
    codes = []
    secret, accepted = until_accepted(lambda: reader.get_secret("greeting"), HttpResponseError,
                                      codes, kv_code)
    assert secret.value == "hello" and accepted - written >= DELAY
    assert set(codes) == {"403 Forbidden"}
