"""Entra ID's token-endpoint errors, one exception per AADSTS code (`check` names what failed).

Codes, `error` values and message openings follow the facts file
(shared/reference/azure-federation-facts.md, section 1); where Entra's HTTP status is not in
any source the class says so ("assumed"). Message tails are ours: they carry the same facts
(the assertion's issuer, subject, audience, times) in our words.

The body follows Entra's documented shape: error, error_description ("AADSTSnnnn: msg" then
Trace ID, Correlation ID and Timestamp joined by CRLF), error_codes, timestamp, trace_id,
correlation_id, error_uri.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

WIF_DOCS = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"


class EntraError(Exception):
    code = 0  # the AADSTS number
    error = "invalid_request"  # the OAuth error field
    status = 400

    def __init__(self, message: str, check: str, detail: str = "") -> None:
        super().__init__(f"AADSTS{self.code}: {message}")
        self.message = message
        self.check = check  # which verification step failed, for the decision log
        self.detail = detail  # the diagnosis: why, in terms a user can act on

    @property
    def aadsts(self) -> str:
        return f"AADSTS{self.code}"


# --- request shape -----------------------------------------------------------------------


class MissingParameter(EntraError):
    """A required form field is absent (also used for a wrong client_assertion_type)."""
    code, error, status = 900144, "invalid_request", 400


class MissingRequiredField(EntraError):
    """A client-credentials request without `scope` (Entra answers 90014 here, not 900144).
    Name and code: ENTRA reference-error-codes.md (MissingRequiredField); the message opening,
    `invalid_request` and the grant it comes from: field (mullerpeter/databricks-grafana#99,
    client secret; ServiceNow KB0866332). Status 400: RFC 6749 section 5.2 for
    invalid_request, as Entra's other invalid_request answers (not stated in those sources)."""
    code, error, status = 90014, "invalid_request", 400


class MethodNotAccepted(EntraError):
    """The token endpoint asked with another verb than POST. Name, code and message template:
    ENTRA reference-error-codes.md (BadResourceRequestInvalidRequest); status 400: field
    (NunoFilipeMota/PublicScripts#5, "(400) Bad Request").
    CHOICE: `error` is invalid_request (no source gives it; the docs' class for protocol
    errors)."""
    code, error, status = 900561, "invalid_request", 400


class UnsupportedGrantType(EntraError):
    code, error, status = 70003, "unsupported_grant_type", 400  # status assumed


class MissingClientCredential(EntraError):
    """Neither client_assertion nor client_secret was sent."""
    code, error, status = 7000218, "invalid_client", 401  # status assumed


class InvalidScope(EntraError):
    """Client credentials need exactly one `<resource>/.default` scope."""
    code, error, status = 1002012, "invalid_scope", 400  # status assumed


class ResourceNotFound(EntraError):
    """The scope names a resource no service principal of the tenant stands for. Name, code and
    message opening: ENTRA reference-error-codes.md (InvalidResourceServicePrincipalNotFound);
    `invalid_resource` and error_codes [500011]: field (rootinc/laravel-azure-middleware#51,
    Azure/azure-cli#29113). CHOICE: status 400 (RFC 6749 section 5.2's status for every
    error but invalid_client; no source shows it)."""
    code, error, status = 500011, "invalid_resource", 400


# --- tenant and client -------------------------------------------------------------------


class TenantNotFound(EntraError):
    code, error, status = 90002, "invalid_tenant", 400


class ApplicationNotFound(EntraError):
    code, error, status = 700016, "unauthorized_client", 400


class InvalidClientSecret(EntraError):
    code, error, status = 7000215, "invalid_client", 401


# --- the federated assertion -------------------------------------------------------------


class InvalidJwt(EntraError):
    """Malformed JWT, unsupported algorithm, or a signature no published key verifies."""
    code, error, status = 50027, "invalid_request", 400


class AssertionLifetimeTooLong(EntraError):
    """Lifetime above 1.01:00:00 (25 h), or no iat to measure it from."""
    code, error, status = 70023, "invalid_request", 400


class NoRecordForIssuer(EntraError):
    code, error, status = 700211, "invalid_client", 401  # status assumed


class NoRecordForAudience(EntraError):
    code, error, status = 700212, "invalid_client", 401  # status assumed


class NoMatchingRecord(EntraError):
    """Issuer and audience match a credential, the subject matches none."""
    code, error, status = 70021, "invalid_client", 401


class SubjectMatchesOnlyIgnoringCase(EntraError):
    """The subject equals a credential's only case-insensitively (Entra matches case-sensitively
    since 2024 and names this case with its own code)."""
    code, error, status = 7002138, "invalid_client", 401  # status assumed, like the others


class OidcEndpointFailed(EntraError):
    code, error, status = 90061, "invalid_request", 400


class SigningKeyNotFound(EntraError):
    code, error, status = 7000272, "invalid_client", 401  # status assumed: no source gives it


class AssertionOutsideTimeRange(EntraError):
    code, error, status = 700024, "invalid_client", 401


class EntraIssuedAssertion(EntraError):
    """An Entra-issued token presented as the assertion (AZDOCS#90276; error and status are
    in no source: those of the other refusals of the assertion itself, like 50027)."""
    code, error, status = 700222, "invalid_request", 400  # error and status assumed


# --- message texts -----------------------------------------------------------------------

TENANT_NOT_FOUND = (
    "Tenant '{tenant}' not found. Check that the tenant ID is right and that you are signing "
    "in to the right cloud."
)
APPLICATION_NOT_FOUND = (
    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
    "The request may have gone to the wrong tenant, or the client id is wrong."
)
MISSING_PARAMETER = "The request body must contain the following parameter: '{name}'."
WRONG_ASSERTION_TYPE = (
    "The request body must contain the following parameter: 'client_assertion_type' with the "
    "value 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'."
)
MISSING_CREDENTIAL = (
    "The request body must contain the following parameter: 'client_assertion' or "
    "'client_secret'."
)
# The first sentence is Entra's (field, see MissingRequiredField); the second is ours.
MISSING_REQUIRED_FIELD = (
    "The required field '{name}' is missing from the credential. The client credentials grant "
    "needs it: send scope=<resource>/.default."
)
# Entra's template: "The endpoint only accepts {valid_verbs} requests. Received a
# {invalid_verb} request." CHOICE: valid_verbs is "POST" (as in the 2026 field reports; older
# ones read "POST, OPTIONS": the stand-in serves no CORS preflight).
METHOD_NOT_ACCEPTED = "The endpoint only accepts POST requests. Received a {method} request."
# The first sentence is Entra's documented pattern; the rest is ours. CHOICE: {tenant} is the
# tenant id (real answers show the tenant's name or id; ours have no name).
RESOURCE_NOT_FOUND = (
    "The resource principal named {resource} was not found in the tenant named {tenant}. "
    "No application or first-party service with that identifier is known to this tenant: "
    "check the resource part of the scope, or the tenant the request was sent to."
)
UNSUPPORTED_GRANT = "The app requested an unsupported grant type '{grant_type}'."
INVALID_SCOPE = (
    "The provided value for scope {scope} is not valid. The client credentials grant takes "
    "one scope: the resource's identifier followed by /.default."
)
INVALID_SECRET = (
    "Invalid client secret provided. Send the client secret value, not its ID, for a secret "
    "added to app '{client_id}'."
)
MALFORMED_JWT = "JWT token is invalid or malformed."
BAD_SIGNATURE = "JWT token failed signature validation."
LIFETIME_TOO_LONG = (
    "External OIDC Provider token must have a lifetime of less than or equal to 1.01:00:00. "
    "Token issued at {iat}. Token expires on {exp}."
)
MISSING_IAT = "External OIDC Provider token must have an 'iat' (issued at) claim."
NO_ISSUER_RECORD = (
    "No matching federated identity record found for presented assertion issuer '{issuer}'. "
    "Compare the issuer, subject and audience of the identity's federated credentials with "
    "the assertion. " + WIF_DOCS
)
NO_AUDIENCE_RECORD = (
    "No matching federated identity record found for presented assertion audience "
    "'{audience}'. Compare the issuer, subject and audience of the identity's federated "
    "credentials with the assertion. " + WIF_DOCS
)
NO_MATCHING_RECORD = (
    "No matching federated identity record found for presented assertion. "
    "Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. "
    "Assertion Audience: '{audience}'. " + WIF_DOCS
)
SUBJECT_CASE_ONLY = (
    "No matching federated identity record found for presented assertion subject '{subject}'. "
    "The subject matches with case-insensitive comparison, but not with case-sensitive "
    "comparison. Check your federated identity credential Subject, Audience and Issuer against "
    "the presented assertion. See documentation at: " + WIF_DOCS + "."
)
OIDC_ENDPOINT_FAILED = "Request to External OIDC endpoint failed."
KEY_NOT_FOUND = (
    "The key '{kid}' used to sign the assertion was not found in the signing keys published "
    "by issuer '{issuer}'."
)
ENTRA_ISSUED = "AAD-issued tokens may not be used for federated identity flows."
OUTSIDE_TIME_RANGE = (
    "Client assertion is not within its valid time range. Current time: {now}, assertion "
    "valid from {nbf}, expiry time of assertion {exp}."
)


# --- the response body -------------------------------------------------------------------


def entra_timestamp(at: datetime) -> str:
    """The `timestamp` field and the description's last line: 'YYYY-MM-DD HH:MM:SSZ'."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def error_body(error: EntraError, authority: str, trace_id: str | None = None,
               correlation_id: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """The JSON Entra answers with; `authority` is the host the client called."""
    trace = trace_id or str(uuid.uuid4())
    correlation = correlation_id or str(uuid.uuid4())
    stamp = entra_timestamp(at or datetime.now(timezone.utc))
    description = "\r\n".join([
        f"{error.aadsts}: {error.message}",
        f"Trace ID: {trace}",
        f"Correlation ID: {correlation}",
        f"Timestamp: {stamp}",
    ])
    return {
        "error": error.error,
        "error_description": description,
        "error_codes": [error.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"{authority.rstrip('/')}/error?code={error.code}",
    }
