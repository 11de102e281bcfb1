"""Key Vault's data-plane error table: one exception class per (status, code, innererror) and a
factory per case (`check` names the step that failed, `detail` says why, for the decision log).

The body is Key Vault's documented shape, {"error": {"code", "message", "innererror"?: {"code"}}}
(facts file, section 4). Message openings with an AKV number or a quoted pattern come from the
field; the rest of each message is ours. Cases marked UNDOC have no source: the status and code
follow the nearest documented case and the message is written to say what to fix.

401 choices (all code "Unauthorized", all sent with the WWW-Authenticate challenge):
- no Bearer token: "AKV10000: Request is missing a Bearer or PoP token." (documented);
- wrong audience: "AKV10022: Invalid audience. Expected https://vault.azure.net, found: X."
  (field: go-autorest#525, crossplane provider-azure#346);
- token of another tenant (iss or tid is not the vault's tenant): "AKV10032: Invalid issuer.
  Expected one of https://sts.windows.net/{tenant}/, found https://sts.windows.net/{other}/."
  (field: azure-sdk-for-js#6221, azure-sdk-for-net#18359). Real vaults list more tenants;
  ours lists only the vault's own;
- signing key unknown (another signer): "AKV10046: Unable to resolve the key used for signature
  validation. EncodedJwtHeader: '<header segment>'." (field: azuresandbox#188);
- known key but bad signature, malformed token, expired, not yet valid: UNDOC. "Token not yet
  valid" is what Managed HSM says (azure-sdk-for-java#26624); the others are ours.
"""

from __future__ import annotations

from typing import Any

VAULT_RESOURCE = "https://vault.azure.net"


class KeyVaultError(Exception):
    status = 500
    code = "InternalServerError"
    inner: str | None = None  # innererror.code, when Key Vault sends one

    def __init__(self, message: str, check: str, detail: str = "",
                 inner: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.check = check  # which step refused the request, for the decision log
        self.detail = detail  # the diagnosis: why, in terms a user can act on
        if inner is not None:
            self.inner = inner

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


class Unauthorized(KeyVaultError):
    """401; the server adds the WWW-Authenticate challenge to every one of these."""
    status, code = 401, "Unauthorized"


class Forbidden(KeyVaultError):
    status, code = 403, "Forbidden"


class SecretNotFound(KeyVaultError):
    status, code = 404, "SecretNotFound"


class BadParameter(KeyVaultError):
    status, code = 400, "BadParameter"


class Conflict(KeyVaultError):
    status, code = 409, "Conflict"


class RouteNotFound(KeyVaultError):
    """UNDOC: a path Key Vault's secrets API (as modelled here) does not have."""
    status, code = 404, "NotFound"


class MethodNotAllowed(KeyVaultError):
    """UNDOC: a known path with a method this stand-in does not serve."""
    status, code = 405, "MethodNotAllowed"

    def __init__(self, message: str, check: str, detail: str = "",
                 allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message, check, detail)
        self.allowed = allowed


# --- message texts -----------------------------------------------------------------------

MISSING_TOKEN = "AKV10000: Request is missing a Bearer or PoP token."
INVALID_AUDIENCE = "AKV10022: Invalid audience. Expected {expected}, found: {found}."
INVALID_ISSUER = "AKV10032: Invalid issuer. Expected one of {expected}, found {found}."
UNKNOWN_KEY = (
    "AKV10046: Unable to resolve the key used for signature validation. "
    "EncodedJwtHeader: '{header}'."
)
# UNDOC: no source gives Key Vault's text for these.
BAD_SIGNATURE = "The bearer token's signature could not be validated."
MALFORMED = "The bearer token could not be read as a JWT."
EXPIRED = "Token expired: its exp {exp} is before the current time {now}."
NOT_YET_VALID = "Token not yet valid: its nbf {nbf} is after the current time {now}."

ACCESS_DENIED = (
    "The user, group or application 'appid={appid};oid={oid};iss={iss}' does not have secrets "
    "{permission} permission on key vault '{vault};location={location}'. An access policy for "
    "this object id in tenant {tenant} must grant secrets {permission}."
)
# As real vaults word it (field: a 403 body quoted in full in a CTF write-up and in an
# Azure Container Apps troubleshooting guide), "\r\n"-separated, the trailing space included.
FORBIDDEN_BY_RBAC = (
    "Caller is not authorized to perform action on resource.\r\n"
    "If role assignments, deny assignments or role definitions were changed recently, please "
    "observe propagation time.\r\n"
    "Caller: appid={appid};oid={oid};iss={iss}\r\n"
    "Action: '{action}'\r\n"
    "Resource: '{resource}'\r\n"
    "Assignment: (not found)\r\n"
    "DenyAssignmentId: null\r\n"
    "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
    "Vault: {vault};location={location}\r\n"
)
SECRET_NOT_FOUND = (
    "A secret with (name/id) {name} was not found in this key vault. Check the name and "
    "version; a deleted secret is found under /deletedsecrets until it is purged."
)
DELETED_NOT_FOUND = "A deleted secret with (name/id) {name} was not found in this key vault."
SECRET_DISABLED = "Operation get is not allowed on a disabled secret."
INVALID_NAME = "The request URI contains an invalid name: {name}"
DELETED_BUT_RECOVERABLE = (
    "Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
    "reused; recover or purge it first."
)

# --- factories ---------------------------------------------------------------------------


def missing_token(authorization: str | None) -> Unauthorized:
    if authorization:
        scheme = authorization.split(" ", 1)[0]
        why = (f"the Authorization header uses scheme '{scheme}'; Key Vault takes "
               "'Bearer <access token>'")
    else:
        why = ("no Authorization header: the first request of a client is sent without one, "
               "to learn the tenant and resource from this challenge")
    return Unauthorized(MISSING_TOKEN, check="challenge", detail=why)


def invalid_audience(found: Any) -> Unauthorized:
    return Unauthorized(
        INVALID_AUDIENCE.format(expected=VAULT_RESOURCE, found=found), check="token",
        detail=f"audience: the token was issued for {found!r}; request it with scope "
        f"'{VAULT_RESOURCE}/.default' (no trailing slash in the resource)")


def invalid_issuer(vault_tenant: str, found_iss: Any, found_tid: Any) -> Unauthorized:
    expected = f"https://sts.windows.net/{vault_tenant}/"
    return Unauthorized(
        INVALID_ISSUER.format(expected=expected, found=found_iss), check="token",
        detail=f"tenant: the token is from tenant {found_tid!r} (iss {found_iss!r}); this "
        f"vault belongs to tenant {vault_tenant}. Get the token from that tenant (the challenge "
        "names it), or move the vault")


def unknown_key(encoded_header: str, kid: Any) -> Unauthorized:
    return Unauthorized(
        UNKNOWN_KEY.format(header=encoded_header), check="token",
        detail=f"signature: no signing key of this directory's token service has kid {kid!r}; "
        "the token was not issued by the Entra this vault trusts")


def bad_signature(why: str) -> Unauthorized:
    return Unauthorized(BAD_SIGNATURE, check="token", detail=f"signature: {why}")


def malformed(why: str) -> Unauthorized:
    return Unauthorized(MALFORMED, check="token", detail=f"malformed: {why}")


def expired(exp: Any, now: int, leeway: int) -> Unauthorized:
    return Unauthorized(
        EXPIRED.format(exp=exp, now=now), check="token",
        detail=f"lifetime: exp {exp} plus {leeway} s of clock skew is before now ({now}); "
        "get a fresh token")


def not_yet_valid(nbf: Any, now: int, leeway: int) -> Unauthorized:
    return Unauthorized(
        NOT_YET_VALID.format(nbf=nbf, now=now), check="token",
        detail=f"lifetime: nbf {nbf} is more than {leeway} s after now ({now}); check clocks")


def access_denied(claims: dict[str, Any], permission: str, vault: str, location: str,
                  tenant: str) -> Forbidden:
    message = ACCESS_DENIED.format(
        appid=claims.get("appid"), oid=claims.get("oid"), iss=claims.get("iss"),
        permission=permission, vault=vault, location=location, tenant=tenant)
    return Forbidden(
        message, check="access_policy", inner="AccessDenied",
        detail=f"no access policy of vault {vault} for (tenant {claims.get('tid')}, object id "
        f"{claims.get('oid')}) grants secrets '{permission}'. Policies name the principal "
        "(object) id, not the client id")


def forbidden_by_rbac(claims: dict[str, Any], action: str, vault: str, location: str,
                      resource: str, why: str) -> Forbidden:
    message = FORBIDDEN_BY_RBAC.format(
        appid=claims.get("appid"), oid=claims.get("oid"), iss=claims.get("iss"),
        action=action, resource=resource, vault=vault, location=location)
    return Forbidden(message, check="role_assignment", inner="ForbiddenByRbac",
                     detail=f"vault {vault} uses Azure RBAC (enableRbacAuthorization): {why}")


def secret_not_found(name: str, version: str | None = None) -> SecretNotFound:
    shown = f"{name}/{version}" if version else name
    return SecretNotFound(
        SECRET_NOT_FOUND.format(name=shown), check="not_found",
        detail=f"vault has no secret {shown!r}" + (" (that version)" if version else ""))


def deleted_not_found(name: str) -> SecretNotFound:
    return SecretNotFound(DELETED_NOT_FOUND.format(name=name), check="not_found",
                          detail=f"no deleted secret {name!r} awaits recovery or purge")


def secret_disabled(name: str, version: str) -> Forbidden:
    return Forbidden(SECRET_DISABLED, check="disabled", inner="SecretDisabled",
                     detail=f"version {version} of {name!r} has attributes.enabled = false")


def invalid_name(name: str) -> BadParameter:
    return BadParameter(
        INVALID_NAME.format(name=name), check="name",
        detail="a secret name is 1-127 characters of 0-9, a-z, A-Z and '-'")


def bad_request(message: str, detail: str = "") -> BadParameter:
    """UNDOC: a query or body Key Vault would refuse; the message says what is wrong."""
    return BadParameter(message, check="request", detail=detail or message)


# api-version. Key Vault has no default version: "Clients must use the api-version query string
# parameter ... as there is no default" (AZDOCS articles/key-vault/general/
# authentication-requests-and-responses.md, "API Version"). A version it does not know is 400
# BadParameter "The specified version (X) is not recognized. Consider using the latest
# supported version (Y)." (field: Azure/azure-sdk-for-net#14789, azure-sdk-for-python#28595).
LATEST_API_VERSION = "2026-04-01"  # what azure-keyvault-secrets 4.12.0 sends (facts file, 4)
UNRECOGNIZED_VERSION = (
    "The specified version ({version}) is not recognized. Consider using the latest supported "
    "version ({latest})."
)
# CHOICE: no source gives the text for a missing api-version; ours names the parameter and
# points at the same latest version.
MISSING_VERSION = (
    "The api-version query parameter is required: Key Vault has no default version. Consider "
    "using the latest supported version ({latest})."
)


def missing_api_version() -> BadParameter:
    return BadParameter(
        MISSING_VERSION.format(latest=LATEST_API_VERSION), check="api_version",
        detail=f"the query string has no api-version; add ?api-version={LATEST_API_VERSION} "
        "(any well-formed version is accepted here)")


def unrecognized_api_version(version: str) -> BadParameter:
    return BadParameter(
        UNRECOGNIZED_VERSION.format(version=version, latest=LATEST_API_VERSION),
        check="api_version",
        detail=f"api-version {version!r} is not a version's shape: Key Vault's are N.N (7.4), "
        "a date YYYY-MM-DD (2016-10-01, 2025-07-01), either optionally followed by -preview or "
        "-preview.N")


def deleted_but_recoverable(name: str) -> Conflict:
    return Conflict(
        DELETED_BUT_RECOVERABLE.format(name=name), check="deleted",
        inner="ObjectIsDeletedButRecoverable",
        detail=f"{name!r} was deleted (soft delete); recover or purge it before setting it")


def route_not_found(method: str, path: str) -> RouteNotFound:
    return RouteNotFound(
        f"The path {path} is not part of the Key Vault secrets API served here.",
        check="route", detail=f"{method} {path}: served are /secrets, /secrets/{{name}}, "
        "/secrets/{name}/versions, /secrets/{name}/{version}, /deletedsecrets, "
        "/deletedsecrets/{name} and /deletedsecrets/{name}/recover")


def method_not_allowed(method: str, path: str, allowed: tuple[str, ...]) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"The method {method} is not allowed on {path}.", check="route",
        detail=f"{path} takes {', '.join(allowed)}", allowed=allowed)
