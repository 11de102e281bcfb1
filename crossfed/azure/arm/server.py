"""Azure Resource Manager stand-in over HTTPS: the paths azure-mgmt-msi 7.1.0 and
azure-mgmt-keyvault 14.1.0 call, with ARM's bearer-token checks in front.

Served (ARM matches paths case-insensitively; G = /subscriptions/{sub}/resourceGroups/{rg}):
  GET              G/providers/Microsoft.ManagedIdentity/userAssignedIdentities
  GET PUT DELETE   G/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}
  GET              .../userAssignedIdentities/{name}/federatedIdentityCredentials
  GET PUT DELETE   .../userAssignedIdentities/{name}/federatedIdentityCredentials/{fic}
  GET              G/providers/Microsoft.KeyVault/vaults
  GET PUT DELETE   G/providers/Microsoft.KeyVault/vaults/{name}
  PUT              G/providers/Microsoft.KeyVault/vaults/{name}/accessPolicies/{add|replace|remove}
Every request needs ?api-version= (the SDKs send 2024-11-30 and 2026-05-15).

Authentication (codes as real ARM returns them, all 401 with a WWW-Authenticate challenge):
  no Authorization header             AuthenticationFailed
  not "Bearer <token>"                AuthenticationFailedInvalidHeader
  bad signature, not a JWT            InvalidAuthenticationToken
  audience not management             InvalidAuthenticationTokenAudience
  expired                             ExpiredAuthenticationToken
  tid is not the subscription's       InvalidAuthenticationTokenTenant
A valid token whose oid is no principal of the tenant gets 403 AuthorizationFailed; every other
principal is treated as Owner (no RBAC locally).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from crossfed.azure.arm.resources import (
    ACCESS_POLICY_TYPE,
    CREDENTIAL_TYPE,
    IDENTITY_TYPE,
    VAULT_TYPE,
    ArmError,
    ResourceManager,
    VaultHost,
    bad_request,
    check_api_version,
)
from crossfed.azure.directory import Directory
from crossfed.azure.entra.access_tokens import AccessTokenError, AccessTokenSigner
from crossfed.decisions import Decision, DecisionLog, token_summary
from crossfed.https_server import LOOPBACK, HTTPSServer
from crossfed.pki import RunCA

log = logging.getLogger("crossfed.azure.arm")

MANAGEMENT_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
LOGIN = "https://login.microsoftonline.com"
TOKEN_ERRORS = {  # AccessTokenError.reason -> ARM error code
    "audience": "InvalidAuthenticationTokenAudience",
    "expired": "ExpiredAuthenticationToken",
}

GROUP = ("subscriptions", "{subscription}", "resourcegroups", "{group}", "providers")
IDENTITIES = (*GROUP, "microsoft.managedidentity", "userassignedidentities")
IDENTITY = (*IDENTITIES, "{name}")
CREDENTIALS = (*IDENTITY, "federatedidentitycredentials")
CREDENTIAL = (*CREDENTIALS, "{credential}")
VAULTS = (*GROUP, "microsoft.keyvault", "vaults")
VAULT = (*VAULTS, "{name}")
ACCESS_POLICY = (*VAULT, "accesspolicies", "{kind}")

API_VERSION = "api-version"  # in Params: the request's, for shapes that vary with it
Params = dict[str, str]
Handler = Callable[[Params, Any], tuple[int, Any]]
Route = tuple[tuple[str, ...], str, dict[str, Handler]]


def match(pattern: tuple[str, ...], segments: list[str]) -> Params | None:
    """Literal segments compare case-insensitively; "{x}" captures one segment."""
    if len(pattern) != len(segments):
        return None
    params: Params = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if expected.startswith("{"):
            params[expected[1:-1]] = actual
        elif expected != actual.lower():
            return None
    return params


def put_status(result: tuple[Any, bool]) -> tuple[int, Any]:
    body, created = result
    return (201 if created else 200), body


def delete_status(existed: bool) -> tuple[int, Any]:
    return (200 if existed else 204), None  # ARM: 204 when there was nothing to delete


def routes(r: ResourceManager) -> list[Route]:
    return [
        (IDENTITIES, IDENTITY_TYPE, {
            "GET": lambda p, _: (200, r.list_identities(p["group"], p[API_VERSION])),
        }),
        (IDENTITY, IDENTITY_TYPE, {
            "GET": lambda p, _: (200, r.get_identity(p["group"], p["name"], p[API_VERSION])),
            "PUT": lambda p, b: put_status(r.put_identity(p["group"], p["name"], b,
                                                          p[API_VERSION])),
            "DELETE": lambda p, _: delete_status(r.delete_identity(p["group"], p["name"])),
        }),
        (CREDENTIALS, CREDENTIAL_TYPE, {
            "GET": lambda p, _: (200, r.list_credentials(p["group"], p["name"])),
        }),
        (CREDENTIAL, CREDENTIAL_TYPE, {
            "GET": lambda p, _: (200, r.get_credential(p["group"], p["name"], p["credential"])),
            "PUT": lambda p, b: put_status(
                r.put_credential(p["group"], p["name"], p["credential"], b)),
            "DELETE": lambda p, _: delete_status(
                r.delete_credential(p["group"], p["name"], p["credential"])),
        }),
        (VAULTS, VAULT_TYPE, {"GET": lambda p, _: (200, r.list_vaults(p["group"]))}),
        (VAULT, VAULT_TYPE, {
            "GET": lambda p, _: (200, r.get_vault(p["group"], p["name"])),
            "PUT": lambda p, b: put_status(r.put_vault(p["group"], p["name"], b)),
            "DELETE": lambda p, _: delete_status(r.delete_vault(p["group"], p["name"])),
        }),
        (ACCESS_POLICY, ACCESS_POLICY_TYPE, {
            "PUT": lambda p, b: (200, r.update_access_policy(p["group"], p["name"], p["kind"],
                                                             b)),
        }),
    ]


class Authenticator:
    """ARM's front door: a management-audience token of the subscription's tenant."""

    def __init__(self, signer: AccessTokenSigner, directory: Directory, tenant_id: str) -> None:
        self.signer, self.directory, self.tenant_id = signer, directory, tenant_id

    def unauthorized(self, code: str, message: str, description: str) -> ArmError:
        challenge = (f'Bearer authorization_uri="{LOGIN}/{self.tenant_id}", '
                     f'error="invalid_token", error_description="{description}"')
        return ArmError(401, code, message, {"WWW-Authenticate": challenge})

    @staticmethod
    def bearer(header: str | None) -> str | None:
        scheme, _, token = (header or "").strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def check(self, header: str | None, path: str) -> dict[str, Any]:
        """Returns the token's claims or raises the ArmError real ARM would answer with."""
        if not header:
            raise self.unauthorized(
                "AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                "missing.", "The authentication failed because of missing 'Authorization' "
                "header.")
        token = self.bearer(header)
        if token is None:
            raise self.unauthorized(
                "AuthenticationFailedInvalidHeader", "Authentication failed. The "
                "'Authorization' header is provided in an invalid format.",
                "The authentication failed because of an invalid 'Authorization' header.")
        claims = self._verify(token)
        if claims.get("tid") != self.tenant_id:
            raise self.unauthorized(
                "InvalidAuthenticationTokenTenant", f"The access token is from the wrong issuer "
                f"'{claims.get('iss')}'. It must match the tenant "
                f"'https://sts.windows.net/{self.tenant_id}/' associated with this subscription.",
                "The access token is from the wrong issuer.")
        self._check_principal(claims, path)
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            return self.signer.verify(token, MANAGEMENT_AUDIENCES)
        except AccessTokenError as error:
            code = TOKEN_ERRORS.get(error.reason, "InvalidAuthenticationToken")
            if error.reason == "audience":
                message = (f"{error.message}. It should exactly match one of the allowed "
                           f"audiences {list(MANAGEMENT_AUDIENCES)}.")
            else:
                message = f"The access token is invalid: {error.message}."
            raise self.unauthorized(code, message, error.message) from error

    def _check_principal(self, claims: dict[str, Any], path: str) -> None:
        """No RBAC: any principal of the tenant is Owner; unknown ones are denied."""
        principal = self.directory.by_object_id(str(claims.get("oid", "")))
        if principal is None or principal.tenant_id != self.tenant_id:
            raise ArmError(403, "AuthorizationFailed", f"The client '{claims.get('appid')}' "
                           f"with object id '{claims.get('oid')}' does not have authorization "
                           f"to perform this action over scope '{path}' or the scope is invalid.")


class ArmApp:
    """WSGI: authenticate, check the subscription, route, check the api-version, handle."""

    def __init__(self, resources: ResourceManager, authenticator: Authenticator,
                 decisions: DecisionLog) -> None:
        self.resources, self.authenticator, self.decisions = resources, authenticator, decisions
        self.routes = routes(resources)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            self._authenticate(request, request_id)
            status, body = self._dispatch(request)
        except ArmError as error:
            return self._respond(error.status, {"error": {"code": error.code,
                                                          "message": error.message}},
                                 request_id, error.headers)
        except Exception:  # a stand-in bug: say so in ARM's shape rather than drop the socket
            log.exception("ARM stand-in failed on %s %s", request.method, request.path)
            return self._respond(500, {"error": {"code": "InternalServerError", "message":
                                                 "The ARM stand-in failed; see its log."}},
                                 request_id)
        return self._respond(status, body, request_id)

    def _authenticate(self, request: Request, request_id: str) -> None:
        header = request.headers.get("Authorization")
        try:
            self.authenticator.check(header, request.path)
        except ArmError as error:  # keep why, for tests and the run report
            token = self.authenticator.bearer(header)
            self.decisions.record(Decision(
                request_id, f"{request.method} {request.path}", request.path,
                token_summary(token) if token else {}, False, error.code, error.message,
                check="authentication" if error.status == 401 else "authorization"))
            raise

    def _dispatch(self, request: Request) -> tuple[int, Any]:
        segments = [s for s in request.path.split("/") if s]
        if len(segments) >= 2 and segments[0].lower() == "subscriptions":
            self.resources.check_subscription(segments[1])
        for pattern, resource_type, handlers in self.routes:
            params = match(pattern, segments)
            if params is None:
                continue
            handler = handlers.get(request.method)
            if handler is None:
                raise ArmError(405, "MethodNotAllowed", f"The requested resource does not "
                               f"support http method '{request.method}'.")
            check_api_version(resource_type, request.args.get("api-version"))
            params[API_VERSION] = request.args["api-version"]
            return handler(params, self._body(request))
        raise ArmError(404, "InvalidResourceType", f"The ARM stand-in serves no resource type "
                       f"at '{request.path}'.")

    @staticmethod
    def _body(request: Request) -> Any:
        if request.method not in ("PUT", "PATCH", "POST"):
            return None
        raw = request.get_data()
        try:
            return json.loads(raw) if raw else None
        except ValueError as error:
            raise bad_request(f"The request content was invalid and could not be "
                              f"deserialized: {error}.", "InvalidRequestContent") from error

    @staticmethod
    def _respond(status: int, body: Any, request_id: str,
                 headers: dict[str, str] | None = None) -> Response:
        response = Response(b"" if body is None else json.dumps(body), status,
                            content_type="application/json; charset=utf-8")
        response.headers["x-ms-request-id"] = request_id
        response.headers["x-ms-correlation-request-id"] = request_id
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response


class ArmStandIn:
    """management.azure.com for one tenant and one subscription, on https://HOST:PORT."""

    def __init__(self, ca: RunCA, directory: Directory, signer: AccessTokenSigner,
                 tenant_id: str, subscription_id: str, vault_host: VaultHost,
                 host: str = LOOPBACK, port: int = 0) -> None:
        self.tenant_id, self.subscription_id = tenant_id, subscription_id
        self.decisions = DecisionLog()
        self.resources = ResourceManager(directory, tenant_id, subscription_id, vault_host)
        authenticator = Authenticator(signer, directory, tenant_id)
        self.app = ArmApp(self.resources, authenticator, self.decisions)
        # a unique label: several stand-ins may share one CA directory
        context = ca.server_context(f"arm-{uuid.uuid4().hex[:8]}", host)
        self._server = HTTPSServer(context, host, port)

    @property
    def endpoint(self) -> str:
        return self._server.url

    def start(self) -> ArmStandIn:
        self._server.start(self.app)
        return self

    def stop(self) -> None:
        self._server.stop()
