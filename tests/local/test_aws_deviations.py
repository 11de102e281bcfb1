"""AWS deviations an outside check found (issue 11, point 7), each through boto3 against a real
`crossfed serve`:

1. Session policies limit the session: its permissions are "the intersection of the role's
   identity-based policy and the session policies" and session policies cannot "grant more
   permissions than those allowed by the identity-based policy of the role" (IAM User Guide,
   id_credentials_temp_control-access_assumerole); an explicit Deny wins (policy evaluation
   logic). Checked for S3 and IAM calls the session makes, inline `Policy` and `PolicyArns`.
2. CreateOpenIDConnectProvider without ThumbprintList: "IAM will retrieve and use the top
   intermediate certificate authority (CA) thumbprint of the OpenID Connect identity provider
   server certificate" (IAM API reference); a host IAM cannot reach: OpenIdIdpCommunicationError
   (the stand-in's CHOICE, crossfed/aws/moto_iam.py).
"""

from __future__ import annotations

import json
import select
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims, sign
from fixtures.serve import start_serve

pytestmark = [pytest.mark.local, pytest.mark.aws]

AUDIENCE = "sts.amazonaws.com"
ACCOUNT = ServiceAccountRef("deviations", "app")
BUCKET = "deviations-bucket"
KEY = "object.txt"
ROLE = "deviations-reader"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


ROLE_POLICY = _policy(
    _allow(["s3:ListBucket", "s3:GetObject"], [f"arn:aws:s3:::{BUCKET}",
                                                f"arn:aws:s3:::{BUCKET}/*"]),
    _allow("iam:GetRole"))
GET_ONLY = _policy(_allow("s3:GetObject"))
S3_ALL = _policy(_allow("s3:*"))


@dataclass(repr=False)  # repr would print the administrator's secret
class Served:
    info: dict[str, Any]
    key: SigningKey
    iam: BaseClient  # administrator
    sts: BaseClient  # unsigned
    role_arn: str
    provider_arn: str
    managed: dict[str, str]  # short name -> managed policy ARN

    def session(self, **params: Any) -> boto3.Session:
        """A web-identity session of the role, with the given session policies."""
        token = sign(service_account_claims(self.info["issuer"], ACCOUNT, [AUDIENCE]), self.key)
        credentials = self.sts.assume_role_with_web_identity(
            RoleArn=self.role_arn, RoleSessionName="deviations", WebIdentityToken=token,
            **params)["Credentials"]
        return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                             aws_secret_access_key=credentials["SecretAccessKey"],
                             aws_session_token=credentials["SessionToken"],
                             region_name=self.info["aws"]["region"])

    def client(self, session: boto3.Session, service: str) -> BaseClient:
        return session.client(service, endpoint_url=self.info["aws"]["endpoint_url"],
                              verify=self.info["ca_bundle"],
                              config=Config(retries={"max_attempts": 1}))


def _trust(provider_arn: str, key: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{key}:sub": ACCOUNT.subject,
                                       f"{key}:aud": AUDIENCE}}}]})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = start_serve(tmp_path_factory.mktemp("deviations-serve"))
    try:
        info = running.info
        aws = info["aws"]
        admin = boto3.Session(aws_access_key_id=aws["access_key_id"],
                              aws_secret_access_key=aws["secret_access_key"],
                              region_name=aws["region"])
        kwargs = {"endpoint_url": aws["endpoint_url"], "verify": info["ca_bundle"]}
        iam, s3 = admin.client("iam", **kwargs), admin.client("s3", **kwargs)
        sts = boto3.client("sts", region_name=aws["region"],
                           config=Config(signature_version=UNSIGNED), **kwargs)
        # No ThumbprintList: the stand-in fetches the issuer's chain (deviation 2).
        provider_arn = iam.create_open_id_connect_provider(
            Url=info["issuer"], ClientIDList=[AUDIENCE])["OpenIDConnectProviderArn"]
        role_arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=_trust(
            provider_arn, info["issuer"].removeprefix("https://")))["Role"]["Arn"]
        iam.put_role_policy(RoleName=ROLE, PolicyName="read", PolicyDocument=ROLE_POLICY)
        managed = {name: iam.create_policy(PolicyName=f"deviations-{name}",
                                           PolicyDocument=document)["Policy"]["Arn"]
                   for name, document in [("get-only", GET_ONLY), ("s3-all", S3_ALL)]}
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"deviations")
        yield Served(info, SigningKey.load(Path(info["signing_key"])), iam, sts, role_arn,
                     provider_arn, managed)
    finally:
        running.stop()


def _denied(call: Callable[[], Any]) -> bool:
    """True if the call is refused with AccessDenied (403)."""
    try:
        call()
    except ClientError as error:
        response = error.response
        return (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
            403, "AccessDenied")
    return False


def _s3_outcomes(served: Served, **params: Any) -> dict[str, bool]:
    """For a session with these session policies: which S3 operations are allowed."""
    s3 = served.client(served.session(**params), "s3")
    calls = {
        "ListBucket": lambda: s3.list_objects_v2(Bucket=BUCKET),
        "GetObject": lambda: s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read(),
        "PutObject": lambda: s3.put_object(Bucket=BUCKET, Key=f"new-{uuid.uuid4().hex[:6]}",
                                           Body=b"x"),
    }
    return {name: not _denied(call) for name, call in calls.items()}


# --- 1. session policies -------------------------------------------------------------------


def test_without_session_policies_the_role_decides(served: Served) -> None:
    assert _s3_outcomes(served) == {"ListBucket": True, "GetObject": True, "PutObject": False}


def test_inline_session_policy_narrows_the_role(served: Served) -> None:
    assert _s3_outcomes(served, Policy=GET_ONLY) == {
        "ListBucket": False, "GetObject": True, "PutObject": False}


def test_inline_session_policy_grants_nothing_the_role_lacks(served: Served) -> None:
    assert _s3_outcomes(served, Policy=S3_ALL) == {
        "ListBucket": True, "GetObject": True, "PutObject": False}


def test_managed_session_policy_narrows_the_role(served: Served) -> None:
    arns = [{"arn": served.managed["get-only"]}]
    assert _s3_outcomes(served, PolicyArns=arns) == {
        "ListBucket": False, "GetObject": True, "PutObject": False}


def test_managed_session_policy_grants_nothing_the_role_lacks(served: Served) -> None:
    arns = [{"arn": served.managed["s3-all"]}]
    assert _s3_outcomes(served, PolicyArns=arns) == {
        "ListBucket": True, "GetObject": True, "PutObject": False}


def test_explicit_deny_in_a_session_policy_wins(served: Served) -> None:
    policy = _policy(_allow("s3:*"), {"Effect": "Deny", "Action": "s3:GetObject",
                                      "Resource": "*"})
    assert _s3_outcomes(served, Policy=policy) == {
        "ListBucket": True, "GetObject": False, "PutObject": False}


def test_inline_and_managed_session_policies_allow_together(served: Served) -> None:
    """CHOICE (crossfed/aws/moto_session_policies.py): Policy and PolicyArns form one set of
    session policies; what any of them allows (and the role allows) is allowed."""
    listing = _policy(_allow("s3:ListBucket"))
    arns = [{"arn": served.managed["get-only"]}]
    assert _s3_outcomes(served, Policy=listing, PolicyArns=arns) == {
        "ListBucket": True, "GetObject": True, "PutObject": False}


def test_unknown_managed_policy_grants_nothing(served: Served) -> None:
    arns = [{"arn": "arn:aws:iam::123456789012:policy/deviations-never-created"}]
    assert _s3_outcomes(served, PolicyArns=arns) == {
        "ListBucket": False, "GetObject": False, "PutObject": False}


def test_session_policies_apply_to_iam_calls(served: Served) -> None:
    plain = served.client(served.session(), "iam")
    assert plain.get_role(RoleName=ROLE)["Role"]["Arn"] == served.role_arn
    narrowed = served.client(served.session(Policy=GET_ONLY), "iam")
    assert _denied(lambda: narrowed.get_role(RoleName=ROLE))


def test_get_caller_identity_needs_no_permission(served: Served) -> None:
    """AWS: "No permissions are required to perform this operation" (GetCallerIdentity)."""
    sts = served.client(served.session(Policy=_policy(_allow("s3:GetObject", "arn:aws:s3:::x"))),
                        "sts")
    assert sts.get_caller_identity()["Arn"].endswith(f":assumed-role/{ROLE}/deviations")


# --- 2. CreateOpenIDConnectProvider without ThumbprintList ----------------------------------


def _served_chain(url: str) -> list[x509.Certificate]:
    """The certificates the host presents, in order, read on our own handshake."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=5) as sock:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE)
        connection = SSL.Connection(context, sock)
        connection.set_connect_state()
        for _ in range(50):  # a socket with a timeout is non-blocking to OpenSSL
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                select.select([sock], [], [], 0.1)
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    return list(chain)


def _sha1(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - IAM's thumbprint is SHA-1


def test_provider_without_thumbprints_pins_the_top_certificate_served(served: Served) -> None:
    chain = _served_chain(served.info["issuer"])
    expected = _sha1(chain[-1])
    # The stand-in's issuer serves leaf + run CA: the top certificate is the CA of ca_bundle.
    bundle = x509.load_pem_x509_certificates(Path(served.info["ca_bundle"]).read_bytes())
    assert len(chain) >= 2 and expected != _sha1(chain[0])
    assert expected in {_sha1(cert) for cert in bundle}
    assert chain[-1].public_bytes(Encoding.DER) in {c.public_bytes(Encoding.DER) for c in bundle}
    got = served.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=served.provider_arn)
    assert got["ThumbprintList"] == [expected]
    assert len(expected) == 40 and all(c in "0123456789abcdef" for c in expected)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_host_is_openid_idp_communication_error(served: Served) -> None:
    url = f"https://127.0.0.1:{_closed_port()}/deviations"
    with pytest.raises(ClientError) as caught:
        served.iam.create_open_id_connect_provider(Url=url, ClientIDList=[AUDIENCE])
    response = caught.value.response
    assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
        400, "OpenIdIdpCommunicationError")
    listed = served.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert not any(p["Arn"].endswith(url.removeprefix("https://")) for p in listed)


def test_given_thumbprints_are_kept_and_nothing_is_fetched(served: Served) -> None:
    """An unreachable host with a ThumbprintList: IAM stores the list as given."""
    url = f"https://127.0.0.1:{_closed_port()}/given"
    arn = served.iam.create_open_id_connect_provider(
        Url=url, ClientIDList=[AUDIENCE], ThumbprintList=["b" * 40])["OpenIDConnectProviderArn"]
    try:
        got = served.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        assert got["ThumbprintList"] == ["b" * 40]
    finally:
        served.iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
