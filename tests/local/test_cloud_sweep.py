"""`crossfed sweep --aws / --azure` as a user runs it: a subprocess with only the SDKs' standard
environment, against a `crossfed serve` running as its own process.

Two "killed" runs leave objects behind, made as the cloud tier makes them (AwsProvisioner with
CloudTags; Azure objects tagged CloudTags.as_dict()): an old one (created 10 h ago) and a young
one. Decoys created beforehand, without crossfed-run-id (untagged, or tagged otherwise), stand
for a user's own objects: every sweep must leave them exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from crossfed.aws.provision import AwsProvisioner
from crossfed.cleanup import Teardown
from crossfed.cloud.sweep import Selector, parse_age
from crossfed.cloud.tags import CloudTags, from_aws
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.plan import AwsTarget
from fixtures.cloud_env import aws_env, azure_env, process_env, use_env
from fixtures.doctor import Outcome, usage_error
from fixtures.serve import CLI, Serve, start_serve

pytestmark = [pytest.mark.local]

OLD, YOUNG = "oldrun", "youngrun"
ACCOUNT = ServiceAccountRef("demo", "app")
LOCATION = "westeurope"
YOUNG_ISSUER = "https://young.issuer.test/cluster"  # its own provider: one per issuer
DECOY_ISSUER = "https://users.issuer.test/own"
ALLOW_ALL = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def ten_hours_ago() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=10)


@dataclass
class World:
    serve: Serve
    home: Path

    @property
    def info(self) -> dict[str, Any]:
        return self.serve.info

    def env(self, **extra: str) -> dict[str, str]:
        env = process_env(self.home, aws_env(self.info, self.home), azure_env(self.info),
                          {"AWS_EC2_METADATA_DISABLED": "true"})
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def sweep(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        done = subprocess.run([*CLI, "sweep", *args], capture_output=True, text=True,
                              timeout=180, env=env or self.env())
        return Outcome(done.returncode, done.stdout, done.stderr)

    def azure_sweep(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        return self.sweep("--azure", "--azure-arm-endpoint", self.info["azure"]["arm_endpoint"],
                          *args, env=env)

    # --- AWS ---------------------------------------------------------------------------

    def boto(self) -> boto3.Session:
        aws = self.info["aws"]
        return boto3.Session(aws_access_key_id=aws["access_key_id"],
                             aws_secret_access_key=aws["secret_access_key"],
                             region_name=aws["region"])

    def iam(self) -> Any:
        return self.boto().client("iam", endpoint_url=self.info["aws"]["endpoint_url"],
                                  verify=self.info["ca_bundle"])

    def s3(self) -> Any:
        return self.boto().client("s3", endpoint_url=self.info["aws"]["endpoint_url"],
                                  verify=self.info["ca_bundle"])

    # --- Azure -------------------------------------------------------------------------

    def arm(self) -> tuple[Any, Any, Any]:
        az, ca = self.info["azure"], self.info["ca_bundle"]
        admin = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                       az["admin_client_secret"],
                                       authority=az["authority_host"], connection_verify=ca,
                                       disable_instance_discovery=True)
        common = {"base_url": az["arm_endpoint"], "connection_verify": ca}
        sub = az["subscription_id"]
        return (ResourceManagementClient(admin, sub, **common),
                ManagedServiceIdentityClient(admin, sub, **common),
                KeyVaultManagementClient(admin, sub, **common))


def aws_state(world: World) -> dict[str, Any]:
    """Every IAM role, local policy, OIDC provider and bucket, with tags (and what blocks a
    delete: inline/attached policies, versions, objects)."""
    iam, s3 = world.iam(), world.s3()
    state: dict[str, Any] = {"roles": {}, "policies": {}, "providers": {}, "buckets": {}}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        if name.startswith("crossfed-admin"):
            continue
        state["roles"][role["Path"] + name] = {
            "tags": from_aws(iam.list_role_tags(RoleName=name)["Tags"]),
            "inline": iam.list_role_policies(RoleName=name)["PolicyNames"],
            "attached": [p["PolicyArn"] for p in
                         iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]}
    for policy in iam.list_policies(Scope="Local")["Policies"]:
        arn = policy["Arn"]
        state["policies"][arn] = {
            "tags": from_aws(iam.list_policy_tags(PolicyArn=arn)["Tags"]),
            "versions": len(iam.list_policy_versions(PolicyArn=arn)["Versions"])}
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        arn = provider["Arn"]
        got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        state["providers"][arn] = {"clients": sorted(got["ClientIDList"]), "tags": from_aws(
            iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)["Tags"])}
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        try:
            tags = from_aws(s3.get_bucket_tagging(Bucket=name)["TagSet"])
        except s3.exceptions.ClientError:
            tags = {}
        versions = s3.list_object_versions(Bucket=name)
        state["buckets"][name] = {"tags": tags, "versions": len(versions.get("Versions", []))
                                  + len(versions.get("DeleteMarkers", []))}
    return state


def azure_state(world: World) -> dict[str, Any]:
    resources, msi, keyvault = world.arm()
    state: dict[str, Any] = {"groups": {}, "deleted": {}}
    for group in resources.resource_groups.list():
        identities = {i.name: {"tags": dict(i.tags or {}), "fics": sorted(
            f.name for f in msi.federated_identity_credentials.list(group.name, i.name))}
            for i in msi.user_assigned_identities.list_by_resource_group(group.name)}
        vaults = {v.name: dict(v.tags or {})
                  for v in keyvault.vaults.list_by_resource_group(group.name)}
        state["groups"][group.name] = {"tags": dict(group.tags or {}),
                                       "identities": identities, "vaults": vaults}
    for vault in keyvault.vaults.list_deleted():
        state["deleted"][vault.name] = dict(vault.properties.tags or {})
    return state


def _run_aws(world: World, run_id: str, tags: CloudTags, issuer: str,
             monkeypatch: pytest.MonkeyPatch, thumbprint: str | None = None) -> None:
    """What a run the cloud tier applied and then got killed leaves: everything, with extras
    that block a naive delete (an inline role policy, a second policy version, object versions
    and a delete marker)."""
    use_env(monkeypatch, aws_env(world.info, world.home))
    session = boto3.Session()
    applied = AwsProvisioner(session, run_id, tags=tags.aws()).apply(
        AwsTarget(thumbprint=thumbprint), f"{run_id}-plan", issuer, ACCOUNT,
        "sts.amazonaws.com", Teardown())  # never run: the run was killed
    iam, s3 = session.client("iam"), session.client("s3")
    iam.put_role_policy(RoleName=applied.role_name, PolicyName="extra", PolicyDocument=ALLOW_ALL)
    [attached] = iam.list_attached_role_policies(RoleName=applied.role_name)["AttachedPolicies"]
    iam.create_policy_version(PolicyArn=attached["PolicyArn"], PolicyDocument=ALLOW_ALL,
                              SetAsDefault=False)
    s3.put_bucket_versioning(Bucket=applied.bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=applied.bucket, Key="v.txt", Body=b"1")
    s3.put_object(Bucket=applied.bucket, Key="v.txt", Body=b"2")
    s3.delete_object(Bucket=applied.bucket, Key="v.txt")


def _aws_decoys(world: World) -> None:
    iam, s3 = world.iam(), world.s3()
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="users-role-in-our-path", Path="/crossfed/",
                    AssumeRolePolicyDocument=trust)  # the path alone is not crossfed's mark
    iam.create_role(RoleName="users-role", AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": "team", "Value": "platform"}])
    iam.create_role(RoleName="users-tagged-role", Path="/crossfed/",
                    AssumeRolePolicyDocument=trust, Tags=[{"Key": "crossfed-run-id-x",
                                                           "Value": OLD}])
    iam.create_policy(PolicyName="users-policy", Path="/crossfed/", PolicyDocument=ALLOW_ALL)
    iam.create_open_id_connect_provider(Url=DECOY_ISSUER, ClientIDList=["sts.amazonaws.com"],
                                        ThumbprintList=["b" * 40])
    s3.create_bucket(Bucket="users-bucket")
    s3.put_object(Bucket="users-bucket", Key="keep.txt", Body=b"keep")
    s3.create_bucket(Bucket="crossfed-lookalike-bucket")  # a crossfed-like name, no tag
    s3.create_bucket(Bucket="users-tagged-bucket")
    s3.put_bucket_tagging(Bucket="users-tagged-bucket",
                          Tagging={"TagSet": [{"Key": "team", "Value": "platform"}]})


def _vault(keyvault: Any, world: World, group: str, name: str, tags: dict[str, str]) -> None:
    tenant = world.info["azure"]["tenant_id"]
    keyvault.vaults.begin_create_or_update(group, name, {
        "location": LOCATION, "tags": tags, "properties": {
            "tenantId": tenant, "sku": {"family": "A", "name": "standard"},
            "accessPolicies": []}}).result()


def _identity(msi: Any, group: str, name: str, tags: dict[str, str]) -> None:
    msi.user_assigned_identities.create_or_update(group, name, {"location": LOCATION,
                                                                "tags": tags})
    msi.federated_identity_credentials.create_or_update(group, name, "k8s", {
        "issuer": "https://issuer.example/", "subject": "system:serviceaccount:a:b",
        "audiences": ["api://AzureADTokenExchange"]})


def _azure_world(world: World) -> None:
    resources, msi, keyvault = world.arm()
    old = CloudTags.new(OLD, now=ten_hours_ago()).as_dict()
    young = CloudTags.new(YOUNG).as_dict()
    # decoys first: a user's group, identity, vault, soft-deleted vault
    resources.resource_groups.create_or_update("users-rg", {"location": LOCATION})
    resources.resource_groups.create_or_update("users-tagged-rg", {
        "location": LOCATION, "tags": {"team": "platform"}})
    _identity(msi, "users-rg", "users-identity", {})
    _identity(msi, "users-tagged-rg", "users-tagged-identity", {"team": "platform"})
    _vault(keyvault, world, "users-rg", "users-kv", {})
    _vault(keyvault, world, "users-rg", "users-gone-kv", {"team": "platform"})
    keyvault.vaults.delete("users-rg", "users-gone-kv")  # soft-deleted, not crossfed's
    # the old run: its own group (whole), and objects in the user's group
    resources.resource_groups.create_or_update("crossfed-oldrun", {"location": LOCATION,
                                                                   "tags": old})
    _identity(msi, "crossfed-oldrun", "old-in-own-group", old)
    _vault(keyvault, world, "crossfed-oldrun", "old-own-kv", old)
    _identity(msi, "users-rg", "old-identity", old)
    _vault(keyvault, world, "users-rg", "old-kv", old)
    _vault(keyvault, world, "users-rg", "old-gone-kv", old)
    keyvault.vaults.delete("users-rg", "old-gone-kv")  # teardown deleted, purge never ran
    # the young run
    _identity(msi, "users-rg", "young-identity", young)
    _vault(keyvault, world, "users-rg", "young-kv", young)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("cloud-sweep")
    (base / "home").mkdir()
    serve = start_serve(base / "state")
    try:
        world = World(serve, base / "home")
        _aws_decoys(world)
        _azure_world(world)
        with pytest.MonkeyPatch.context() as monkeypatch:
            _run_aws(world, OLD, CloudTags.new(OLD, now=ten_hours_ago()),
                     serve.info["issuer"], monkeypatch)
            _run_aws(world, YOUNG, CloudTags.new(YOUNG), YOUNG_ISSUER, monkeypatch,
                     thumbprint="a" * 40)
        yield world
    finally:
        assert serve.stop() == 0


def _of(state: dict[str, Any], run_id: str) -> list[str]:
    """Names of the AWS objects tagged with run_id."""
    return sorted(f"{kind}:{name}" for kind in ("roles", "policies", "providers", "buckets")
                  for name, item in state[kind].items()
                  if item["tags"].get("crossfed-run-id") == run_id)


def _decoys(state: dict[str, Any]) -> dict[str, Any]:
    return {kind: {name: item for name, item in state[kind].items()
                   if "crossfed-run-id" not in item["tags"]}
            for kind in ("roles", "policies", "providers", "buckets")}


# 1. AWS (tests run in file order: each sweep takes what the one before left).

def test_aws_dry_run_lists_and_deletes_nothing(world: World) -> None:
    before = aws_state(world)
    assert len(_of(before, OLD)) == 4 and len(_of(before, YOUNG)) == 4
    swept = world.sweep("--aws", "--run-id", OLD, "--dry-run")
    assert swept.code == 0, swept.stderr
    assert aws_state(world) == before
    lines = swept.stdout.splitlines()
    for kind in ("role /crossfed/crossfed-oldrun-", "policy /crossfed/crossfed-oldrun-",
                 "OIDC provider 127.0.0.1:", "bucket crossfed-oldrun-"):
        assert any(line.startswith(f"would delete {kind}") for line in lines), swept.stdout
    assert all(f"(run {OLD}, created " in line for line in lines[:-1]), swept.stdout
    assert lines[-1] == "crossfed sweep: aws: would delete 4 object(s)"
    assert YOUNG not in swept.stdout and "users" not in swept.stdout


def test_aws_refusals_exit_1_and_keep_going(world: World) -> None:
    """A principal that may list but not delete: every delete fails, one line each."""
    iam = world.iam()
    iam.create_user(UserName="lister")
    iam.put_user_policy(UserName="lister", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "iam:List*", "iam:Get*", "s3:ListAllMyBuckets", "s3:GetBucketTagging",
            "s3:ListBucket", "s3:ListBucketVersions"]}]}))
    key = iam.create_access_key(UserName="lister")["AccessKey"]
    before = aws_state(world)
    try:
        swept = world.sweep("--aws", "--run-id", YOUNG, env=world.env(
            AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"]))
    finally:
        iam.delete_access_key(UserName="lister", AccessKeyId=key["AccessKeyId"])
        iam.delete_user_policy(UserName="lister", PolicyName="read")
        iam.delete_user(UserName="lister")
    assert swept.code == 1, (swept.stdout, swept.stderr)
    assert swept.stderr.count("crossfed sweep: could not delete") == 4, swept.stderr
    assert "AccessDenied" in swept.stderr
    assert "4 could not be deleted" in swept.stdout.splitlines()[-1]
    assert aws_state(world) == before
    assert key["SecretAccessKey"] not in swept.stdout + swept.stderr


def test_aws_sweep_by_age_takes_the_old_run_only(world: World) -> None:
    before = aws_state(world)
    swept = world.sweep("--aws", "--older-than", "6h")
    assert swept.code == 0, swept.stderr
    after = aws_state(world)
    assert _of(after, OLD) == []
    assert _of(after, YOUNG) == _of(before, YOUNG)
    assert _decoys(after) == _decoys(before)
    lines = swept.stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["role", "policy", "OIDC", "bucket"]
    assert all(line.startswith("deleting ") for line in lines[:-1])
    assert lines[-1] == "crossfed sweep: aws: deleted 4 of 4 object(s)"


def test_aws_a_bare_number_is_hours(world: World) -> None:
    before = aws_state(world)
    swept = world.sweep("--aws", "--older-than", "6")  # 6 hours: the young run is spared
    assert swept.code == 0 and swept.stdout.strip() == "crossfed sweep: aws: nothing to delete"
    assert aws_state(world) == before
    listed = world.sweep("--aws", "--older-than", "0m", "--dry-run")
    assert listed.stdout.splitlines()[-1] == "crossfed sweep: aws: would delete 4 object(s)"


def test_aws_sweep_by_run_id_whatever_its_age(world: World) -> None:
    before = aws_state(world)
    swept = world.sweep("--aws", "--run-id", YOUNG)
    assert swept.code == 0, swept.stderr
    after = aws_state(world)
    assert _of(after, YOUNG) == []
    assert _decoys(after) == _decoys(before)
    assert after["roles"].keys() == {"/crossfed/users-role-in-our-path", "/users-role",
                                     "/crossfed/users-tagged-role"}
    assert after["buckets"]["users-bucket"]["versions"] == 1
    assert len(after["providers"]) == 1 and after["providers"][
        next(iter(after["providers"]))]["tags"] == {}


# 2. Azure.

def test_azure_dry_run_lists_and_deletes_nothing(world: World) -> None:
    before = azure_state(world)
    swept = world.azure_sweep("--run-id", OLD, "--dry-run")
    assert swept.code == 0, swept.stderr
    assert azure_state(world) == before
    lines = swept.stdout.splitlines()
    assert "would delete resource group crossfed-oldrun (run oldrun" in swept.stdout
    assert any(line.startswith("would delete identity users-rg/old-identity ") for line in lines)
    assert any(line.startswith("would delete vault users-rg/old-kv ") for line in lines)
    assert any(line.startswith("would delete deleted vault ") and "old-gone-kv" in line
               for line in lines)
    assert lines[-1] == "crossfed sweep: azure: would delete 4 object(s)"
    assert "young" not in swept.stdout and "users-kv" not in swept.stdout


def test_azure_sweep_by_age(world: World) -> None:
    before = azure_state(world)
    swept = world.azure_sweep("--older-than", "6h")
    assert swept.code == 0, (swept.stdout, swept.stderr)
    after = azure_state(world)
    assert "crossfed-oldrun" not in after["groups"]  # the run's own group, whole
    users = after["groups"]["users-rg"]
    assert set(users["identities"]) == {"users-identity", "young-identity"}
    assert set(users["vaults"]) == {"users-kv", "young-kv"}
    # purged: the vault deleted by the sweep, the one in the group, the one left soft-deleted
    assert set(after["deleted"]) == {"users-gone-kv"}
    assert after["groups"]["users-tagged-rg"] == before["groups"]["users-tagged-rg"]
    assert users["identities"]["users-identity"] == \
        before["groups"]["users-rg"]["identities"]["users-identity"]
    assert "purge" in swept.stdout


def test_azure_sweep_by_run_id(world: World) -> None:
    swept = world.azure_sweep("--run-id", YOUNG)
    assert swept.code == 0, (swept.stdout, swept.stderr)
    after = azure_state(world)
    users = after["groups"]["users-rg"]
    assert set(users["identities"]) == {"users-identity"}
    assert set(users["vaults"]) == {"users-kv"}
    assert users["identities"]["users-identity"]["fics"] == ["k8s"]
    assert set(after["deleted"]) == {"users-gone-kv"}  # a user's soft-deleted vault: kept
    assert {"users-rg", "users-tagged-rg"} <= set(after["groups"])
    again = world.azure_sweep("--run-id", YOUNG)
    assert again.code == 0 and again.stdout.strip() == "crossfed sweep: azure: nothing to delete"


# 3. Usage errors: one line naming the fix, exit 2.

def test_a_cloud_sweep_needs_a_run_id_or_an_age(world: World) -> None:
    usage_error(world.sweep("--aws"), "--run-id", "--older-than")
    usage_error(world.sweep("--azure"), "--run-id", "--older-than")


def test_bad_ages_are_refused(world: World) -> None:
    usage_error(world.sweep("--aws", "--older-than", "-1"), "--older-than")
    usage_error(world.sweep("--aws", "--older-than", "6d"), "--older-than", "6h")
    usage_error(world.sweep("--local-state", "--older-than", "soon"), "--older-than", "90m")


def test_missing_credentials_name_the_fix(world: World) -> None:
    no_aws = world.env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    usage_error(world.sweep("--aws", "--run-id", OLD, env=no_aws), "no AWS credentials",
                "AWS_PROFILE")
    no_sub = world.env(AZURE_SUBSCRIPTION_ID="")
    usage_error(world.sweep("--azure", "--run-id", OLD, env=no_sub), "--azure-subscription",
                "AZURE_SUBSCRIPTION_ID")
    no_azure = world.env(AZURE_CLIENT_SECRET="", AZURE_CLIENT_ID="")
    usage_error(world.azure_sweep("--run-id", OLD, env=no_azure), "DefaultAzureCredential",
                "AZURE_CLIENT_SECRET")


# 4. The selection itself (plain data).

def test_the_selector_never_takes_an_object_without_the_run_id_tag() -> None:
    now = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
    old = CloudTags.new("r1", now=now - dt.timedelta(hours=10)).as_dict()
    young = CloudTags.new("r2", now=now - dt.timedelta(minutes=5)).as_dict()
    bare = {"crossfed-run-id": "r3"}  # no created-at: its age is unknown
    by_age = Selector(None, dt.timedelta(hours=6), now)
    assert by_age.selects(old) and not by_age.selects(young) and not by_age.selects(bare)
    every = Selector(None, dt.timedelta(0), now)
    assert every.selects(old) and every.selects(young) and every.selects(bare)
    by_run = Selector("r2", None, now)
    assert by_run.selects(young) and not by_run.selects(old)
    for selector in (by_age, every, by_run):
        assert not selector.selects({})
        assert not selector.selects(None)
        assert not selector.selects({"crossfed-created-at": old["crossfed-created-at"]})
        assert not selector.selects({"crossfed-run-id": ""})


@pytest.mark.parametrize("text, unit, minutes", [("90m", "h", 90), ("6h", "m", 360),
                                                 ("6", "h", 360), ("6", "m", 6),
                                                 ("0", "h", 0), ("1.5h", "m", 90)])
def test_ages(text: str, unit: str, minutes: float) -> None:
    assert parse_age(text, unit) == dt.timedelta(minutes=minutes)
