"""AwsProvisioner as the cloud tier runs it: boto3's default chain only (keys, AWS_ENDPOINT_URL,
AWS_CA_BUNDLE from the environment) against a `crossfed serve` running as its own process.
Tags and the /crossfed/ path on everything, valid names, an existing OIDC provider reused
(the audience added, then removed, the provider itself left intact), a creation race, and the
tear-down order each service needs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from crossfed.aws.provision import (
    AwsProvisioner,
    bucket_name,
    resource_name,
    valid_bucket_name,
)
from crossfed.cleanup import Teardown
from crossfed.cloud.tags import CREATED_AT, DELETE_AFTER, IAM_PATH, RUN_ID, CloudTags, from_aws
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.oidc.fetch import top_thumbprint
from crossfed.plan import AwsTarget
from fixtures.cloud_env import aws_env, use_env
from fixtures.serve import Serve, start_serve

pytestmark = [pytest.mark.local]

ACCOUNT = ServiceAccountRef("demo", "app")
AUDIENCE = "sts.amazonaws.com"
USER_AUDIENCE = "users-own-audience"
IAM_NAME = re.compile(r"^[\w+=,.@-]+$")


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    running = start_serve(tmp_path_factory.mktemp("provision-cloud") / "state")
    yield running
    assert running.stop() == 0


@pytest.fixture
def session(serving: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    use_env(monkeypatch, aws_env(serving.info, tmp_path))
    return boto3.Session()


def clients(session: boto3.Session) -> tuple[Any, Any]:
    return session.client("iam"), session.client("s3")


def provider_arn(serving: Serve) -> str:
    return (f"arn:aws:iam::{serving.info['aws']['account_id']}:oidc-provider/"
            f"{serving.info['issuer'][len('https://'):]}")


def provider_state(iam: Any, arn: str) -> dict[str, Any] | None:
    try:
        got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchEntity"
        return None
    tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)["Tags"]
    return {"clients": sorted(got["ClientIDList"]), "tags": from_aws(tags)}


# 1. Names.

@pytest.mark.parametrize("plan", ["positive", "Wrong_Audience (seed) #2", "x" * 200,
                                  "xn--punycode", "ends-with-s3alias", "a..b", "-"])
def test_names_are_valid_and_unique(plan: str) -> None:
    bucket = bucket_name("run_A1", plan, "123456789012", "us-east-1")
    assert valid_bucket_name(bucket) and bucket.startswith("crossfed-"), bucket
    assert bucket != bucket_name("run_A1", plan + "!", "123456789012", "us-east-1")
    assert bucket != bucket_name("run_A2", plan, "123456789012", "us-east-1")
    assert bucket != bucket_name("run_A1", plan, "210987654321", "us-east-1")
    role, policy = resource_name("run_A1", plan, 64), resource_name("run_A1", plan, 128)
    for name, limit in ((role, 64), (policy, 128)):
        assert len(name) <= limit and IAM_NAME.fullmatch(name), name
        assert name.startswith("crossfed-run_A1-")
    assert role != resource_name("run_A1", plan + "!", 64)


def test_bucket_rules_are_s3s() -> None:
    for bad in ("ab", "a" * 64, "Upper", "xn--x", "x-s3alias", "x--ol-s3", "-x", "x-",
                "a..b", "192.168.0.1", "under_score"):
        assert not valid_bucket_name(bad), bad


# 2. What apply creates: tags, path, names.

def test_everything_carries_the_tags_and_the_path(serving: Serve,
                                                  session: boto3.Session) -> None:
    iam, s3 = clients(session)
    tags = CloudTags.new("tagrun")
    teardown = Teardown()
    applied = AwsProvisioner(session, "tagrun", tags=tags.aws()).apply(
        AwsTarget(), "Tagged Plan", serving.info["issuer"], ACCOUNT, AUDIENCE, teardown)
    try:
        assert applied.provider_created
        assert applied.role_arn == (f"arn:aws:iam::{applied.account_id}:role/crossfed/"
                                    f"{applied.role_name}")
        role = iam.get_role(RoleName=applied.role_name)["Role"]
        assert role["Path"] == IAM_PATH
        expected = tags.as_dict()
        assert from_aws(iam.list_role_tags(RoleName=applied.role_name)["Tags"]) == expected
        attached = iam.list_attached_role_policies(RoleName=applied.role_name)
        [policy] = attached["AttachedPolicies"]
        assert policy["PolicyArn"].startswith(f"arn:aws:iam::{applied.account_id}:policy"
                                              "/crossfed/")
        assert from_aws(iam.list_policy_tags(PolicyArn=policy["PolicyArn"])["Tags"]) == expected
        assert provider_state(iam, applied.provider_arn)["tags"] == expected
        got = from_aws(s3.get_bucket_tagging(Bucket=applied.bucket)["TagSet"])
        assert got == expected and {RUN_ID, CREATED_AT, DELETE_AFTER} <= set(got)
        assert valid_bucket_name(applied.bucket)
    finally:
        assert teardown.run() == []
    assert provider_state(iam, applied.provider_arn) is None  # created here: deleted
    with pytest.raises(ClientError):
        iam.get_role(RoleName=applied.role_name)
    assert applied.bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_default_tags_name_the_run(serving: Serve, session: boto3.Session) -> None:
    iam, _ = clients(session)
    teardown = Teardown()
    applied = AwsProvisioner(session, "plainrun").apply(
        AwsTarget(), "plain", serving.info["issuer"], ACCOUNT, AUDIENCE, teardown)
    try:
        assert from_aws(iam.list_role_tags(RoleName=applied.role_name)["Tags"]) == {
            RUN_ID: "plainrun"}
    finally:
        assert teardown.run() == []


def test_tags_without_a_run_id_are_refused(session: boto3.Session) -> None:
    with pytest.raises(ValueError, match=RUN_ID):
        AwsProvisioner(session, "r", tags=[{"Key": "team", "Value": "x"}])


# 3. An OIDC provider that is the user's: reused, its audience added and removed, kept.

@pytest.fixture
def users_provider(serving: Serve, session: boto3.Session) -> Iterator[str]:
    iam, _ = clients(session)
    arn = iam.create_open_id_connect_provider(
        Url=serving.info["issuer"], ClientIDList=[USER_AUDIENCE],
        ThumbprintList=[top_thumbprint(serving.info["issuer"])])["OpenIDConnectProviderArn"]
    assert arn == provider_arn(serving)
    yield arn
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def test_an_existing_provider_is_reused_and_left_as_it_was(
        serving: Serve, session: boto3.Session, users_provider: str) -> None:
    iam, _ = clients(session)
    before = provider_state(iam, users_provider)
    teardown = Teardown()
    applied = AwsProvisioner(session, "reuse", tags=CloudTags.new("reuse").aws()).apply(
        AwsTarget(), "reuse", serving.info["issuer"], ACCOUNT, AUDIENCE, teardown)
    assert not applied.provider_created
    assert applied.provider_arn == users_provider
    during = provider_state(iam, users_provider)
    assert during["clients"] == sorted([USER_AUDIENCE, AUDIENCE])  # the plan's audience added
    assert during["tags"] == {}  # a user's object is never tagged as crossfed's
    assert teardown.run() == []
    assert provider_state(iam, users_provider) == before  # audience removed, provider kept


def test_an_audience_the_provider_had_is_not_removed(
        serving: Serve, session: boto3.Session, users_provider: str) -> None:
    iam, _ = clients(session)
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=users_provider,
                                                  ClientID=AUDIENCE)
    teardown = Teardown()
    AwsProvisioner(session, "had").apply(AwsTarget(), "had", serving.info["issuer"], ACCOUNT,
                                         AUDIENCE, teardown)
    assert teardown.run() == []
    assert provider_state(iam, users_provider)["clients"] == sorted([USER_AUDIENCE, AUDIENCE])


def test_a_creation_race_falls_back_to_reuse(serving: Serve, session: boto3.Session,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run creates the provider between this run's read and its create."""
    iam, _ = clients(session)
    provisioner = AwsProvisioner(session, "race")
    real = provisioner._existing_provider
    reads: list[str] = []

    def read_then_lose_the_race(arn: str) -> dict[str, Any] | None:
        reads.append(arn)
        if len(reads) == 1:  # this run's read: nothing yet; then the other run creates it
            iam.create_open_id_connect_provider(
                Url=serving.info["issuer"], ClientIDList=[USER_AUDIENCE],
                ThumbprintList=[top_thumbprint(serving.info["issuer"])])
            return None
        return real(arn)

    monkeypatch.setattr(provisioner, "_existing_provider", read_then_lose_the_race)
    teardown = Teardown()
    try:
        applied = provisioner.apply(AwsTarget(), "race", serving.info["issuer"], ACCOUNT,
                                    AUDIENCE, teardown)
        assert not applied.provider_created and len(reads) == 2
        assert AUDIENCE in provider_state(iam, applied.provider_arn)["clients"]
        assert teardown.run() == []
        assert provider_state(iam, applied.provider_arn) == {"clients": [USER_AUDIENCE],
                                                             "tags": {}}
    finally:
        teardown.run()
        iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn(serving))


# 4. Tear-down in each service's order, with what a user (or a test) added meanwhile.

def test_teardown_deletes_in_the_order_each_service_needs(serving: Serve,
                                                          session: boto3.Session) -> None:
    iam, s3 = clients(session)
    teardown = Teardown()
    applied = AwsProvisioner(session, "order").apply(
        AwsTarget(), "order", serving.info["issuer"], ACCOUNT, AUDIENCE, teardown)
    [attached] = iam.list_attached_role_policies(RoleName=applied.role_name)["AttachedPolicies"]
    policy_arn = attached["PolicyArn"]
    # an inline policy on the role, a second version of the policy, versions and a delete
    # marker in the bucket: each blocks its service's delete call until removed first
    iam.put_role_policy(RoleName=applied.role_name, PolicyName="inline",
                        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": '
                        '"Allow", "Action": "s3:ListBucket", "Resource": "*"}]}')
    iam.create_policy_version(PolicyArn=policy_arn, SetAsDefault=False,
                              PolicyDocument='{"Version": "2012-10-17", "Statement": [{'
                              '"Effect": "Deny", "Action": "*", "Resource": "*"}]}')
    s3.put_bucket_versioning(Bucket=applied.bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        s3.put_object(Bucket=applied.bucket, Key="versioned.txt", Body=body)
    s3.delete_object(Bucket=applied.bucket, Key="versioned.txt")  # a delete marker
    assert teardown.run() == []
    with pytest.raises(ClientError):
        iam.get_role(RoleName=applied.role_name)
    with pytest.raises(ClientError):
        iam.get_policy(PolicyArn=policy_arn)
    assert applied.bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
