"""`crossfed doctor aws|azure` for the positive and every negative plan of the suite, against
`crossfed serve` as a separate process: the objects are created by the tier's own provisioners
through the SDKs' standard environment, the token is the plan's, and the doctor must pass the
positive, fail each negative naming the check the local tier names, and change nothing."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from crossfed.aws.provision import AwsProvisioner
from crossfed.azure.provision import AzureProvisioner
from crossfed.cleanup import Teardown
from crossfed.cloud.issuers import CloudIssuers
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.variants import token_for
from crossfed.plan import FederationPlan, isolate
from crossfed.suite.plans import AWS_ALLOWED, AWS_DENIED, AZURE_ALLOWED, AZURE_DENIED
from fixtures.cloud_env import use_env
from fixtures.serve import CLI
from tests.cloud import tier

pytestmark = [pytest.mark.serve]


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory):
    served = tier.start(tmp_path_factory.mktemp("serve"), 0.0, None)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def issuers(serve, tmp_path_factory: pytest.TempPathFactory):
    key = SigningKey.load(Path(serve.info["signing_key"]))
    found = CloudIssuers.start(tmp_path_factory.mktemp("issuers"), key, serve.info["issuer"])
    yield found
    found.stop()


@pytest.fixture
def sdk(serve, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = tier.environment(serve, None)
    use_env(monkeypatch, {k: v for k, v in env.items()
                          if k.startswith(("AWS_", "AZURE_", "REQUESTS_"))})
    return env


def _issuer(plan: FederationPlan, issuers: CloudIssuers) -> Issuer:
    return issuers.issuer_for(plan.issuer)


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "doctor", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _failed(output: str) -> list[str]:
    return [line.split()[1].rstrip(":") for line in output.splitlines()
            if line.startswith("FAIL ")]


def _aws_state() -> Any:
    import boto3

    iam, s3 = boto3.client("iam"), boto3.client("s3")
    roles = {r["RoleName"]: (r["AssumeRolePolicyDocument"], tuple(
        p["PolicyArn"] for p in iam.list_attached_role_policies(
            RoleName=r["RoleName"])["AttachedPolicies"])) for r in iam.list_roles()["Roles"]}
    providers = {p["Arn"]: iam.get_open_id_connect_provider(OpenIDConnectProviderArn=p["Arn"])[
        "ClientIDList"] for p in iam.list_open_id_connect_providers()[
        "OpenIDConnectProviderList"]}
    policies = [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]
    return roles, providers, policies, [b["Name"] for b in s3.list_buckets()["Buckets"]]


def _arm_writes(serve: tier.Serve, arm: str) -> list[str]:
    port = arm.rsplit(":", 1)[-1].rstrip("/")
    return [line for line in serve.logs().splitlines()
            if f":{port} " in line and any(f" {m} " in line for m in ("PUT", "POST", "DELETE",
                                                                       "PATCH"))]


def _judge(plan: FederationPlan, done: subprocess.CompletedProcess[str], token: str) -> None:
    """The positive passes every check; a negative FAILs the check the local tier names."""
    output = done.stdout + done.stderr
    if plan.expect.allowed:
        assert done.returncode == 0 and _failed(done.stdout) == [], output
    else:
        assert done.returncode == 1, output
        assert plan.expect.failed_check in _failed(done.stdout), output
    assert token not in output


AWS_PLANS = [AWS_ALLOWED, *AWS_DENIED]
AZURE_PLANS = [AZURE_ALLOWED, *AZURE_DENIED]


@pytest.mark.parametrize("plan", AWS_PLANS, ids=lambda plan: plan.name)
def test_doctor_aws_names_each_plans_check(plan: FederationPlan, serve, issuers, sdk,
                                           tmp_path: Path) -> None:
    import boto3

    plan = isolate(plan, uuid.uuid4().hex[:6])
    issuer = _issuer(plan, issuers)
    token = token_for(plan.token, issuer, plan.workload, plan.audience)
    teardown = Teardown()
    try:
        assert plan.aws is not None
        applied = AwsProvisioner(boto3.Session(), "doc").apply(
            plan.aws, plan.name, issuer.url, plan.trusted_account, plan.audience, teardown)
        token_file = tmp_path / "token"
        token_file.write_text(token)
        before = _aws_state()
        done = _doctor(sdk, "aws", "--role-arn", applied.role_arn, "--service-account",
                       f"{plan.workload.namespace}/{plan.workload.name}", "--token-file",
                       str(token_file), "--bucket", applied.bucket)
        assert _aws_state() == before, "crossfed doctor aws changed IAM or S3"
    finally:
        assert not teardown.run()
    _judge(plan, done, token)


@pytest.mark.parametrize("plan", AZURE_PLANS, ids=lambda plan: plan.name)
def test_doctor_azure_names_each_plans_check(plan: FederationPlan, serve, issuers, sdk,
                                             tmp_path: Path) -> None:
    from azure.identity import ClientSecretCredential

    from crossfed.azure.provision import AzureAccount

    az = serve.info["azure"]
    plan = isolate(plan, uuid.uuid4().hex[:6])
    issuer = _issuer(plan, issuers)
    token = token_for(plan.token, issuer, plan.workload, plan.audience)
    credential = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                        az["admin_client_secret"],
                                        authority=az["authority_host"],
                                        disable_instance_discovery=True)
    account = AzureAccount(credential, az["tenant_id"], az["subscription_id"], "doctors",
                           arm_endpoint=az["arm_endpoint"], ca_bundle=sdk["REQUESTS_CA_BUNDLE"],
                           skip_challenge_resource_check=True)
    teardown = Teardown()
    try:
        assert plan.azure is not None
        provisioner = AzureProvisioner(account, "doc")
        provisioner.ensure_resource_group(teardown)
        applied = provisioner.apply(plan.azure, plan.name, issuer.url, plan.trusted_account,
                                    teardown)
        token_file = tmp_path / "token"
        token_file.write_text(token)
        who = (["--client-id", str(uuid.uuid4())] if plan.azure.unknown_client_id
               else ["--identity", f"doctors/{applied.identity_name}"])
        told = str(uuid.uuid4()) if plan.azure.unknown_tenant else applied.tenant_id
        writes = len(_arm_writes(serve, az["arm_endpoint"]))
        done = _doctor(sdk, "azure", *who, "--service-account",
                       f"{plan.workload.namespace}/{plan.workload.name}", "--token-file",
                       str(token_file), "--vault-url", applied.vault_url, "--secret",
                       applied.secret_name, "--workload-tenant-id", told,
                       "--azure-arm-endpoint", az["arm_endpoint"])
        assert len(_arm_writes(serve, az["arm_endpoint"])) == writes, \
            "crossfed doctor azure wrote to ARM"
    finally:
        assert not teardown.run()
    _judge(plan, done, token)
