"""`crossfed serve --eks-cluster / --aks-cluster / --trust-ca / --host` as a separate process,
driven through the SDKs' standard configuration only (AWS_ENDPOINT_URL, AWS_CA_BUNDLE, the
key pair from serve's JSON line; the AWS CLI as a user runs it)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509

from crossfed.aws.trust_policy_templates import irsa_trust_policy
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.oidc.fetch import top_thumbprint
from crossfed.pki import RunCA
from fixtures.doctor import Outcome, usage_error
from fixtures.serve import CLI, Serve, start_serve

pytestmark = [pytest.mark.local]

EKS_ISSUER = "https://oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
SLASHED_ISSUER = "https://issuer.example.test/clusters/x/"  # kept byte for byte
AKS_ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/0000-1111/"
AUDIENCE = "sts.amazonaws.com"
AZURE_EXCHANGE = "api://AzureADTokenExchange"
ACCOUNT = ServiceAccountRef("demo", "app")


@dataclass
class World:
    serve: Serve
    trusted_issuer: IssuerServer  # behind a CA given to --trust-ca
    untrusted_issuer: IssuerServer  # behind a CA nobody was told of
    home: Path

    @property
    def info(self) -> dict[str, Any]:
        return self.serve.info

    def env(self, **extra: str) -> dict[str, str]:
        aws = self.info["aws"]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home),
               "AWS_ACCESS_KEY_ID": aws["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
               "AWS_ENDPOINT_URL": aws["endpoint_url"], "AWS_CA_BUNDLE": self.info["ca_bundle"],
               "AWS_DEFAULT_REGION": aws["region"]}
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def client(self, service: str, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Any:
        """A client configured the SDK's own way: environment variables only."""
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_EKS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env(**extra).items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(self.home / "none"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(self.home / "none"))
        return boto3.Session().client(service)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("eks-records")
    other_ca = RunCA(base / "other-ca", name="another web PKI")
    trusted = IssuerServer(other_ca, "issuer").start()
    untrusted = IssuerServer(RunCA(base / "third-ca", name="a CA nobody trusts"),
                             "issuer").start()
    home = base / "home"
    home.mkdir()
    serve = start_serve(base / "state", "--eks-cluster", f"demo={EKS_ISSUER}",
                        "--eks-cluster", f"slashed={SLASHED_ISSUER}",
                        "--trust-ca", str(other_ca.bundle_path))
    try:
        yield World(serve, trusted, untrusted, home)
    finally:
        assert serve.stop() == 0
        trusted.stop()
        untrusted.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Outcome:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    return Outcome(done.returncode, done.stdout, done.stderr)


# 1. DescribeCluster through boto3 and the AWS CLI.

def test_describe_cluster_answers_the_eks_cluster_shape(world: World,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    aws = world.info["aws"]
    cluster = world.client("eks", monkeypatch).describe_cluster(name="demo")["cluster"]
    assert cluster["name"] == "demo"
    assert cluster["arn"] == f"arn:aws:eks:{aws['region']}:{aws['account_id']}:cluster/demo"
    assert cluster["status"] == "ACTIVE"
    assert cluster["identity"]["oidc"]["issuer"] == EKS_ISSUER
    assert cluster["endpoint"].startswith("https://")
    assert cluster["endpoint"].endswith(f".{aws['region']}.eks.amazonaws.com")
    assert cluster["version"] and cluster["platformVersion"].startswith("eks.")
    assert isinstance(cluster["createdAt"], dt.datetime)
    pem = base64.b64decode(cluster["certificateAuthority"]["data"])
    ca = x509.load_pem_x509_certificate(pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cluster["roleArn"].startswith(f"arn:aws:iam::{aws['account_id']}:role/")


def test_the_issuer_is_kept_byte_for_byte(world: World,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = world.client("eks", monkeypatch).describe_cluster(name="slashed")["cluster"]
    assert cluster["identity"]["oidc"]["issuer"] == SLASHED_ISSUER


def test_an_unknown_cluster_is_resource_not_found(world: World,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClientError) as caught:
        world.client("eks", monkeypatch).describe_cluster(name="nope")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert response["Error"]["Code"] == "ResourceNotFoundException"
    assert response["Error"]["Message"] == "No cluster found for name: nope."


def test_the_aws_cli_reads_the_record(world: World) -> None:
    done = subprocess.run(["aws", "eks", "describe-cluster", "--name", "demo", "--output",
                           "json"], capture_output=True, text=True, timeout=60,
                          env=world.env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["cluster"]["identity"]["oidc"]["issuer"] == EKS_ISSUER


def test_the_json_line_lists_the_records(world: World) -> None:
    listed = {c["name"]: c for c in world.info["aws"]["eks_clusters"]}
    assert listed["demo"]["issuer"] == EKS_ISSUER
    assert listed["slashed"]["issuer"] == SLASHED_ISSUER
    assert listed["demo"]["arn"].endswith(":cluster/demo")
    assert world.info["azure"]["aks_clusters"] == []


# 2. Authenticated like the other services; only DescribeCluster is served.

def test_an_unknown_key_is_refused_as_eks_refuses_it(world: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    eks = world.client("eks", monkeypatch, AWS_ACCESS_KEY_ID="AKIA" + "Z" * 16)
    with pytest.raises(ClientError) as caught:
        eks.describe_cluster(name="demo")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_wrong_secret_fails_the_signature(world: World,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    eks = world.client("eks", monkeypatch, AWS_SECRET_ACCESS_KEY="x" * 40)
    with pytest.raises(ClientError) as caught:
        eks.describe_cluster(name="demo")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_other_eks_routes_answer_404(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    eks = world.client("eks", monkeypatch)
    for call in (lambda: eks.list_clusters(),
                 lambda: eks.delete_cluster(name="demo"),
                 lambda: eks.list_nodegroups(clusterName="demo")):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert eks.describe_cluster(name="demo")["cluster"]["status"] == "ACTIVE"  # not deleted


# 3. --trust-ca: an issuer behind another CA is trusted, one behind an unknown CA is not.
# Both providers pin a thumbprint that matches neither: AWS uses thumbprints only for a
# certificate that its trusted roots do not vouch for, so only the trusted CA's issuer passes.
DUMMY_THUMBPRINT = "f" * 40


def _federate(world: World, issuer: IssuerServer, name: str,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    iam = world.client("iam", monkeypatch)
    assert top_thumbprint(issuer.url) != DUMMY_THUMBPRINT
    provider = iam.create_open_id_connect_provider(
        Url=issuer.url, ClientIDList=[AUDIENCE],
        ThumbprintList=[DUMMY_THUMBPRINT])["OpenIDConnectProviderArn"]
    trust = irsa_trust_policy(provider, issuer.url, ACCOUNT.subject, AUDIENCE)
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    sts = boto3.client("sts", region_name=world.info["aws"]["region"],
                       endpoint_url=world.info["aws"]["endpoint_url"],
                       verify=world.info["ca_bundle"], config=Config(signature_version=UNSIGNED))
    return sts, role["Arn"]


def test_an_issuer_behind_a_trusted_ca_is_fetched(world: World,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sts, role_arn = _federate(world, world.trusted_issuer, "trusted-ca", monkeypatch)
    answer = sts.assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="trusted",
        WebIdentityToken=world.trusted_issuer.issuer.mint(ACCOUNT, [AUDIENCE]))
    assert answer["Provider"] == world.trusted_issuer.url
    # The session has no eks:DescribeCluster: refused as EKS refuses it, naming the cluster.
    creds = answer["Credentials"]
    eks = world.client("eks", monkeypatch, AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
                       AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
                       AWS_SESSION_TOKEN=creds["SessionToken"])
    with pytest.raises(ClientError) as caught:
        eks.describe_cluster(name="demo")
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"].endswith("is not authorized to perform: eks:DescribeCluster on "
                                     f"resource: {world.info['aws']['eks_clusters'][0]['arn']}")


def test_an_issuer_behind_an_unknown_ca_is_not(world: World,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sts, role_arn = _federate(world, world.untrusted_issuer, "unknown-ca", monkeypatch)
    with pytest.raises(ClientError) as caught:
        sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="untrusted",
            WebIdentityToken=world.untrusted_issuer.issuer.mint(ACCOUNT, [AUDIENCE]))
    assert caught.value.response["Error"]["Code"] == "InvalidIdentityToken"
    assert "thumbprint" in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize("which, trusted", [("trusted_issuer", True),
                                             ("untrusted_issuer", False)])
def test_entra_fetches_an_issuer_behind_a_trusted_ca_only(world: World, tmp_path: Path,
                                                          which: str, trusted: bool) -> None:
    issuer: IssuerServer = getattr(world, which)
    az, ca = world.info["azure"], world.info["ca_bundle"]
    admin = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                   az["admin_client_secret"], authority=az["authority_host"],
                                   connection_verify=ca, disable_instance_discovery=True)
    msi = ManagedServiceIdentityClient(admin, az["subscription_id"],
                                       base_url=az["arm_endpoint"], connection_verify=ca)
    group, name = az["resource_group"], f"trust-{which.replace('_', '-')}"
    identity = msi.user_assigned_identities.create_or_update(group, name,
                                                             {"location": "westeurope"})
    msi.federated_identity_credentials.create_or_update(group, name, "k8s", {
        "issuer": issuer.url, "subject": ACCOUNT.subject,
        "audiences": [AZURE_EXCHANGE]})
    token_file = tmp_path / "token"
    token_file.write_text(issuer.issuer.mint(ACCOUNT, [AZURE_EXCHANGE]))
    workload = WorkloadIdentityCredential(tenant_id=az["tenant_id"],
                                          client_id=identity.client_id,
                                          token_file_path=str(token_file),
                                          authority=az["authority_host"], connection_verify=ca)
    if trusted:
        assert workload.get_token("https://vault.azure.net/.default").token
    else:  # Entra pins no thumbprints: an issuer its roots do not vouch for is unreachable
        with pytest.raises(ClientAuthenticationError,
                           match="Request to External OIDC endpoint failed"):
            workload.get_token("https://vault.azure.net/.default")


# 4. --host, and options serve refuses before it starts anything.

def test_host_moves_the_stand_ins_but_not_the_issuer(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "state", "--host", "127.0.0.2")
    try:
        info = serve.info
        assert info["host"] == "127.0.0.2"
        assert info["aws"]["endpoint_url"].startswith("https://127.0.0.2:")
        assert info["azure"]["arm_endpoint"].startswith("https://127.0.0.2:")
        assert info["issuer"].startswith("https://127.0.0.1:")
        sts = boto3.client("sts", region_name="us-east-1", verify=info["ca_bundle"],
                           endpoint_url=info["aws"]["endpoint_url"],
                           aws_access_key_id=info["aws"]["access_key_id"],
                           aws_secret_access_key=info["aws"]["secret_access_key"])
        assert sts.get_caller_identity()["Account"] == info["aws"]["account_id"]
    finally:
        assert serve.stop() == 0


@pytest.mark.parametrize("args, words", [
    (["--host", "0.0.0.0"], ["--host", "every interface", "127.0.0.1"]),
    (["--host", "192.0.2.10"], ["--host", "bridge", "127.0.0.1"]),
    (["--host", "not-an-address"], ["--host", "not an IP address"]),
    (["--trust-ca", "/nonexistent/ca.pem"], ["--trust-ca", "cannot read", "PEM"]),
    (["--eks-cluster", "demo"], ["--eks-cluster", "NAME=ISSUER_URL"]),
    (["--eks-cluster", "demo=http://issuer.example"], ["--eks-cluster", "https://"]),
    (["--eks-cluster", "bad!name=https://issuer.example"], ["--eks-cluster", "not valid"]),
    (["--aks-cluster", "only-a-name=https://issuer.example/"], ["--aks-cluster",
                                                                 "RG/NAME=ISSUER_URL"]),
    (["--aks-cluster", "rg/a/b=https://issuer.example/"], ["--aks-cluster", "RG/NAME"]),
    (["--aks-cluster", "rg/-bad-=https://issuer.example/"], ["--aks-cluster", "not valid"]),
    (["--aks-cluster", "rg./aks=https://issuer.example/"], ["--aks-cluster", "not valid"]),
])
def test_bad_serve_options_are_one_line_errors(tmp_path: Path, args: list[str],
                                               words: list[str]) -> None:
    outcome = run_cli("serve", "--state-dir", str(tmp_path / "state"), *args)
    usage_error(outcome, *words)


def test_a_trust_ca_that_is_no_pem_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    outcome = run_cli("serve", "--state-dir", str(tmp_path / "state"), "--trust-ca", str(junk))
    usage_error(outcome, "--trust-ca", "no PEM certificate")


# 5. --aks-cluster: a managed cluster record in the ARM stand-in.

def test_aks_cluster_records(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "state", "--aks-cluster", f"rg-aks/my-aks={AKS_ISSUER}")
    try:
        records = serve.info["azure"]["aks_clusters"]
        assert [(r["resource_group"], r["name"], r["issuer"]) for r in records] == [
            ("rg-aks", "my-aks", AKS_ISSUER)]
        az = serve.info["azure"]
        admin = ClientSecretCredential(
            az["tenant_id"], az["admin_client_id"], az["admin_client_secret"],
            authority=az["authority_host"], connection_verify=serve.info["ca_bundle"],
            disable_instance_discovery=True)
        arm = KeyVaultManagementClient(admin, az["subscription_id"],
                                           base_url=az["arm_endpoint"],
                                           connection_verify=serve.info["ca_bundle"])
        answer = arm.send_request(HttpRequest(
            "GET", f"/subscriptions/{az['subscription_id']}/resourceGroups/rg-aks/providers/"
                   "Microsoft.ContainerService/managedClusters/my-aks?api-version=2025-01-01"))
        assert answer.status_code == 200, answer.text()[:500]
        assert answer.json()["properties"]["oidcIssuerProfile"]["issuerURL"] == AKS_ISSUER
    finally:
        assert serve.stop() == 0
