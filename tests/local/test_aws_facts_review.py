"""`crossfed serve`'s AWS side against the documented facts (reference: aws-federation-facts.md).

Each test drives a real `crossfed serve` subprocess through boto3 or raw HTTPS, using only what
its JSON line says, and checks one documented STS/IAM behaviour: parameter constraints and
their ValidationError texts, session policies, session tags and source identity, the OIDC
provider rules of IAM.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims, sign
from fixtures.serve import start_serve

pytestmark = [pytest.mark.local, pytest.mark.aws]

AUDIENCE = "sts.amazonaws.com"
ACCOUNT = ServiceAccountRef("facts", "app")
NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
SESSION_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]})


@dataclass(repr=False)  # repr would print the administrator's secret
class Served:
    info: dict[str, Any]
    key: SigningKey
    iam: BaseClient  # administrator, client-side validation off: the server must validate
    sts: BaseClient  # unsigned, client-side validation off
    provider_key: str  # the provider URL without https://, the condition-key prefix
    roles: dict[str, str]  # short name -> role ARN

    def token(self, **changes: Any) -> str:
        claims = service_account_claims(self.info["issuer"], ACCOUNT, [AUDIENCE])
        claims.update(changes)
        return sign(claims, self.key)

    def assume(self, role: str = "plain", **params: Any) -> dict[str, Any]:
        request: dict[str, Any] = {"RoleArn": self.roles[role], "RoleSessionName": "facts",
                                   "WebIdentityToken": self.token()}
        request.update(params)
        return self.sts.assume_role_with_web_identity(
            **{k: v for k, v in request.items() if v is not None})

    def post(self, **fields: str) -> requests.Response:
        """The Query API by hand, for what boto3 cannot send (missing required fields)."""
        data = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", **fields}
        return requests.post(self.info["aws"]["endpoint_url"], data=data, timeout=10,
                             verify=self.info["ca_bundle"])


def _trust(provider_arn: str, key: str, *extra_actions: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider_arn},
        "Action": ["sts:AssumeRoleWithWebIdentity", *extra_actions],
        "Condition": {"StringEquals": {f"{key}:sub": ACCOUNT.subject,
                                       f"{key}:aud": AUDIENCE}}}]})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = start_serve(tmp_path_factory.mktemp("facts-serve"))
    try:
        info = running.info
        aws = info["aws"]
        kwargs = {"endpoint_url": aws["endpoint_url"], "verify": info["ca_bundle"],
                  "region_name": aws["region"]}
        unchecked = {"parameter_validation": False, "retries": {"max_attempts": 1}}
        iam = boto3.client("iam", aws_access_key_id=aws["access_key_id"],
                           aws_secret_access_key=aws["secret_access_key"],
                           config=Config(**unchecked), **kwargs)
        sts = boto3.client("sts", config=Config(signature_version=UNSIGNED, **unchecked),
                           **kwargs)
        provider_arn = iam.create_open_id_connect_provider(
            Url=info["issuer"], ClientIDList=[AUDIENCE])["OpenIDConnectProviderArn"]
        key = info["issuer"].removeprefix("https://")
        roles = {}
        for name, max_session, extra in [
                ("plain", 3600, ()), ("twelve-hours", 43200, ()),
                ("tagging", 3600, ("sts:TagSession", "sts:SetSourceIdentity"))]:
            roles[name] = iam.create_role(
                RoleName=f"facts-{name}", AssumeRolePolicyDocument=_trust(provider_arn, key,
                                                                          *extra),
                MaxSessionDuration=max_session)["Role"]["Arn"]
        yield Served(info, SigningKey.load(Path(info["signing_key"])), iam, sts, key, roles)
    finally:
        running.stop()


def _error(call: Callable[[], Any]) -> tuple[int, dict[str, str]]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]


# --- AssumeRoleWithWebIdentity parameters (M-STS constraints, ValidationError texts) -------


@pytest.mark.parametrize(("name", "constraint"), [
    ("a", "Member must have length greater than or equal to 2"),
    ("x" * 65, "Member must have length less than or equal to 64"),
], ids=["one-character", "65-characters"])
def test_session_name_length_is_reported_as_a_length_constraint(
        served: Served, name: str, constraint: str) -> None:
    status, error = _error(lambda: served.assume(RoleSessionName=name))
    assert (status, error["Code"], error["Type"]) == (400, "ValidationError", "Sender")
    assert error["Message"] == (f"1 validation error detected: Value '{name}' at "
                                f"'roleSessionName' failed to satisfy constraint: {constraint}")


def test_every_violation_is_listed(served: Served) -> None:
    status, error = _error(lambda: served.assume(RoleSessionName="x" * 64 + ":",
                                                 DurationSeconds=60))
    assert error["Code"] == "ValidationError"
    assert error["Message"].startswith("3 validation errors detected: ")
    assert "Member must have length less than or equal to 64" in error["Message"]
    assert "regular expression pattern: [\\w+=,.@-]*" in error["Message"]
    assert "at 'durationSeconds'" in error["Message"]


def test_session_name_pattern_is_ascii(served: Served) -> None:
    status, error = _error(lambda: served.assume(RoleSessionName="caf\u00e9"))
    assert (status, error["Code"]) == (400, "ValidationError")


@pytest.mark.parametrize(("missing", "member"), [
    ("RoleArn", "roleArn"), ("RoleSessionName", "roleSessionName"),
    ("WebIdentityToken", "webIdentityToken")])
def test_missing_required_parameter_is_a_null_validation_error(
        served: Served, missing: str, member: str) -> None:
    fields = {"RoleArn": served.roles["plain"], "RoleSessionName": "facts",
              "WebIdentityToken": served.token()}
    del fields[missing]
    response = served.post(**fields)
    assert response.status_code == 400
    root = ET.fromstring(response.text)
    assert root.findtext("sts:Error/sts:Code", namespaces=NS) == "ValidationError"
    assert root.findtext("sts:Error/sts:Type", namespaces=NS) == "Sender"
    assert root.findtext("sts:Error/sts:Message", namespaces=NS) == (
        f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: "
        "Member must not be null")


@pytest.mark.parametrize(("token", "constraint"), [
    ("abc", "Member must have length greater than or equal to 4"),
    ("a" * 20001, "Member must have length less than or equal to 20000")],
    ids=["too-short", "too-long"])
def test_token_length_is_validated_without_echoing_it(
        served: Served, token: str, constraint: str) -> None:
    status, error = _error(lambda: served.assume(WebIdentityToken=token))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert error["Message"] == ("1 validation error detected: Value at 'webIdentityToken' "
                                f"failed to satisfy constraint: {constraint}")


def test_role_arn_length_is_validated(served: Served) -> None:
    status, error = _error(lambda: served.assume(RoleArn="arn:aws:iam::1:role"))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "Member must have length greater than or equal to 20" in error["Message"]


def test_a_provider_arn_as_role_arn_is_an_invalid_request_arn(served: Served) -> None:
    provider_arn = f"arn:aws:iam::123456789012:oidc-provider/{served.provider_key}"
    status, error = _error(lambda: served.assume(RoleArn=provider_arn))
    assert (status, error["Code"], error["Message"]) == (400, "ValidationError",
                                                         "Request ARN is invalid")


def test_duration_above_the_model_maximum(served: Served) -> None:
    status, error = _error(lambda: served.assume("twelve-hours", DurationSeconds=43201))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert error["Message"] == (
        "1 validation error detected: Value '43201' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value less than or equal to 43200")
    longest = served.assume("twelve-hours", DurationSeconds=43200)["Credentials"]["Expiration"]
    assert 43100 < longest.timestamp() - time.time() <= 43200


def test_minimum_session_token_size_is_bounded(served: Served) -> None:
    status, error = _error(lambda: served.assume(MinimumSessionTokenSize=4097))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "at 'minimumSessionTokenSize'" in error["Message"]


def test_provider_id_is_refused_with_an_oidc_token(served: Served) -> None:
    status, error = _error(lambda: served.assume(ProviderId="www.amazon.com"))
    assert (status, error["Code"]) == (400, "InvalidIdentityToken")


# --- session policies ----------------------------------------------------------------------


def test_packed_policy_size_only_with_session_policies(served: Served) -> None:
    assert "PackedPolicySize" not in served.assume()
    with_policy = served.assume(Policy=SESSION_POLICY)
    assert 0 < with_policy["PackedPolicySize"] <= 100
    with_arns = served.assume(PolicyArns=[{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}])
    assert 0 < with_arns["PackedPolicySize"] <= 100


def test_malformed_session_policy(served: Served) -> None:
    status, error = _error(lambda: served.assume(Policy="{not json"))
    assert (status, error["Code"], error["Type"]) == (400, "MalformedPolicyDocument", "Sender")


def test_session_policy_longer_than_2048_is_a_validation_error(served: Served) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::" + "b" * 2100}]})
    status, error = _error(lambda: served.assume(Policy=policy))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "Member must have length less than or equal to 2048" in error["Message"]


def test_more_than_ten_policy_arns(served: Served) -> None:
    arns = [{"arn": f"arn:aws:iam::123456789012:policy/p{i}"} for i in range(11)]
    status, error = _error(lambda: served.assume(PolicyArns=arns))
    assert (status, error["Code"]) == (400, "ValidationError")
    assert "at 'policyArns'" in error["Message"]


def test_policy_and_arns_together_over_2048_characters(served: Served) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::" + "b" * 1900}]})
    arns = [{"arn": f"arn:aws:iam::123456789012:policy/{'p' * 60}{i}"} for i in range(3)]
    status, error = _error(lambda: served.assume(Policy=policy, PolicyArns=arns))
    assert (status, error["Code"]) == (400, "PackedPolicyTooLarge")


# --- token claims --------------------------------------------------------------------------


def test_boolean_exp_is_not_a_timestamp(served: Served) -> None:
    status, error = _error(lambda: served.assume(WebIdentityToken=served.token(exp=True)))
    assert (status, error["Code"]) == (400, "InvalidIdentityToken")


def test_non_string_iss_is_a_sender_error_in_the_sts_envelope(served: Served) -> None:
    token = served.token()
    header, _, signature = token.split(".")
    # PyJWT refuses to sign a non-string iss, and the signature is never reached anyway
    claims = service_account_claims(served.info["issuer"], ACCOUNT, [AUDIENCE])
    claims["iss"] = [served.info["issuer"]]
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = served.post(RoleArn=served.roles["plain"], RoleSessionName="facts",
                           WebIdentityToken=f"{header}.{payload}.{signature}")
    assert response.status_code == 400
    root = ET.fromstring(response.text)
    assert root.findtext("sts:Error/sts:Code", namespaces=NS) == "InvalidIdentityToken"


def test_session_tags_need_sts_tag_session(served: Served) -> None:
    tags = {TAGS_CLAIM: {"principal_tags": {"team": ["blue"]}, "transitive_tag_keys": ["team"]}}
    status, error = _error(lambda: served.assume(WebIdentityToken=served.token(**tags)))
    assert (status, error["Code"]) == (403, "AccessDenied")
    answer = served.assume("tagging", WebIdentityToken=served.token(**tags))
    assert answer["Credentials"]["AccessKeyId"]
    assert "PackedPolicySize" in answer  # tags count against the packed size


def test_too_many_session_tags(served: Served) -> None:
    tags = {TAGS_CLAIM: {"principal_tags": {f"k{i}": ["v"] for i in range(51)}}}
    status, error = _error(lambda: served.assume("tagging", WebIdentityToken=served.token(
        **tags)))
    assert status == 400


def test_source_identity_is_returned_and_needs_set_source_identity(served: Served) -> None:
    claims = {SOURCE_IDENTITY_CLAIM: "alice@example.com"}
    status, error = _error(lambda: served.assume(WebIdentityToken=served.token(**claims)))
    assert (status, error["Code"]) == (403, "AccessDenied")
    answer = served.assume("tagging", WebIdentityToken=served.token(**claims))
    assert answer["SourceIdentity"] == "alice@example.com"
    assert "SourceIdentity" not in served.assume("tagging")


# --- IAM CreateOpenIDConnectProvider and friends (M-IAM) -------------------------------------


def _unique_url() -> str:
    return f"https://oidc-{uuid.uuid4().hex[:10]}.example.com/id/cluster"


# These hosts do not exist: without a ThumbprintList IAM would fetch the host's chain and fail
# (OpenIdIdpCommunicationError, tests/local/test_aws_deviations.py), so the tests of other
# rules name a thumbprint.
PINNED = ["a" * 40]


def _provider_arn(url: str) -> str:
    return f"arn:aws:iam::123456789012:oidc-provider/{url.removeprefix('https://')}"


@pytest.mark.parametrize("url", [
    "http://oidc.example.com/id/x", "https://oidc.example.com/id/x?query=1",
    "https://oidc.example.com/id/x#fragment", "oidc.example.com/id/x"])
def test_provider_url_must_be_https_without_query(served: Served, url: str) -> None:
    status, error = _error(lambda: served.iam.create_open_id_connect_provider(
        Url=url, ClientIDList=[AUDIENCE]))
    assert (status, error["Code"]) == (400, "ValidationError")


def test_provider_url_is_required(served: Served) -> None:
    status, error = _error(lambda: served.iam.create_open_id_connect_provider(
        ClientIDList=[AUDIENCE]))
    assert (status, error["Code"]) == (400, "ValidationError")


# One code per case. §2 CreateOpenIDConnectProvider: "ThumbprintList ... max 5; each exactly 40
# chars". Six thumbprints: InvalidInput 400 (§2 Errors; §6 "moto IAM OIDC providers": "6
# thumbprints -> InvalidInput 400"). A wrong length: ValidationError 400, the model-constraint
# error of §1 Errors ("parameter constraints ... Member must have length ..."); §2's error list
# names only InvalidInput, see the issue-10 point-6 report.
@pytest.mark.parametrize(("thumbprints", "code"), [
    (["a" * 39], "ValidationError"), (["a" * 41], "ValidationError"),
    (["a" * 40] * 6, "InvalidInput")], ids=["39-characters", "41-characters", "six"])
def test_thumbprints_are_40_characters_and_at_most_five(
        served: Served, thumbprints: list[str], code: str) -> None:
    status, error = _error(lambda: served.iam.create_open_id_connect_provider(
        Url=_unique_url(), ClientIDList=[AUDIENCE], ThumbprintList=thumbprints))
    assert (status, error["Code"]) == (400, code)


def test_client_ids_are_not_empty(served: Served) -> None:
    status, error = _error(lambda: served.iam.create_open_id_connect_provider(
        Url=_unique_url(), ClientIDList=[""]))
    assert (status, error["Code"]) == (400, "ValidationError")


def test_client_id_add_is_idempotent_and_remove_takes_it_out(served: Served) -> None:
    url = _unique_url()
    arn = served.iam.create_open_id_connect_provider(
        Url=url, ClientIDList=[AUDIENCE], ThumbprintList=PINNED)["OpenIDConnectProviderArn"]
    assert arn == _provider_arn(url)
    try:
        for _ in range(2):
            served.iam.add_client_id_to_open_id_connect_provider(
                OpenIDConnectProviderArn=arn, ClientID="api://second")
        got = served.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        assert got["ClientIDList"] == [AUDIENCE, "api://second"]
        served.iam.remove_client_id_from_open_id_connect_provider(
            OpenIDConnectProviderArn=arn, ClientID=AUDIENCE)
        served.iam.remove_client_id_from_open_id_connect_provider(
            OpenIDConnectProviderArn=arn, ClientID="never-there")
        got = served.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        assert got["ClientIDList"] == ["api://second"]
    finally:
        served.iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def test_added_client_id_is_an_accepted_audience(served: Served) -> None:
    """The provisioner reuses a provider by adding its audience: STS must then accept it."""
    arn = _provider_arn(served.info["issuer"])
    served.iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn,
                                                         ClientID="api://facts-extra")
    status, error = _error(lambda: served.assume(
        WebIdentityToken=served.token(aud=["api://facts-extra"])))
    assert (status, error["Code"]) == (403, "AccessDenied")  # past the audience, at the trust


def test_update_thumbprint_replaces_the_list_within_limits(served: Served) -> None:
    url = _unique_url()
    arn = served.iam.create_open_id_connect_provider(
        Url=url, ClientIDList=[AUDIENCE], ThumbprintList=["a" * 40, "b" * 40])[
        "OpenIDConnectProviderArn"]
    try:
        served.iam.update_open_id_connect_provider_thumbprint(
            OpenIDConnectProviderArn=arn, ThumbprintList=["c" * 40])
        got = served.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        assert got["ThumbprintList"] == ["c" * 40]
        status, error = _error(lambda: served.iam.update_open_id_connect_provider_thumbprint(
            OpenIDConnectProviderArn=arn, ThumbprintList=["c" * 39]))
        assert status == 400
        status, error = _error(lambda: served.iam.update_open_id_connect_provider_thumbprint(
            OpenIDConnectProviderArn=arn, ThumbprintList=["c" * 40] * 6))
        assert status == 400
    finally:
        served.iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)


def test_at_most_100_providers_per_account(served: Served) -> None:
    existing = len(served.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"])
    created: list[str] = []
    try:
        for _ in range(100 - existing):
            created.append(served.iam.create_open_id_connect_provider(
                Url=_unique_url(), ClientIDList=[AUDIENCE],
                ThumbprintList=PINNED)["OpenIDConnectProviderArn"])
        status, error = _error(lambda: served.iam.create_open_id_connect_provider(
            Url=_unique_url(), ClientIDList=[AUDIENCE], ThumbprintList=PINNED))
        assert (status, error["Code"]) == (409, "LimitExceeded")
    finally:
        for arn in created:
            served.iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
