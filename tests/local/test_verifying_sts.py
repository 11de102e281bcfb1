"""The verifying STS, driven by boto3 and raw HTTP as a client of AWS would drive it."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from crossfed.aws.provision import AppliedAws, AwsProvisioner
from crossfed.cleanup import Teardown
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef, sign
from crossfed.plan import AwsTarget

pytestmark = [pytest.mark.local, pytest.mark.aws]

SA = ServiceAccountRef("verify", "app")
AUD = "sts.amazonaws.com"


@pytest.fixture(scope="module")
def role(crossfed_clouds: LocalStandIns) -> Iterator[AppliedAws]:
    teardown = Teardown()
    aws = crossfed_clouds.aws
    provisioner = AwsProvisioner(aws.session(), crossfed_clouds.run_id, aws.ca_bundle,
                                 aws.endpoint_url)
    yield provisioner.apply(AwsTarget(), "verify", crossfed_clouds.issuer.url, SA, AUD, teardown)
    assert teardown.run() == []


@pytest.fixture
def sts(crossfed_clouds: LocalStandIns):
    return boto3.client("sts", endpoint_url=crossfed_clouds.aws.endpoint_url,
                        region_name="us-east-1", verify=crossfed_clouds.aws.ca_bundle,
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1},
                                      parameter_validation=False))  # the server must validate


def _token(clouds: LocalStandIns, **changes: object) -> str:
    claims = clouds.issuer.issuer.claims_for(SA, [AUD])
    claims.update(changes)
    return sign({k: v for k, v in claims.items() if v is not None}, clouds.issuer.issuer.key)


def _code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_success_has_the_documented_shape_and_working_credentials(
        crossfed_clouds: LocalStandIns, role: AppliedAws, sts) -> None:
    answer = sts.assume_role_with_web_identity(
        RoleArn=role.role_arn, RoleSessionName="shape-check", WebIdentityToken=_token(
            crossfed_clouds))
    assert answer["SubjectFromWebIdentityToken"] == SA.subject
    assert answer["Audience"] == AUD
    assert answer["Provider"] == crossfed_clouds.issuer.url
    arn = f"arn:aws:sts::{role.account_id}:assumed-role/{role.role_name}/shape-check"
    assert answer["AssumedRoleUser"]["Arn"] == arn
    assert answer["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    assert answer["AssumedRoleUser"]["AssumedRoleId"].endswith(":shape-check")
    creds = answer["Credentials"]
    session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name="us-east-1")
    kwargs = {"endpoint_url": crossfed_clouds.aws.endpoint_url,
              "verify": crossfed_clouds.aws.ca_bundle}
    assert session.client("sts", **kwargs).get_caller_identity()["Arn"] == arn
    listed = session.client("s3", **kwargs).list_objects_v2(Bucket=role.bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["test-file.txt"]
    with pytest.raises(ClientError):  # the role may read its bucket, nothing more
        session.client("s3", **kwargs).put_object(Bucket=role.bucket, Key="x", Body=b"x")


def test_errors_use_the_sts_envelope(crossfed_clouds: LocalStandIns, role: AppliedAws) -> None:
    response = requests.post(crossfed_clouds.aws.endpoint_url, timeout=10,
                             verify=crossfed_clouds.aws.ca_bundle, data={
        "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
        "RoleArn": role.role_arn, "RoleSessionName": "envelope", "WebIdentityToken": "abcd.ef"})
    assert response.status_code == 400
    ns = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
    root = ET.fromstring(response.text)
    assert root.tag == "{https://sts.amazonaws.com/doc/2011-06-15/}ErrorResponse"
    assert root.findtext("sts:Error/sts:Type", namespaces=ns) == "Sender"
    assert root.findtext("sts:Error/sts:Code", namespaces=ns) == "InvalidIdentityToken"
    assert root.findtext("sts:RequestId", namespaces=ns)


@pytest.mark.parametrize("session_name", ["bad name", "a", "x" * 65, "a:b"])
def test_session_name_is_validated(crossfed_clouds, role, sts, session_name: str) -> None:
    assert _code(lambda: sts.assume_role_with_web_identity(
        RoleArn=role.role_arn, RoleSessionName=session_name,
        WebIdentityToken=_token(crossfed_clouds))) == "ValidationError"


def test_duration_beyond_the_roles_maximum_is_refused(crossfed_clouds, role, sts) -> None:
    assert _code(lambda: sts.assume_role_with_web_identity(
        RoleArn=role.role_arn, RoleSessionName="long", DurationSeconds=7200,
        WebIdentityToken=_token(crossfed_clouds))) == "ValidationError"


def test_clock_skew_is_sixty_seconds(crossfed_clouds, role, sts) -> None:
    now = int(time.time())
    recent = _token(crossfed_clouds, iat=now - 600, nbf=now - 600, exp=now - 30)
    assert sts.assume_role_with_web_identity(
        RoleArn=role.role_arn, RoleSessionName="skew", WebIdentityToken=recent)["Credentials"]
    stale = _token(crossfed_clouds, iat=now - 600, nbf=now - 600, exp=now - 120)
    assert _code(lambda: sts.assume_role_with_web_identity(
        RoleArn=role.role_arn, RoleSessionName="skew", WebIdentityToken=stale)
    ) == "ExpiredTokenException"
    future = _token(crossfed_clouds, nbf=now + 600, iat=now + 600, exp=now + 3600)
    assert _code(lambda: sts.assume_role_with_web_identity(
        RoleArn=role.role_arn, RoleSessionName="skew", WebIdentityToken=future)
    ) == "InvalidIdentityToken"
    last = crossfed_clouds.aws.decisions.for_target(role.role_arn)[-1]
    assert last.check == "not_before"


@pytest.mark.parametrize("claim", ["aud", "sub", "exp"])
def test_missing_claims_are_named(crossfed_clouds, role, sts, claim: str) -> None:
    with pytest.raises(ClientError) as caught:
        sts.assume_role_with_web_identity(RoleArn=role.role_arn, RoleSessionName="claims",
                                          WebIdentityToken=_token(crossfed_clouds,
                                                                  **{claim: None}))
    assert caught.value.response["Error"]["Code"] == "InvalidIdentityToken"
    assert caught.value.response["Error"]["Message"] == f"Missing a required claim: {claim}"


def test_unknown_role_is_access_denied(crossfed_clouds, role, sts) -> None:
    missing = role.role_arn + "-missing"
    assert _code(lambda: sts.assume_role_with_web_identity(
        RoleArn=missing, RoleSessionName="missing", WebIdentityToken=_token(crossfed_clouds))
    ) == "AccessDenied"


def test_rotated_key_is_found_by_refetching_the_jwks(crossfed_clouds, sts,
                                                     teardown: Teardown) -> None:
    """An issuer of its own: the run's primary issuer may be served by another process, and
    its server counts the JWKS fetches the verifier makes."""
    server = IssuerServer(crossfed_clouds.ca, "rotating").start()
    teardown.add("rotating issuer", server.stop)  # stopped last, after the role is gone
    jwks_path = "/openid/v1/jwks"
    aws = crossfed_clouds.aws
    applied = AwsProvisioner(aws.session(), crossfed_clouds.run_id, aws.ca_bundle,
                             aws.endpoint_url).apply(
        AwsTarget(), "rotating", server.url, SA, AUD, teardown)
    assert sts.assume_role_with_web_identity(  # the verifier now caches the JWKS
        RoleArn=applied.role_arn, RoleSessionName="before",
        WebIdentityToken=server.issuer.mint(SA, [AUD]))
    assert server.app.fetches[jwks_path] == 1, server.app.fetches
    new_key = SigningKey.generate()
    token = sign(server.issuer.claims_for(SA, [AUD]), new_key)
    server.issuer.extra_public_keys.append(new_key)  # published after the cache filled
    time.sleep(1.1)  # the cache refetches at most once a second
    assert sts.assume_role_with_web_identity(
        RoleArn=applied.role_arn, RoleSessionName="rotated", WebIdentityToken=token)
    assert server.app.fetches[jwks_path] == 2, server.app.fetches  # exactly one refetch
    assert sts.assume_role_with_web_identity(  # the new key is cached now: no more fetches
        RoleArn=applied.role_arn, RoleSessionName="after", WebIdentityToken=token)
    assert server.app.fetches[jwks_path] == 2, server.app.fetches


def test_untrusted_ca_is_accepted_through_a_matching_thumbprint(crossfed_clouds, sts,
                                                                teardown: Teardown) -> None:
    """AWS's fallback: a certificate outside its roots is fine if the provider pins it."""
    aws = crossfed_clouds.aws
    issuer = crossfed_clouds.untrusted_issuer
    applied = AwsProvisioner(aws.session(), crossfed_clouds.run_id, aws.ca_bundle,
                             aws.endpoint_url).apply(
        AwsTarget(), "pinned", issuer.url, SA, AUD, teardown)
    token = issuer.issuer.mint(SA, [AUD])
    answer = sts.assume_role_with_web_identity(
        RoleArn=applied.role_arn, RoleSessionName="pinned", WebIdentityToken=token)
    assert answer["Provider"] == issuer.url


def test_iam_enforcement_is_on(crossfed_clouds: LocalStandIns) -> None:
    iam = boto3.client("iam", endpoint_url=crossfed_clouds.aws.endpoint_url,
                       region_name="us-east-1", verify=crossfed_clouds.aws.ca_bundle,
                       aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x" * 40)
    assert _code(iam.list_roles) == "InvalidClientTokenId"
