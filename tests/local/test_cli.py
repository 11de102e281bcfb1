"""The `crossfed` console script as the issue states its contract.

`crossfed serve --state-dir DIR` prints one JSON object and runs until SIGTERM; `crossfed token`
mints from its issuer. Everything here goes through the real console script in a subprocess
and uses only what the JSON line says.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
import requests
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from crossfed.aws.trust_policy_templates import irsa_trust_policy, provider_key
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims, sign
from crossfed.oidc.fetch import top_thumbprint
from crossfed.redact import fingerprint
from fixtures.serve import CLI, Serve, start_serve

pytestmark = [pytest.mark.local, pytest.mark.aws]

AUDIENCE = "sts.amazonaws.com"
ACCOUNT = ServiceAccountRef("demo", "app")
SUBJECT = "system:serviceaccount:demo:app"
LOOPBACK_URL = re.compile(r"https://127\.0\.0\.1:\d{1,5}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    state_dir = tmp_path_factory.mktemp("cli-serve")
    running = start_serve(state_dir)
    yield running
    assert running.stop() == 0, f"serve exited badly; stderr:\n{running.stderr()[-3000:]}"
    assert not (state_dir / "state.json").exists(), "state.json left behind after SIGTERM"
    assert running.stdout() == "", "serve printed more than one line on stdout"
    stderr = running.stderr()
    assert "crossfed serve: stopped" in stderr
    leaked = [secret[-4:] for secret in [*running.minted, running.info["aws"]["secret_access_key"]]
              if secret in stderr]  # only tails: a failure must not print them
    assert not leaked, f"serve's stderr carries tokens or secrets ending {leaked}"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def mint(served: Serve, account: str = "demo/app", audience: str = AUDIENCE,
         *extra: str) -> str:
    """`crossfed token`; checks it prints exactly one line and records the token."""
    done = run_cli("token", "--state-dir", served.info["state_dir"], "--service-account",
                   account, "--audience", audience, *extra)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1, "not one line"
    token = done.stdout.strip()
    served.minted.append(token)
    return token


def expect_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 2, nothing on stdout, one stderr line naming the problem."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


@dataclass(repr=False)
class AwsSetup:
    """What an administrator creates with boto3 from the JSON line alone."""

    role_name: str
    role_arn: str
    provider_arn: str
    bucket: str
    sts: BaseClient  # unsigned: AssumeRoleWithWebIdentity needs no credentials
    client_kwargs: dict[str, Any]

    def assume(self, token: str, session: str = "cli-session") -> dict[str, Any]:
        return self.sts.assume_role_with_web_identity(
            RoleArn=self.role_arn, RoleSessionName=session, WebIdentityToken=token)

    def refusal(self, token: str) -> str:
        """The error code of an exchange that must fail."""
        with pytest.raises(ClientError) as caught:
            self.assume(token, "refused")
        return caught.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def aws_setup(served: Serve) -> AwsSetup:
    info, aws = served.info, served.info["aws"]
    admin = boto3.Session(aws_access_key_id=aws["access_key_id"],
                          aws_secret_access_key=aws["secret_access_key"],
                          region_name=aws["region"])
    kwargs = {"endpoint_url": aws["endpoint_url"], "verify": info["ca_bundle"]}
    iam, s3 = admin.client("iam", **kwargs), admin.client("s3", **kwargs)
    bucket = f"crossfed-cli-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="test-file.txt", Body=b"hello from crossfed")
    provider_arn = iam.create_open_id_connect_provider(
        Url=info["issuer"], ClientIDList=[AUDIENCE],
        ThumbprintList=[top_thumbprint(info["issuer"])])["OpenIDConnectProviderArn"]
    role_name = "crossfed-cli-reader"
    trust = irsa_trust_policy(provider_arn, info["issuer"], SUBJECT, AUDIENCE)
    role_arn = iam.create_role(RoleName=role_name,
                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    policy_arn = iam.create_policy(PolicyName="crossfed-cli-read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*"},
        ]}))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
    sts = boto3.client("sts", region_name=aws["region"],
                       config=Config(signature_version=UNSIGNED), **kwargs)
    return AwsSetup(role_name, role_arn, provider_arn, bucket, sts, kwargs)


# 1. The JSON line and the issuer it names.

def test_json_line_names_issuer_ca_and_admin(served: Serve) -> None:
    info, aws = served.info, served.info["aws"]
    for key in ("issuer", "ca_bundle", "state_dir", "signing_key"):
        assert isinstance(info[key], str) and info[key], key
    for key in ("endpoint_url", "region", "account_id", "access_key_id", "secret_access_key"):
        assert isinstance(aws[key], str) and aws[key], f"aws.{key}"
    assert LOOPBACK_URL.fullmatch(info["issuer"]), info["issuer"]
    assert LOOPBACK_URL.fullmatch(aws["endpoint_url"]), aws["endpoint_url"]
    assert re.fullmatch(r"\d{12}", aws["account_id"])
    assert Path(info["ca_bundle"]).is_file()
    assert Path(info["state_dir"]) == served.state_dir.resolve()


def test_issuer_serves_discovery_and_keys(served: Serve) -> None:
    info = served.info
    discovery = requests.get(info["issuer"] + "/.well-known/openid-configuration",
                             verify=info["ca_bundle"], timeout=10)
    assert discovery.status_code == 200
    document = discovery.json()
    assert document["issuer"] == info["issuer"]
    assert document["jwks_uri"].startswith(info["issuer"] + "/")
    keys = requests.get(document["jwks_uri"], verify=info["ca_bundle"], timeout=10).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["kid"] for k in keys)
    # The key published is the one in the state dir.
    assert SigningKey.load(Path(info["signing_key"])).kid in {k["kid"] for k in keys}


# 2. A federation built with boto3 from the JSON alone, and a token from `crossfed token`.

def test_token_is_a_projected_token_of_the_served_issuer(served: Serve) -> None:
    token = mint(served, "demo/app", AUDIENCE, "--expires-in", "120")
    key = SigningKey.load(Path(served.info["signing_key"]))
    claims = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"],
                        audience=AUDIENCE, issuer=served.info["issuer"])
    assert claims["sub"] == SUBJECT and claims["aud"] == [AUDIENCE]
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.get_unverified_header(token)["kid"] == key.kid


def test_token_exchange_reaches_the_bucket(served: Serve, aws_setup: AwsSetup) -> None:
    aws = served.info["aws"]
    answer = aws_setup.assume(mint(served), session="cli-session")
    assert answer["SubjectFromWebIdentityToken"] == SUBJECT
    assert answer["Audience"] == AUDIENCE
    # Documented as the token's iss; either way it must name this issuer.
    assert answer["Provider"] and provider_key(served.info["issuer"]) in answer["Provider"]
    arn = f"arn:aws:sts::{aws['account_id']}:assumed-role/{aws_setup.role_name}/cli-session"
    assert answer["AssumedRoleUser"]["Arn"] == arn
    creds = answer["Credentials"]
    assumed = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name=aws["region"])
    identity = assumed.client("sts", **aws_setup.client_kwargs).get_caller_identity()
    assert identity["Arn"] == arn and identity["Account"] == aws["account_id"]
    s3 = assumed.client("s3", **aws_setup.client_kwargs)
    listed = s3.list_objects_v2(Bucket=aws_setup.bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["test-file.txt"]
    # The role's policy, not the administrator's, governs the session.
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=aws_setup.bucket, Key="intruder.txt", Body=b"x")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


# 3. Tokens the stand-in must refuse.

def test_token_from_a_foreign_key_is_refused(served: Serve, aws_setup: AwsSetup) -> None:
    claims = service_account_claims(served.info["issuer"], ACCOUNT, [AUDIENCE])
    assert aws_setup.refusal(sign(claims, SigningKey.generate())) == "InvalidIdentityToken"


def test_expired_token_from_the_served_key_is_refused(served: Serve,
                                                      aws_setup: AwsSetup) -> None:
    key = SigningKey.load(Path(served.info["signing_key"]))
    # Issued two hours ago, expired one hour ago: far beyond any clock skew.
    claims = service_account_claims(served.info["issuer"], ACCOUNT, [AUDIENCE],
                                    expires_in=3600, now=int(time.time()) - 7200)
    assert aws_setup.refusal(sign(claims, key)) == "ExpiredTokenException"


# 4. Wrong input: one line naming the problem and the fix, exit status 2.

def test_token_without_a_running_serve(tmp_path: Path) -> None:
    done = run_cli("token", "--state-dir", str(tmp_path), "--service-account", "demo/app",
                   "--audience", AUDIENCE)
    expect_one_line_error(done, "crossfed serve", str(tmp_path))


def test_token_with_a_malformed_service_account(served: Serve) -> None:
    done = run_cli("token", "--state-dir", served.info["state_dir"], "--service-account",
                   "badvalue", "--audience", AUDIENCE)
    expect_one_line_error(done, "NAMESPACE/NAME", "badvalue")


@pytest.mark.parametrize(("audience", "expires_in", "needle"), [
    (AUDIENCE, "0", "--expires-in"),
    ("", "60", "--audience"),
])
def test_token_with_bad_values(served: Serve, audience: str, expires_in: str,
                               needle: str) -> None:
    done = run_cli("token", "--state-dir", served.info["state_dir"], "--service-account",
                   "demo/app", "--audience", audience, "--expires-in", expires_in)
    expect_one_line_error(done, needle)


def test_serve_without_state_dir_is_an_argparse_error() -> None:
    done = run_cli("serve")
    assert done.returncode == 2 and done.stdout == ""
    assert "--state-dir" in done.stderr and "required" in done.stderr


def test_serve_with_an_impossible_port(tmp_path: Path) -> None:
    done = run_cli("serve", "--state-dir", str(tmp_path), "--issuer-port", "70000")
    assert done.returncode == 2 and "--issuer-port" in done.stderr and "65535" in done.stderr


def test_serve_with_a_corrupt_signing_key(tmp_path: Path) -> None:
    (tmp_path / "issuer").mkdir()
    (tmp_path / "issuer" / "sa-signer.key").write_text("not a key\n")
    done = run_cli("serve", "--state-dir", str(tmp_path))
    expect_one_line_error(done, "sa-signer.key", "delete")


def test_second_serve_on_a_live_state_dir_is_refused(served: Serve) -> None:
    done = run_cli("serve", "--state-dir", served.info["state_dir"])
    expect_one_line_error(done, "already running", str(served.process.pid))
    # The running serve is untouched: its CA bundle still verifies its issuer.
    requests.get(served.info["issuer"] + "/.well-known/openid-configuration",
                 verify=served.info["ca_bundle"], timeout=10).raise_for_status()


def test_killed_serve_leaves_no_usable_state_and_restarts(tmp_path: Path) -> None:
    first = start_serve(tmp_path)
    kid = SigningKey.load(Path(first.info["signing_key"])).kid
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert (tmp_path / "state.json").exists()  # nobody could clean up
    stale = run_cli("token", "--state-dir", str(tmp_path), "--service-account", "demo/app",
                    "--audience", AUDIENCE)
    expect_one_line_error(stale, "no longer running", "crossfed serve")
    # A new serve takes over the stale state dir and keeps the signing key.
    second = start_serve(tmp_path)
    try:
        reused = SigningKey.load(Path(second.info["signing_key"])).kid
        minted = mint(second)
    finally:
        stopped = second.stop()  # no assertion here: it would hide the one that failed above
    assert reused == kid
    assert minted
    assert stopped == 0, f"serve exited badly; stderr:\n{second.stderr()[-3000:]}"
    assert not (tmp_path / "state.json").exists()


# 5. Secret hygiene of the state dir and the outputs.

def test_key_and_state_files_are_private(served: Serve) -> None:
    for path in (Path(served.info["signing_key"]), served.state_dir / "state.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_serve_stderr_carries_no_token(served: Serve, aws_setup: AwsSetup) -> None:
    token = mint(served)
    aws_setup.assume(token, session="stderr-check")
    request = f"{served.info['aws']['endpoint_url']} POST / -> 200"  # serve's access log
    deadline = time.monotonic() + 5
    while request not in served.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)  # let the drain thread catch up
    stderr = served.stderr()
    assert request in stderr, f"serve's stderr does not log the exchange:\n{stderr[-2000:]}"
    leaked = token in stderr  # a boolean: a failure must not print the token
    assert not leaked, "serve's stderr carries the token"  # checked again at shutdown


# 6. The decision feed explains refusals without showing tokens.

def test_decisions_show_fingerprints_not_tokens(served: Serve, aws_setup: AwsSetup) -> None:
    aws = served.info["aws"]
    url = aws["decisions_url"]  # the feed's path carries a per-run secret
    assert url.startswith(aws["endpoint_url"] + "/crossfed/decisions/")
    allowed = mint(served)
    aws_setup.assume(allowed, session="decisions")
    foreign = sign(service_account_claims(served.info["issuer"], ACCOUNT, [AUDIENCE]),
                   SigningKey.generate())
    assert aws_setup.refusal(foreign) == "InvalidIdentityToken"
    response = requests.get(url, verify=served.info["ca_bundle"], timeout=10)
    assert response.status_code == 200
    feed = response.json()
    assert isinstance(feed, list)
    denied = [d for d in feed if d["token"].get("fingerprint") == fingerprint(foreign)]
    assert denied and denied[-1]["allowed"] is False
    assert denied[-1]["code"] == "InvalidIdentityToken" and denied[-1]["message"]
    assert denied[-1]["token"]["sub"] == SUBJECT
    assert any(d["allowed"] and d["token"].get("fingerprint") == fingerprint(allowed)
               for d in feed)
    for token in (foreign, allowed):  # booleans: a failure must not print the token
        leaked = token in response.text or token.split(".")[2] in response.text
        assert not leaked, "a token, or its signature, appears in the decision feed"
