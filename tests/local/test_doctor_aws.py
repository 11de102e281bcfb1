"""`crossfed doctor aws` as a user runs it: a subprocess with only the SDK's standard
environment, against a `crossfed serve` running as its own process, on objects provisioned
with boto3 as the positive plan's (provider with the issuer's thumbprint, IRSA role).

Every case is also put to the stand-in's STS, so the doctor's verdict is checked against what
the verifier answers, and every run is checked read-only: IAM's whole state (roles with their
trust and permission policies, providers, managed policies and their versions, users and
keys) is the same before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from crossfed.aws.trust_policy_templates import irsa_trust_policy, render_template
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, sign
from crossfed.oidc.fetch import top_thumbprint
from crossfed.suite.plans import SEED_TRUST_POLICY
from fixtures.doctor import FakeApiServer, Outcome, usage_error
from fixtures.serve import CLI, Serve, mint_token, start_serve

pytestmark = [pytest.mark.local, pytest.mark.aws]

PROBE = ServiceAccountRef("crossfed-probe", "s3-reader")
OTHER = ServiceAccountRef("crossfed-probe", "debug-shell")
AUDIENCE = "sts.amazonaws.com"


@dataclass
class World:
    serve: Serve
    home: Path
    tokens: Path
    role_arn: str
    seed_role_arn: str

    @property
    def info(self) -> dict[str, Any]:
        return self.serve.info

    def env(self, **extra: str) -> dict[str, str]:
        """Only the SDK's standard variables (and a HOME with no ~/.aws in it)."""
        aws = self.info["aws"]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home),
               "AWS_ACCESS_KEY_ID": aws["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
               "AWS_ENDPOINT_URL": aws["endpoint_url"], "AWS_CA_BUNDLE": self.info["ca_bundle"],
               "AWS_REGION": aws["region"]}
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def boto(self, service: str) -> Any:
        aws = self.info["aws"]
        return boto3.client(service, endpoint_url=aws["endpoint_url"], region_name=aws["region"],
                            verify=self.info["ca_bundle"], aws_access_key_id=aws["access_key_id"],
                            aws_secret_access_key=aws["secret_access_key"])

    def token_file(self, name: str, token: str) -> Path:
        path = self.tokens / name
        path.write_text(token)
        path.chmod(0o600)
        return path

    def mint(self, account: ServiceAccountRef, audience: str = AUDIENCE) -> Path:
        """Through `crossfed token`, as a user would."""
        token = mint_token(self.info["state_dir"], f"{account.namespace}/{account.name}",
                           audience)
        return self.token_file(f"{account.name}-{audience.replace('/', '_')}", token)

    def issuer(self, url: str | None = None, key: SigningKey | None = None) -> Issuer:
        return Issuer(url or self.info["issuer"],
                      key or SigningKey.load(Path(self.info["signing_key"])))


def iam_state(iam: Any) -> dict[str, Any]:
    """Everything a write by the doctor could change, read back whole."""
    state: dict[str, Any] = {"roles": {}, "providers": {}, "policies": {}, "users": {}}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        state["roles"][name] = {
            "role": iam.get_role(RoleName=name)["Role"],
            "attached": iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"],
            "inline": iam.list_role_policies(RoleName=name)["PolicyNames"],
            "tags": iam.list_role_tags(RoleName=name)["Tags"]}
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])
        got.pop("ResponseMetadata", None)
        state["providers"][entry["Arn"]] = got
    for policy in iam.list_policies(Scope="Local")["Policies"]:
        versions = iam.list_policy_versions(PolicyArn=policy["Arn"])["Versions"]
        state["policies"][policy["Arn"]] = {"policy": policy, "versions": versions}
    for user in iam.list_users()["Users"]:
        keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
        state["users"][user["UserName"]] = {"user": user, "keys": keys}
    return json.loads(json.dumps(state, default=str))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    serve = start_serve(tmp_path_factory.mktemp("doctor-serve"))
    try:
        home, tokens = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("tokens")
        tokens.chmod(0o700)
        stub = World(serve, home, tokens, "", "")
        iam, issuer = stub.boto("iam"), serve.info["issuer"]
        provider = iam.create_open_id_connect_provider(
            Url=issuer, ClientIDList=[AUDIENCE], ThumbprintList=[top_thumbprint(issuer)],
        )["OpenIDConnectProviderArn"]
        trust = irsa_trust_policy(provider, issuer, PROBE.subject, AUDIENCE)
        role = iam.create_role(RoleName="doctor-allowed",
                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        permissions = iam.create_policy(PolicyName="doctor-list", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                    "Resource": "*"}]}))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName="doctor-allowed", PolicyArn=permissions)
        seed = render_template(SEED_TRUST_POLICY, provider, issuer, PROBE.subject, AUDIENCE)
        seed_role = iam.create_role(RoleName="doctor-seed",
                                    AssumeRolePolicyDocument=json.dumps(seed))["Role"]["Arn"]
        yield World(serve, home, tokens, role, seed_role)
    finally:
        serve.stop()


def doctor(world: World, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """Run the command; IAM must hold exactly what it held before."""
    iam = world.boto("iam")
    before = iam_state(iam)
    done = subprocess.run([*CLI, "doctor", "aws", *args], capture_output=True, text=True,
                          env=env or world.env(), timeout=120)
    changed = iam_state(iam) != before
    assert not changed, "crossfed doctor changed IAM's state"
    return Outcome(done.returncode, done.stdout, done.stderr)


def diagnose(world: World, token: Path, role_arn: str | None = None,
             account: ServiceAccountRef = PROBE) -> Outcome:
    return doctor(world, "--role-arn", role_arn or world.role_arn, "--service-account",
                  f"{account.namespace}/{account.name}", "--token-file", str(token))


def sts_answer(world: World, token: Path, role_arn: str) -> str:
    """What the stand-in's STS answers for the same token and role: 'ok' or the error code."""
    try:
        world.boto("sts").assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="doctor-check", WebIdentityToken=token.read_text())
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_the_positive_plan_is_all_ok(world: World) -> None:
    token = world.mint(PROBE)
    run = diagnose(world, token)
    assert run.code == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(line.startswith("ok   ") for line in lines), run.stdout
    for check in ("provider", "audience", "keys", "thumbprint", "signature", "expiry", "role",
                  "trust_policy"):
        assert run.line(check).startswith(f"ok   {check}: ")
    assert "doctor-list (s3:ListBucket)" in run.line("role")
    assert sts_answer(world, token, world.role_arn) == "ok"
    leaked = token.read_text() in run.stdout + run.stderr
    assert not leaked, "the doctor printed the token"


def test_another_service_account_fails_the_trust_policy(world: World) -> None:
    token = world.mint(OTHER)
    run = diagnose(world, token, account=OTHER)
    assert (run.code, run.failed()) == (1, ["trust_policy"]), run.stdout
    assert "service-account name differs" in run.line("trust_policy")
    assert "; fix: " in run.line("trust_policy")
    assert sts_answer(world, token, world.role_arn) == "AccessDenied"


def test_an_unregistered_audience_fails_the_audience(world: World) -> None:
    token = world.mint(PROBE, audience="api://AzureADTokenExchange")
    run = diagnose(world, token)
    # the role's trust policy wants aud sts.amazonaws.com too, so it fails as well
    assert run.code == 1 and run.failed()[0] == "audience", run.stdout
    assert "add-client-id-to-open-id-connect-provider" in run.line("audience")
    assert sts_answer(world, token, world.role_arn) == "InvalidIdentityToken"


def test_no_provider_for_the_issuer_fails_the_provider(world: World) -> None:
    elsewhere = "https://127.0.0.1:1"  # signed by serve's key, but no IAM provider has this iss
    token = world.token_file("elsewhere", world.issuer(elsewhere).mint(PROBE, [AUDIENCE]))
    run = diagnose(world, token)
    assert (run.code, run.failed()) == (1, ["provider", "trust_policy"]), run.stdout
    assert f"--url {elsewhere}" in run.line("provider")
    assert run.line("keys").startswith("skip keys: ")
    assert sts_answer(world, token, world.role_arn) == "InvalidIdentityToken"


def test_the_seeds_trust_policy_names_the_sub_aud_mistake(world: World) -> None:
    token = world.mint(PROBE)
    run = diagnose(world, token, role_arn=world.seed_role_arn)
    assert (run.code, run.failed()) == (1, ["trust_policy"]), run.stdout
    line = run.line("trust_policy")
    fix = line.split("; fix: ", 1)[-1]
    assert "'sts.amazonaws.com' is an audience value put under the :sub key" in fix, line
    assert fix.endswith(":aud?"), line
    assert sts_answer(world, token, world.seed_role_arn) == "AccessDenied"


def test_an_expired_token_fails_the_expiry(world: World) -> None:
    issuer = world.issuer()
    claims = issuer.claims_for(PROBE, [AUDIENCE])
    now = int(time.time())
    claims.update(iat=now - 3700, nbf=now - 3700, exp=now - 100)  # past the 60 s skew
    token = world.token_file("expired", sign(claims, issuer.key))
    run = diagnose(world, token)
    assert (run.code, run.failed()) == (1, ["expiry"]), run.stdout
    assert "expired 100 s ago" in run.line("expiry") or "expired 101 s ago" in run.line("expiry")
    assert sts_answer(world, token, world.role_arn) == "ExpiredTokenException"


def test_a_token_signed_by_another_key_fails_the_signature(world: World) -> None:
    token = world.token_file("foreign", world.issuer(key=SigningKey.generate()).mint(
        PROBE, [AUDIENCE]))
    run = diagnose(world, token)
    assert (run.code, run.failed()) == (1, ["signature"]), run.stdout
    assert "does not publish" in run.line("signature")
    assert sts_answer(world, token, world.role_arn) == "InvalidIdentityToken"


def test_a_known_kid_with_a_bad_signature_fails_the_signature(world: World) -> None:
    real = world.mint(PROBE).read_text()
    forged = world.issuer(key=SigningKey.generate()).mint(PROBE, [AUDIENCE])
    # the real token's header (its kid) over claims signed by another key
    token = world.token_file("forged", ".".join([*real.split(".")[:2], forged.split(".")[2]]))
    run = diagnose(world, token)
    assert (run.code, run.failed()) == (1, ["signature"]), run.stdout
    assert "signed by another key" in run.line("signature")


def test_usage_errors_exit_2_with_one_line(world: World, tmp_path: Path) -> None:
    token = str(world.mint(PROBE))
    base = ["--role-arn", world.role_arn, "--service-account", "crossfed-probe/s3-reader"]
    usage_error(doctor(world, *base), "--kubeconfig", "--token-file")
    usage_error(doctor(world, *base, "--token-file", str(tmp_path / "absent")), "cannot read",
           "--token-file")
    no_keys = world.env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    usage_error(doctor(world, *base, "--token-file", token, env=no_keys), "no AWS credentials",
           "AWS_PROFILE")
    usage_error(doctor(world, "--role-arn", world.role_arn, "--service-account",
                  "crossfed-probe/debug-shell", "--token-file", token), "not --service-account")
    missing = subprocess.run([*CLI, "doctor", "aws", "--token-file", token],
                             capture_output=True, text=True, env=world.env())
    assert missing.returncode == 2 and "--role-arn" in missing.stderr


def test_the_doctor_refuses_any_iam_write(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from crossfed.doctor.aws import WriteRefused, iam_client

    for key, value in world.env().items():
        monkeypatch.setenv(key, value)
    iam = iam_client()
    with pytest.raises(WriteRefused, match="iam:CreateRole"):
        iam.create_role(RoleName="doctor-never", AssumeRolePolicyDocument="{}")
    names = [role["RoleName"] for role in world.boto("iam").list_roles()["Roles"]]
    if "doctor-never" in names:  # the guard let it through: leave the module's IAM as it was
        world.boto("iam").delete_role(RoleName="doctor-never")
    assert "doctor-never" not in names


def test_with_a_kubeconfig_the_claims_come_from_a_token_request(world: World,
                                                                  tmp_path: Path) -> None:
    api = FakeApiServer(world.issuer(), {PROBE})
    try:
        config = str(api.kubeconfig(tmp_path / "kubeconfig"))
        base = ["--role-arn", world.role_arn, "--kubeconfig", config, "--context", "fake"]
        run = doctor(world, *base, "--service-account", "crossfed-probe/s3-reader")
        assert run.code == 0 and run.failed() == [], run.stdout + run.stderr
        assert api.requests[-1]["spec"]["audiences"] == [AUDIENCE]
        leaked = api.requests[-1]["token"] in run.stdout + run.stderr
        assert not leaked, "the doctor printed the TokenRequest's token"
        wrong = doctor(world, *base, "--service-account", "crossfed-probe/s3-reader",
                       "--audience", "api://AzureADTokenExchange")
        assert wrong.code == 1 and wrong.failed()[0] == "audience", wrong.stdout
        assert api.requests[-1]["spec"]["audiences"] == ["api://AzureADTokenExchange"]
        usage_error(doctor(world, *base, "--service-account", "crossfed-probe/nobody"),
               "TokenRequest", "404")
    finally:
        api.server.shutdown()
