"""The probe's Azure part: a credential as users write it, then a Key Vault secret read.

The secret's value never leaves: only its SHA-256 digest is reported.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from crossfed.probe.report import failure, timed

AADSTS = re.compile(r"AADSTS(\d+)")
VAULT_SCOPE = "https://vault.azure.net/.default"


def _credential(kind: str) -> Any:
    from azure.identity import DefaultAzureCredential, WorkloadIdentityCredential

    if kind == "workload":
        return WorkloadIdentityCredential()
    # What most users write; managed identity and developer tools would only add noise here.
    return DefaultAzureCredential(exclude_managed_identity_credential=True,
                                  exclude_developer_cli_credential=True,
                                  exclude_cli_credential=True,
                                  exclude_powershell_credential=True,
                                  exclude_azure_cli_credential=True,
                                  exclude_visual_studio_code_credential=True,
                                  exclude_interactive_browser_credential=True)


def _auth_failure(exc: Exception) -> dict[str, Any]:
    message = str(exc)
    match = AADSTS.search(message)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return failure(f"AADSTS{match.group(1)}" if match else type(exc).__name__, "get_token",
                   message, status=status)


def with_credential(kind: str, vault_url: str, secret: str,
                    verify_challenge_resource: bool) -> dict[str, Any]:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
    from azure.keyvault.secrets import SecretClient

    result: dict[str, Any] = {}
    started = time.monotonic()
    try:
        credential = _credential(kind)
        credential.get_token(VAULT_SCOPE)
        result["token"] = timed(started, {"ok": True})
    except (ClientAuthenticationError, ValueError) as exc:
        result["token"] = timed(started, _auth_failure(exc))
        result["secret"] = failure("NoToken", "get_secret", "no token, no read")
        return result
    client = SecretClient(vault_url, credential,
                          verify_challenge_resource=verify_challenge_resource)
    started = time.monotonic()
    try:
        bundle = client.get_secret(secret)
        digest = hashlib.sha256((bundle.value or "").encode()).hexdigest()
        result["secret"] = {"ok": True, "sha256": digest, "version": bundle.properties.version}
    except ClientAuthenticationError as exc:
        result["secret"] = _auth_failure(exc)
    except HttpResponseError as exc:
        code = exc.error.code if exc.error else type(exc).__name__
        result["secret"] = failure(code or "?", "get_secret", str(exc),
                                   status=exc.status_code)
    result["secret"] = timed(started, result["secret"])
    return result
