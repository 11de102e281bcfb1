"""IAM OIDC-provider rules real IAM enforces and moto 5.2.5 does not (facts file, sections 2, 6).

Applied once, process-wide, by the AWS stand-in (moto's backends are process-wide anyway):
- CreateOpenIDConnectProvider: Url required and `https://` (moto takes `http://` and crashes
  on a missing Url), no query or fragment (moto drops them silently), each thumbprint exactly
  40 characters (moto only checks the maximum), each client ID 1-255 characters, at most 100
  providers per account (LimitExceeded).
- AddClientIDToOpenIDConnectProvider / RemoveClientIDFromOpenIDConnectProvider: missing in
  moto (HTTP 500); both idempotent as documented, at most 100 client IDs.
- UpdateOpenIDConnectProviderThumbprint: replaces the list, with CreateOpenIDConnectProvider's
  limits (at most 5, 40 characters each).
- CreateOpenIDConnectProvider without ThumbprintList: "IAM will retrieve and use the top
  intermediate certificate authority (CA) thumbprint of the OpenID Connect identity provider
  server certificate" (IAM API reference, ThumbprintList). moto stores an empty list; here the
  Url's host is asked for its chain and the SHA-1 of the last certificate it serves is stored,
  as crossfed/oidc/fetch.py computes it (`openssl s_client -showcerts`' last certificate).

CHOICE: a port in the Url is accepted although IAM says it "should not contain a port": the
stand-in's issuers listen on loopback ports, and the provider must name them exactly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from moto.core.responses import EmptyResult
from moto.iam.exceptions import (
    IAMException,
    InvalidInput,
    LimitExceededException,
    ValidationError,
)
from moto.iam.models import IAMBackend
from moto.iam.responses import IamResponse

from crossfed.oidc.fetch import FetchFailure, top_thumbprint

MAX_PROVIDERS = 100  # OIDC providers per account (IAM quotas)
MAX_CLIENT_IDS = 100
MAX_THUMBPRINTS = 5
THUMBPRINT_LENGTH = 40
INVALID_URL = "Invalid Open ID Connect Provider URL"  # moto's (and IAM's) wording
FETCH_TIMEOUT = 5.0  # seconds: what STS allows an IdP (facts file, section 1)
# The fault's documentation in the IAM API model (OpenIdIdpCommunicationErrorException).
UNREACHABLE = "The request failed because IAM cannot connect to the OpenID Connect identity " \
              "provider URL."


class OpenIdIdpCommunicationError(IAMException):
    code = "OpenIdIdpCommunicationError"  # HTTP 400, sender fault (IAM API model)


def _same_place(url: str) -> str:
    return url


# Where the child connects for a Url's chain: the issuer URL itself, or where a learned
# issuer's documents are mirrored (the stand-in's KeyCache locations). Set by the child.
locate = _same_place


def fetched_thumbprint(url: str) -> str:
    """The top certificate the Url's host serves, as IAM pins it when given no thumbprint.

    CHOICE: a host that cannot be reached (connection refused, no such name, TLS handshake
    failure, slower than 5 s) fails the call with OpenIdIdpCommunicationError 400 and no
    provider is created. AWS does not say what it does then; that error is the one
    CreateOpenIDConnectProvider lists for "IAM cannot connect to the OpenID Connect identity
    provider URL" (IAM API reference, Errors), and storing no thumbprint instead would leave
    a provider that pins nothing, which is what the caller asked IAM to prevent.
    """
    try:
        return top_thumbprint(locate(url), timeout=FETCH_TIMEOUT)
    except FetchFailure as failure:
        raise OpenIdIdpCommunicationError(UNREACHABLE) from failure


def _constraint(field: str, value: Any, constraint: str) -> ValidationError:
    return ValidationError(f"1 validation error detected: Value '{value}' at '{field}' failed "
                           f"to satisfy constraint: {constraint}")


def check_url(url: str | None) -> None:
    if url is None:
        raise ValidationError("1 validation error detected: Value null at 'url' failed to "
                              "satisfy constraint: Member must not be null")
    parts = urlsplit(url)
    # Case-sensitive: IAM compares the URL with the token's iss, which is lower-case https.
    if not url.startswith("https://") or not parts.hostname or "?" in url or "#" in url:
        raise ValidationError(INVALID_URL)


def check_thumbprints(thumbprints: list[str]) -> None:
    if len(thumbprints) > MAX_THUMBPRINTS:
        raise InvalidInput("Thumbprint list must contain fewer than 5 entries.")
    for thumbprint in thumbprints:
        if len(thumbprint) != THUMBPRINT_LENGTH:
            raise _constraint("thumbprintList", thumbprints, "Member must satisfy constraint: "
                              "[Member must have length less than or equal to 40, "
                              "Member must have length greater than or equal to 40]")


def check_client_id(client_id: str | None, field: str = "clientID") -> None:
    if client_id is None:
        raise ValidationError(f"1 validation error detected: Value null at '{field}' failed "
                              "to satisfy constraint: Member must not be null")
    if not 1 <= len(client_id) <= 255:
        raise _constraint(field, client_id, "Member must have length less than or equal to "
                          "255, Member must have length greater than or equal to 1")


def _create(original: Any) -> Any:
    def create_open_id_connect_provider(self: IAMBackend, url: str, thumbprint_list: list[str],
                                        client_id_list: list[str], tags: Any) -> Any:
        check_url(url)
        check_thumbprints(thumbprint_list or [])
        for client_id in client_id_list or []:
            check_client_id(client_id, "clientIDList")
        if len(self.open_id_providers) >= MAX_PROVIDERS:
            raise LimitExceededException(
                f"Cannot exceed quota for OpenIdConnectProvidersPerAccount: {MAX_PROVIDERS}")
        if not thumbprint_list:  # omitted (or empty): IAM fetches the top CA's thumbprint
            thumbprint_list = [fetched_thumbprint(url)]
        return original(self, url, thumbprint_list, client_id_list, tags)
    return create_open_id_connect_provider


def _update_thumbprints(original: Any) -> Any:
    def update_open_id_connect_provider_thumbprint(self: IAMBackend, arn: str,
                                                   thumbprint_list: list[str]) -> None:
        check_thumbprints(thumbprint_list or [])
        return original(self, arn, list(thumbprint_list or []))
    return update_open_id_connect_provider_thumbprint


def add_client_id_to_open_id_connect_provider(self: IamResponse) -> EmptyResult:
    client_id = self._get_param("ClientID")
    check_client_id(client_id)
    provider = self.backend.get_open_id_connect_provider(
        self._get_param("OpenIDConnectProviderArn"))
    if client_id not in provider.client_id_list:  # documented: idempotent
        if len(provider.client_id_list) >= MAX_CLIENT_IDS:
            raise LimitExceededException(
                f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}")
        provider.client_id_list = [*provider.client_id_list, client_id]
    return EmptyResult()


def remove_client_id_from_open_id_connect_provider(self: IamResponse) -> EmptyResult:
    client_id = self._get_param("ClientID")
    check_client_id(client_id)
    provider = self.backend.get_open_id_connect_provider(
        self._get_param("OpenIDConnectProviderArn"))
    # documented: removing a client ID that is not there is no error
    provider.client_id_list = [c for c in provider.client_id_list if c != client_id]
    return EmptyResult()


def apply() -> None:
    """Patch moto's IAM once; later calls do nothing."""
    if getattr(IAMBackend, "_crossfed_oidc_rules", False):
        return
    IAMBackend.create_open_id_connect_provider = _create(  # type: ignore[method-assign]
        IAMBackend.create_open_id_connect_provider)
    IAMBackend.update_open_id_connect_provider_thumbprint = (  # type: ignore[method-assign]
        _update_thumbprints(IAMBackend.update_open_id_connect_provider_thumbprint))
    IamResponse.add_client_id_to_open_id_connect_provider = (  # type: ignore[attr-defined]
        add_client_id_to_open_id_connect_provider)
    IamResponse.remove_client_id_from_open_id_connect_provider = (  # type: ignore[attr-defined]
        remove_client_id_from_open_id_connect_provider)
    IAMBackend._crossfed_oidc_rules = True  # type: ignore[attr-defined]
