"""A workload that logs its token or credentials shows none of them in a failing scenario's
report: pod logs, events, the termination message's report and a process's stderr go through
crossfed.redact.scrub_text, which leaves at most the last characters of a part without claims."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from kubernetes import client
from moto.sts.utils import random_session_token

from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.plan import FederationPlan
from crossfed.redact import scrub_text
from crossfed.scenario import ScenarioRun, Scenarios
from crossfed.verdict import AwsEvidence, VerdictError, check_aws
from crossfed.workload.pod import PodRunner, PodSettings
from crossfed.workload.process import ProbeResult

pytestmark = [pytest.mark.local]

ACCOUNT = ServiceAccountRef("crossfed-probe", "s3-reader")
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example shape


def _token() -> str:
    return Issuer("https://127.0.0.1:1", SigningKey.generate()).mint(
        ACCOUNT, ["sts.amazonaws.com"], 3600)


def _claims_parts(token: str) -> list[str]:
    """What of a JWT must never show: its header, its payload (the claims, also decoded)."""
    header, payload, _ = token.split(".")
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    return [header, payload, payload[-8:], decoded, ACCOUNT.subject]


def _secret_log(token: str, session_token: str, azure_secret: str, pem: str) -> str:
    return "\n".join([
        f"token file holds {token}",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'{{"SessionToken": "{session_token}", "AccessKeyId": "ASIAEXAMPLE"}}',
        f"botocore: credentials {AWS_SECRET} and {session_token}",
        f"Authorization: Bearer {token}",
        f"client_secret={azure_secret}&grant_type=client_credentials",
        f"secret in passing {azure_secret}.",
        pem,
        "thumbprint 9e99a48a9960b14926bb7f3b02e22da2b0ab7280 role arn:aws:iam::123456789012:"
        "role/crossfed-abc123-aws-allowed-1a2b3c",
    ])


@pytest.fixture
def logged() -> dict[str, str]:
    """A workload's log with a projected token, AWS and Azure secrets and a PEM private key."""
    values = {"token": _token(), "session_token": random_session_token(),
              "azure_secret": secrets.token_urlsafe(30),
              "pem": SigningKey.generate().private_pem().decode()}
    values["log"] = _secret_log(values["token"], values["session_token"],
                                values["azure_secret"], values["pem"])
    return values


def _assert_clean(shown: str, logged: dict[str, str]) -> None:
    token = logged["token"]
    assert [p for p in _claims_parts(token) if p in shown] == []
    for secret in (token, AWS_SECRET, logged["session_token"], logged["azure_secret"]):
        middle = secret[len(secret) // 2:][:16]  # no middle part either
        leaked = secret in shown or secret[:12] in shown or middle in shown
        assert not leaked, f"the secret ending {secret[-4:]} shows, whole or in part"
    pem_lines = [line for line in logged["pem"].splitlines() if "-----" not in line]
    assert [line for line in pem_lines if line in shown] == []


def test_scrub_text_leaves_claims_free_tails_only(logged: dict[str, str]) -> None:
    shown = scrub_text(logged["log"])
    _assert_clean(shown, logged)
    assert f"…{logged['token'].split('.')[2][-6:]}>" in shown  # the signature's tail only
    assert "<RSA PRIVATE KEY sha256:" in shown and "…EKEY>" in shown
    # what is no secret stays readable: thumbprints, ARNs, key ids
    assert "9e99a48a9960b14926bb7f3b02e22da2b0ab7280" in shown
    assert "role/crossfed-abc123-aws-allowed-1a2b3c" in shown and "ASIAEXAMPLE" in shown


def test_an_unsigned_token_shows_no_tail(logged: dict[str, str]) -> None:
    header, payload, _ = logged["token"].split(".")
    unsigned = f"{header}.{payload}."
    shown = scrub_text(f"presented {unsigned} as is")
    assert payload[-6:] not in shown and shown.startswith("presented <jwt sha256:")


class _Core:
    """What PodRunner.diagnostics reads from the API server, as kubernetes models: the events
    and the stored pod (a cluster-free stand-in for CoreV1Api's two reads)."""

    def __init__(self, event_message: str) -> None:
        self.event_message = event_message

    def list_namespaced_event(self, namespace: str) -> client.CoreV1EventList:
        return client.CoreV1EventList(items=[client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="e"), involved_object=client.V1ObjectReference(),
            reason="Failed", message=self.event_message)])

    def read_namespaced_pod(self, name: str, namespace: str) -> client.V1Pod:
        return client.V1Pod(spec=client.V1PodSpec(containers=[client.V1Container(
            name="probe", env=[client.V1EnvVar(name="AWS_ROLE_ARN", value="arn")],
            volume_mounts=[client.V1VolumeMount(name="t", mount_path="/var/run/t")])],
            volumes=[client.V1Volume(name="t")]))


def test_a_pods_logs_and_events_reach_the_report_scrubbed(logged: dict[str, str],
                                                          tmp_path) -> None:
    runner = PodRunner(_Core(f"container said {logged['token']}"), "run", tmp_path / "ca.pem",
                       PodSettings())
    shown = runner.diagnostics("ns", logged["log"])
    _assert_clean(shown, logged)
    assert "event Failed: container said <jwt sha256:" in shown and "AWS_ROLE_ARN" in shown


def test_a_reported_step_quoting_credentials_is_scrubbed(logged: dict[str, str]) -> None:
    """The probe's JSON line (pod log or termination message) becomes the verdict's text."""
    plan = FederationPlan(name="scrub", workload=ACCOUNT)
    failed = {"ok": False, "error_code": "AccessDenied", "operation": "GetCallerIdentity",
              "message": logged["log"]}
    report = {"probe": "crossfed", "aws": {c: {"caller_identity": failed, "list_bucket": failed}
                                           for c in ("boto3", "cli")}}
    evidence = AwsEvidence("arn:aws:iam::123456789012:role/r", "r", "123456789012",
                           "test-file.txt", [])
    with pytest.raises(VerdictError) as caught:
        check_aws(plan, json.loads(json.dumps(report)), evidence)
    _assert_clean(str(caught.value), logged)
    assert "AccessDenied in GetCallerIdentity" in str(caught.value)


def test_a_probe_failing_before_its_report_shows_scrubbed_stderr(logged: dict[str, str],
                                                                 crossfed_clouds) -> None:
    run = ScenarioRun(FederationPlan(name="scrub", workload=ACCOUNT))
    run.result = ProbeResult({"error": "probe printed no JSON line"}, 1, logged["log"])
    with pytest.raises(VerdictError) as caught:
        Scenarios(crossfed_clouds).verdict(run)
    _assert_clean(str(caught.value), logged)
    assert "before reporting" in str(caught.value)
