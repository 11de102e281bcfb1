"""One exchange made by the harness itself with the workload's token, in the probe's report
shape: how the tier polls for propagation every ≤2 s without starting a pod or the aws CLI
each time. The workload itself then runs once the cloud answers (crossfed.cloud.waiting)."""

from __future__ import annotations

import hashlib
from typing import Any

from crossfed.probe.azure import AADSTS, VAULT_SCOPE
from crossfed.probe.report import failure
from crossfed.redact import scrub_text


class WorkloadToken:
    """The workload's token, held so that no repr shows it: pytest prints the arguments of each
    frame of a failing test's traceback, and this one is a live credential."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<token sha256:{hashlib.sha256(self.value.encode()).hexdigest()[:12]}>"


def _scrubbed(result: dict[str, Any], token: str) -> dict[str, Any]:
    if "message" in result:
        result["message"] = scrub_text(str(result["message"]), token)
    return result


def aws_exchange(session: Any, region: str, role_arn: str, bucket: str,
                 held: WorkloadToken) -> dict[str, Any]:
    """AssumeRoleWithWebIdentity, then get-caller-identity and a listing with its credentials
    (what boto3 does in the pod); {"aws": {"boto3": ...}}."""
    from botocore.exceptions import BotoCoreError, ClientError

    token = held.value
    def failed(exc: Exception, operation: str) -> dict[str, Any]:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return _scrubbed(failure(error.get("Code", "?"), exc.operation_name,
                                     error.get("Message", "")), token)
        return _scrubbed(failure(type(exc).__name__, operation, str(exc)), token)

    sts = session.client("sts", region_name=region)
    try:
        answer = sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="crossfed-propagation-wait",
            WebIdentityToken=token)
    except (ClientError, BotoCoreError) as exc:
        problem = failed(exc, "AssumeRoleWithWebIdentity")
        return {"aws": {"boto3": {"caller_identity": problem, "list_bucket": failure(
            "NoCredentials", "ListObjectsV2", "no credentials, no listing")}}}
    creds = answer["Credentials"]
    keys = {"aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"]}
    result: dict[str, Any] = {}
    try:
        arn = session.client("sts", region_name=region, **keys).get_caller_identity()["Arn"]
        result["caller_identity"] = {"ok": True, "arn": arn}
    except (ClientError, BotoCoreError) as exc:
        result["caller_identity"] = failed(exc, "GetCallerIdentity")
    try:
        listed = session.client("s3", region_name=region, **keys).list_objects_v2(Bucket=bucket)
        result["list_bucket"] = {"ok": True,
                                 "keys": [o["Key"] for o in listed.get("Contents", [])]}
    except (ClientError, BotoCoreError) as exc:
        result["list_bucket"] = failed(exc, "ListObjectsV2")
    return {"aws": {"boto3": result}}


def azure_exchange(tenant_id: str, client_id: str, vault_url: str, secret: str,
                   held: WorkloadToken, authority_host: str, ca_bundle: str | None,
                   verify_challenge: bool, known_authority: bool) -> dict[str, Any]:
    """The federated exchange at the token endpoint, then the secret read (what
    WorkloadIdentityCredential does in the pod); {"azure": {"workload": ...}}. A transport
    error is a refusal like any other (retried while nothing explains it)."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
    from azure.identity import ClientAssertionCredential
    from azure.keyvault.secrets import SecretClient

    token = held.value

    def auth_failed(exc: Exception, operation: str) -> dict[str, Any]:
        match = AADSTS.search(str(exc))
        code = f"AADSTS{match.group(1)}" if match else type(exc).__name__
        return _scrubbed(failure(code, operation, str(exc)), token)

    verify: dict[str, Any] = {"connection_verify": ca_bundle} if ca_bundle else {}
    result: dict[str, Any] = {}
    try:
        credential = ClientAssertionCredential(
            tenant_id, client_id, lambda: token, authority=authority_host, **verify,
            **({} if known_authority else {"disable_instance_discovery": True}))
        credential.get_token(VAULT_SCOPE)
        result["token"] = {"ok": True}
    except (ClientAuthenticationError, ValueError) as exc:
        result["token"] = auth_failed(exc, "get_token")
        result["secret"] = failure("NoToken", "get_secret", "no token, no read")
        return {"azure": {"workload": result}}
    except AzureError as exc:
        result["token"] = _scrubbed(failure(type(exc).__name__, "get_token", str(exc)), token)
        result["secret"] = failure("NoToken", "get_secret", "no token, no read")
        return {"azure": {"workload": result}}
    client = SecretClient(vault_url, credential, verify_challenge_resource=verify_challenge,
                          **verify)
    try:
        value = client.get_secret(secret).value or ""
        result["secret"] = {"ok": True, "sha256": hashlib.sha256(value.encode()).hexdigest()}
    except ClientAuthenticationError as exc:
        result["secret"] = auth_failed(exc, "get_secret")
    except HttpResponseError as exc:
        code = exc.error.code if exc.error else type(exc).__name__
        result["secret"] = _scrubbed(failure(code or "?", "get_secret", str(exc),
                                             status=exc.status_code), token)
    except AzureError as exc:
        result["secret"] = _scrubbed(failure(type(exc).__name__, "get_secret", str(exc)), token)
    return {"azure": {"workload": result}}
