"""The stand-ins' public ports answer only the APIs they stand in for.

moto's administrative routes (`/moto-api/`: a state dump with every IAM user's secret access
key, reset, reset-auth that switches IAM enforcement off) and crossfed's decision feeds without
their per-run secret answer 404 on every public listener: the AWS endpoint, Entra, ARM and each
Key Vault. A client on the network (a pod, any local user) can neither read credentials nor
change enforcement; the harness still reads the feeds at their secret URLs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from crossfed.aws.provision import AwsProvisioner
from crossfed.azure.keyvault.model import Vault
from crossfed.cleanup import Teardown
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.plan import AwsTarget

pytestmark = [pytest.mark.local]

# What moto's server and crossfed used to serve beyond the clouds' APIs.
EXTRA_GETS = ["/moto-api/", "/moto-api/data.json", "/moto-api/reset-auth", "/moto-api/reset",
              "/moto-api/dashboard", "/moto-api/seed", "/moto-api/state-manager/get-transition",
              "/moto-api/recorder/download-recording", "/favicon.ico", "/latest/meta-data/",
              "/latest/api/token", "/crossfed/decisions", "/crossfed/decisions/",
              "/crossfed/decisions/not-the-secret"]
EXTRA_POSTS = [("/moto-api/reset-auth", "inf"), ("/moto-api/reset", ""),
               ("/moto-api/seed?a=42", ""), ("/moto-api/recorder/start-recording", "")]
SA = ServiceAccountRef("closed-routes", "pod")
AUD = "sts.amazonaws.com"


@pytest.fixture(scope="module")
def vault_url(crossfed_clouds: LocalStandIns) -> Iterator[tuple[str, str]]:
    """A Key Vault listener of its own: (its URL, its decision feed's URL)."""
    vaults = crossfed_clouds.azure.vaults
    vault = Vault(f"kv-closed-{uuid.uuid4().hex[:6]}", crossfed_clouds.azure.tenant_id)
    uri = vaults.open_vault(vault)
    yield uri.rstrip("/"), vaults.decisions_url(vault)
    vaults.close_vault(vault)


def _listeners(clouds: LocalStandIns, vault: tuple[str, str]) -> dict[str, str]:
    return {"aws": clouds.aws.endpoint_url, "entra": clouds.azure.entra.authority_host,
            "arm": clouds.azure.arm.endpoint.rstrip("/"), "keyvault": vault[0]}


def test_extra_routes_answer_404_on_every_public_port(crossfed_clouds: LocalStandIns,
                                                      vault_url: tuple[str, str]) -> None:
    """ARM authenticates before it routes (a request without a token gets 401 whatever the
    path), so it is asked with the administrator's management token: the route must not be
    there for an authenticated caller either."""
    ca = crossfed_clouds.ca.bundle_path
    token = crossfed_clouds.azure.admin_credential().get_token(
        "https://management.azure.com/.default").token
    wrong: list[str] = []
    for name, base in _listeners(crossfed_clouds, vault_url).items():
        headers = {"Authorization": f"Bearer {token}"} if name == "arm" else {}
        for path in EXTRA_GETS:
            status = requests.get(base + path, headers=headers, verify=ca,
                                  timeout=10).status_code
            if status != 404:
                wrong.append(f"{name} GET {path} -> {status}")
        for path, body in EXTRA_POSTS:
            status = requests.post(base + path, data=body, headers=headers, verify=ca,
                                   timeout=10).status_code
            if status != 404:
                wrong.append(f"{name} POST {path} -> {status}")
    unauthenticated = requests.get(crossfed_clouds.azure.arm.endpoint.rstrip("/")
                                   + "/moto-api/data.json", verify=ca, timeout=10).status_code
    if unauthenticated != 401:
        wrong.append(f"arm GET /moto-api/data.json without a token -> {unauthenticated}")
    assert not wrong, "routes the real services do not have answered:\n" + "\n".join(wrong)


def test_feeds_answer_only_at_their_secret_path(crossfed_clouds: LocalStandIns,
                                                vault_url: tuple[str, str]) -> None:
    ca = crossfed_clouds.ca.bundle_path
    feeds = {"aws": crossfed_clouds.aws.decisions_url,
             "entra": crossfed_clouds.azure.entra.decisions_url, "keyvault": vault_url[1]}
    for name, url in feeds.items():
        response = requests.get(url, verify=ca, timeout=10)
        assert response.status_code == 200 and isinstance(response.json(), list), name
        secret = url.rsplit("/", 1)[1]
        assert len(secret) >= 32, f"{name}: the feed's secret is too short to be one"
        for guess in (url[:-1], url + "x", url.rsplit("/", 1)[0] + "/" + secret.upper()):
            status = requests.get(guess, verify=ca, timeout=10).status_code
            assert status == 404, f"{name}: a wrong feed path answered {status}"
    assert len({url.rsplit("/", 1)[1] for url in feeds.values()}) == 3, "feeds share a secret"


def test_moto_extras_answer_like_s3_for_a_missing_bucket(crossfed_clouds: LocalStandIns) -> None:
    response = requests.get(crossfed_clouds.aws.endpoint_url + "/moto-api/data.json",
                            verify=crossfed_clouds.ca.bundle_path, timeout=10)
    assert response.status_code == 404
    assert "<Code>NoSuchBucket</Code>" in response.text
    other = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE",
                         aws_secret_access_key="example", **crossfed_clouds.aws.client_kwargs(),
                         config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as refused:  # a service this endpoint does not stand in for
        other.list_tables()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_pod_can_neither_read_credentials_nor_switch_enforcement_off(
        crossfed_clouds: LocalStandIns) -> None:
    aws = crossfed_clouds.aws
    assert aws.admin is not None
    admin_secret = aws.admin.secret_access_key
    teardown = Teardown()
    try:
        applied = AwsProvisioner(aws.session(), crossfed_clouds.run_id, aws.ca_bundle,
                                 aws.endpoint_url).apply(AwsTarget(), "closed-routes",
                                                         crossfed_clouds.issuer.url, SA, AUD,
                                                         teardown)
        # The pod: its own federated session, and nothing else, on the stand-in's port.
        token = crossfed_clouds.issuer.issuer.mint(SA, [AUD])
        creds = boto3.client("sts", region_name="us-east-1", **aws.client_kwargs(),
                             aws_access_key_id="", aws_secret_access_key="").\
            assume_role_with_web_identity(RoleArn=applied.role_arn, RoleSessionName="pod",
                                          WebIdentityToken=token)["Credentials"]
        pod = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name="us-east-1")
        seen = []
        for path in ("/moto-api/data.json", "/moto-api/", "/crossfed/decisions"):
            response = requests.get(aws.endpoint_url + path, verify=aws.ca_bundle, timeout=10)
            assert response.status_code == 404, f"GET {path} -> {response.status_code}"
            seen.append(response.text)
        switched = requests.post(aws.endpoint_url + "/moto-api/reset-auth", data="inf",
                                 verify=aws.ca_bundle, timeout=10)
        assert switched.status_code == 404, f"reset-auth -> {switched.status_code}"
        seen.append(switched.text)
        leaked = any(admin_secret in text for text in seen)  # a boolean: never print it
        assert not leaked, "a public route returned the administrator's secret access key"
        # Enforcement is still on: unknown keys and the pod's session get no IAM answers.
        anonymous = boto3.client("iam", region_name="us-east-1", aws_access_key_id="AKIAPOD",
                                 aws_secret_access_key="guess", **aws.client_kwargs())
        with pytest.raises(ClientError) as unknown:
            anonymous.list_users()
        assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        pod_iam = pod.client("iam", **aws.client_kwargs())
        for call in (pod_iam.list_users, lambda: pod_iam.list_access_keys(UserName="x")):
            with pytest.raises(ClientError) as denied:
                call()
            assert denied.value.response["Error"]["Code"] == "AccessDenied"
        # ... while the pod's own grant still works.
        listed = pod.client("s3", **aws.client_kwargs()).list_objects_v2(Bucket=applied.bucket)
        assert [o["Key"] for o in listed["Contents"]] == ["test-file.txt"]
    finally:
        assert not teardown.run()


def test_the_access_log_never_shows_a_feeds_secret() -> None:
    from crossfed.decisions import new_feed_path
    from crossfed.https_server import logged_path

    feed = new_feed_path()
    assert logged_path(feed) == "/crossfed/decisions/…"
    assert logged_path(feed + "/more") == "/crossfed/decisions/…"
    assert logged_path("/crossfed/decisions") == "/crossfed/decisions"  # no secret to hide
    assert logged_path("/tenant/oauth2/v2.0/token") == "/tenant/oauth2/v2.0/token"
