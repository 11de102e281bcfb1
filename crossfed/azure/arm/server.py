"""Azure Resource Manager stand-in over HTTPS: the paths azure-mgmt-msi 7.1.0 and
azure-mgmt-keyvault 14.1.0 call, resource groups, and the cloud's metadata document, with ARM's
bearer-token checks and a minimal RBAC in front.

Served (ARM matches paths case-insensitively; S = /subscriptions/{sub}, G = S/resourceGroups/{rg}):
  GET              /metadata/endpoints?api-version=2022-09-01 (no token needed)
  GET              S/resourcegroups[?$filter=tagName eq 'x' and tagValue eq 'y']
  GET PUT HEAD     S/resourcegroups/{rg}
  DELETE           S/resourcegroups/{rg}: 202 + Location S/operationresults/{id} (GET: 200)
  GET              G/providers/Microsoft.ManagedIdentity/userAssignedIdentities
  GET PUT DELETE   G/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}
  GET              .../userAssignedIdentities/{name}/federatedIdentityCredentials
  GET PUT DELETE   .../userAssignedIdentities/{name}/federatedIdentityCredentials/{fic}
  GET              G/providers/Microsoft.KeyVault/vaults
  GET PUT DELETE   G/providers/Microsoft.KeyVault/vaults/{name}
  PUT              G/providers/Microsoft.KeyVault/vaults/{name}/accessPolicies/{add|replace|remove}
  GET              S/providers/Microsoft.KeyVault/deletedVaults
  GET              S/providers/Microsoft.KeyVault/locations/{loc}/deletedVaults/{name}
  POST             .../deletedVaults/{name}/purge: 202 + Location
                   S/providers/Microsoft.KeyVault/locations/{loc}/operationResults/{id}
  GET              G/providers/Microsoft.ContainerService/managedClusters/{name} (records)
  GET PUT DELETE   {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}
  GET              {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=]
  GET              {scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}]
Every request needs ?api-version= (the SDKs send 2024-11-30, 2026-05-15, 2022-04-01).

Authentication (codes as real ARM returns them, all 401 with a WWW-Authenticate challenge):
  no Authorization header             AuthenticationFailed
  not "Bearer <token>"                AuthenticationFailedInvalidHeader
  bad signature, not a JWT            InvalidAuthenticationToken
  audience not management             InvalidAuthenticationTokenAudience
  expired                             ExpiredAuthenticationToken
  tid is not the subscription's       InvalidAuthenticationTokenTenant
A valid token whose oid is no principal of the tenant gets 403 AuthorizationFailed. Then RBAC:
the request's action (e.g. Microsoft.ManagedIdentity/userAssignedIdentities/
federatedIdentityCredentials/write) must be allowed by a role assignment of the caller whose
scope contains the request's path, else 403 AuthorizationFailed naming the action and scope in
ARM's message. At start the tenant's applications present in the directory (the
administrator) get Owner on the subscription; managed identities created later get nothing,
so a federated workload's token cannot add a credential to its own identity. Those are role
assignments like the ones the Microsoft.Authorization API creates (crossfed/azure/arm/rbac.py):
listed by it, and an assignment it creates grants its role's actions once propagated.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from crossfed.azure.arm.common import (
    ACCESS_POLICY_TYPE,
    CLUSTER_TYPE,
    CREDENTIAL_TYPE,
    DELETED_VAULT_TYPE,
    GROUP_TYPE,
    IDENTITY_TYPE,
    OPERATION_TYPE,
    ROLE_ASSIGNMENT_TYPE,
    ROLE_DEFINITION_TYPE,
    VAULT_TYPE,
    ArmError,
    bad_request,
    check_api_version,
)
from crossfed.azure.arm.resources import ResourceManager, VaultHost
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

SUBSCRIPTION = ("subscriptions", "{subscription}")
GROUPS = (*SUBSCRIPTION, "resourcegroups")
RESOURCE_GROUP = (*GROUPS, "{group}")
GROUP_OPERATION = (*SUBSCRIPTION, "operationresults", "{operation}")
KEYVAULT = (*SUBSCRIPTION, "providers", "microsoft.keyvault")
DELETED_VAULTS = (*KEYVAULT, "deletedvaults")
DELETED_VAULT = (*KEYVAULT, "locations", "{location}", "deletedvaults", "{name}")
PURGE = (*DELETED_VAULT, "purge")
KEYVAULT_OPERATION = (*KEYVAULT, "locations", "{location}", "operationresults", "{operation}")
GROUP = (*RESOURCE_GROUP, "providers")
IDENTITIES = (*GROUP, "microsoft.managedidentity", "userassignedidentities")
IDENTITY = (*IDENTITIES, "{name}")
CREDENTIALS = (*IDENTITY, "federatedidentitycredentials")
CREDENTIAL = (*CREDENTIALS, "{credential}")
VAULTS = (*GROUP, "microsoft.keyvault", "vaults")
VAULT = (*VAULTS, "{name}")
ACCESS_POLICY = (*VAULT, "accesspolicies", "{kind}")
CLUSTER = (*GROUP, "microsoft.containerservice", "managedclusters", "{name}")
AUTHORIZATION = ("providers", "microsoft.authorization")  # after any scope

API_VERSION = "api-version"  # in Params: the request's, for shapes that vary with it
FILTER = "$filter"  # in Params when the request has one
METADATA_PATH = "/metadata/endpoints"
# Actions (Azure RBAC resource provider operations) of what is served.
MI = "Microsoft.ManagedIdentity/userAssignedIdentities"
FIC = MI + "/federatedIdentityCredentials"
KV = "Microsoft.KeyVault/vaults"
RG = "Microsoft.Resources/subscriptions/resourceGroups"
Params = dict[str, str]
Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]  # status, body[, headers]
Handler = Callable[[Params, Any], Reply]
Route = tuple[tuple[str, ...], str, dict[str, tuple[str, Handler]]]  # method -> action, handler


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


def accepted(location: str) -> Reply:
    """202 of a long-running operation that is already done: its Location answers 200."""
    return 202, None, {"Location": location, "Retry-After": "0"}


def operation_status(done: bool) -> Reply:
    if not done:  # code assumed
        raise ArmError(404, "OperationNotFound", "The operation could not be found.")
    return 200, None


def routes(r: ResourceManager) -> list[Route]:
    def group_operation(p: Params) -> str:
        return (f"/subscriptions/{r.subscription_id}/operationresults/"
                f"{r.delete_group(p['group'])}?api-version={p[API_VERSION]}")

    def purge_operation(p: Params) -> str:
        operation = r.purge_deleted_vault(p["location"], p["name"])
        return (f"/subscriptions/{r.subscription_id}/providers/Microsoft.KeyVault/locations/"
                f"{p['location']}/operationResults/{operation}?api-version={p[API_VERSION]}")

    return [
        (GROUPS, GROUP_TYPE, {
            "GET": (RG + "/read", lambda p, _: (200, r.list_groups(p.get(FILTER)))),
        }),
        (RESOURCE_GROUP, GROUP_TYPE, {
            "GET": (RG + "/read", lambda p, _: (200, r.get_group(p["group"]))),
            "HEAD": (RG + "/read", lambda p, _: (204 if r.group_exists(p["group"]) else 404,
                                                 None)),
            "PUT": (RG + "/write", lambda p, b: put_status(r.put_group(p["group"], b))),
            "DELETE": (RG + "/delete", lambda p, _: accepted(group_operation(p))),
        }),
        (GROUP_OPERATION, OPERATION_TYPE, {
            "GET": ("Microsoft.Resources/subscriptions/operationresults/read",
                    lambda p, _: operation_status(r.operation_done(p["operation"]))),
        }),
        (IDENTITIES, IDENTITY_TYPE, {
            "GET": (MI + "/read",
                    lambda p, _: (200, r.list_identities(p["group"], p[API_VERSION]))),
        }),
        (IDENTITY, IDENTITY_TYPE, {
            "GET": (MI + "/read",
                    lambda p, _: (200, r.get_identity(p["group"], p["name"], p[API_VERSION]))),
            "PUT": (MI + "/write", lambda p, b: put_status(
                r.put_identity(p["group"], p["name"], b, p[API_VERSION]))),
            "DELETE": (MI + "/delete",
                       lambda p, _: delete_status(r.delete_identity(p["group"], p["name"]))),
        }),
        (CREDENTIALS, CREDENTIAL_TYPE, {
            "GET": (FIC + "/read",
                    lambda p, _: (200, r.list_credentials(p["group"], p["name"]))),
        }),
        (CREDENTIAL, CREDENTIAL_TYPE, {
            "GET": (FIC + "/read", lambda p, _: (
                200, r.get_credential(p["group"], p["name"], p["credential"]))),
            "PUT": (FIC + "/write", lambda p, b: put_status(
                r.put_credential(p["group"], p["name"], p["credential"], b))),
            "DELETE": (FIC + "/delete", lambda p, _: delete_status(
                r.delete_credential(p["group"], p["name"], p["credential"]))),
        }),
        (VAULTS, VAULT_TYPE, {
            "GET": (KV + "/read", lambda p, _: (200, r.list_vaults(p["group"]))),
        }),
        (VAULT, VAULT_TYPE, {
            "GET": (KV + "/read", lambda p, _: (200, r.get_vault(p["group"], p["name"]))),
            "PUT": (KV + "/write", lambda p, b: put_status(r.put_vault(p["group"], p["name"], b))),
            "DELETE": (KV + "/delete",
                       lambda p, _: delete_status(r.delete_vault(p["group"], p["name"]))),
        }),
        (ACCESS_POLICY, ACCESS_POLICY_TYPE, {
            "PUT": (KV + "/accessPolicies/write", lambda p, b: (
                200, r.update_access_policy(p["group"], p["name"], p["kind"], b))),
        }),
        (DELETED_VAULTS, DELETED_VAULT_TYPE, {
            "GET": ("Microsoft.KeyVault/deletedVaults/read",
                    lambda p, _: (200, r.list_deleted_vaults())),
        }),
        (DELETED_VAULT, DELETED_VAULT_TYPE, {
            "GET": ("Microsoft.KeyVault/locations/deletedVaults/read",
                    lambda p, _: (200, r.get_deleted_vault(p["location"], p["name"]))),
        }),
        (PURGE, DELETED_VAULT_TYPE, {
            "POST": ("Microsoft.KeyVault/locations/deletedVaults/purge/action",
                     lambda p, _: accepted(purge_operation(p))),
        }),
        (KEYVAULT_OPERATION, DELETED_VAULT_TYPE, {
            "GET": ("Microsoft.KeyVault/locations/operationResults/read",
                    lambda p, _: operation_status(r.operation_done(p["operation"]))),
        }),
        (CLUSTER, CLUSTER_TYPE, {
            "GET": (CLUSTER_TYPE + "/read",
                    lambda p, _: (200, r.get_managed_cluster(p["group"], p["name"]))),
        }),
    ]


def authorization_route(segments: list[str]) -> tuple[str, str, str | None] | None:
    """{scope}/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{name}]:
    (scope, collection in lower case, name), the scope "" (tenant root) or "/subscriptions/..".
    """
    lowered = [s.lower() for s in segments]
    for i in range(len(segments) - 2, -1, -1):
        if tuple(lowered[i:i + 2]) != AUTHORIZATION:
            continue
        rest = segments[i + 2:]
        if not 1 <= len(rest) <= 2 or rest[0].lower() not in ("roleassignments",
                                                               "roledefinitions"):
            return None
        scope = "/" + "/".join(segments[:i]) if i else ""
        return scope, rest[0].lower(), rest[1] if len(rest) == 2 else None
    return None


def cloud_metadata(arm_endpoint: str, authority_host: str) -> dict[str, Any]:
    """GET /metadata/endpoints?api-version=2022-09-01, shaped like the public cloud's (field
    names: hashicorp/go-azure-sdk sdk/environments metadata client for 2022-09-01; Az
    PowerShell Add-AzEnvironment docs; Azure/azure-cli cloud.py _arm_to_cli_mapper).

    What the stand-ins serve names them: resourceManager (this ARM), loginEndpoint (the Entra
    stand-in), audiences (what ARM accepts). keyVaultDns stays "vault.azure.net": loopback
    vaults have no DNS name (each is https://127.0.0.1:PORT/, read properties.vaultUri), and
    the suffix is also what clients derive the Key Vault resource from, https://vault.azure.net,
    the audience the Key Vault stand-in accepts and names in its challenge. Everything else is
    the public cloud's value: no stand-in serves it, nothing here reaches it."""
    return {
        "portal": "https://portal.azure.com",
        "authentication": {
            "loginEndpoint": authority_host.rstrip("/") + "/",
            "audiences": [a + "/" for a in reversed(MANAGEMENT_AUDIENCES)],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "media": "https://rest.media.azure.net",
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "name": "crossfed",
        "suffixes": {
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "mhsmDns": "managedhsm.azure.net",
            "mysqlServerEndpoint": "mysql.database.azure.com",
            "postgresqlServerEndpoint": "postgres.database.azure.com",
            "mariadbServerEndpoint": "mariadb.database.azure.com",
            "synapseAnalytics": "dev.azuresynapse.net",
            "attestationEndpoint": "attest.azure.net",
        },
        "batch": "https://batch.core.windows.net/",
        "resourceManager": arm_endpoint.rstrip("/") + "/",
        "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/"
                           "arm-compute/quickstart-templates/aliases.json",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
    }


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
        """Unknown principals are denied before anything is routed."""
        principal = self.directory.by_object_id(str(claims.get("oid", "")))
        if principal is None or principal.tenant_id != self.tenant_id:
            raise ArmError(403, "AuthorizationFailed", f"The client '{claims.get('appid')}' "
                           f"with object id '{claims.get('oid')}' does not have authorization "
                           f"to perform this action over scope '{path}' or the scope is invalid.")


def authorization_failed(claims: dict[str, Any], action: str, scope: str) -> ArmError:
    """ARM's message shape (seen in the field, e.g. Azure/ARO-RP#66)."""
    return ArmError(403, "AuthorizationFailed", f"The client '{claims.get('appid')}' with object "
                    f"id '{claims.get('oid')}' does not have authorization to perform action "
                    f"'{action}' over scope '{scope}' or the scope is invalid. If access was "
                    f"recently granted, please refresh your credentials.")


class ArmApp:
    """WSGI: serve the metadata document, authenticate, check the subscription, route, check
    the api-version, authorize the action, handle."""

    def __init__(self, resources: ResourceManager, authenticator: Authenticator,
                 decisions: DecisionLog,
                 metadata: Callable[[], dict[str, Any]] | None = None) -> None:
        self.resources, self.authenticator, self.decisions = resources, authenticator, decisions
        self.metadata = metadata
        self.routes = routes(resources)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        headers: dict[str, str] = {}
        try:
            if request.path.rstrip("/").lower() == METADATA_PATH and self.metadata is not None:
                return self._respond(*self._metadata(request), request_id)
            claims = self._authenticate(request, request_id)
            status, body, *more = self._dispatch(request, claims, request_id)
            headers = more[0] if more else {}
        except ArmError as error:
            body = None if request.method == "HEAD" else {
                "error": {"code": error.code, "message": error.message}}
            return self._respond(error.status, body, request_id, error.headers)
        except Exception:  # a stand-in bug: say so in ARM's shape rather than drop the socket
            log.exception("ARM stand-in failed on %s %s", request.method, request.path)
            return self._respond(500, {"error": {"code": "InternalServerError", "message":
                                                 "The ARM stand-in failed; see its log."}},
                                 request_id)
        return self._respond(status, body, request_id, headers)

    def _metadata(self, request: Request) -> tuple[int, Any]:
        """Anyone may read it, as on management.azure.com; api-version required (assumed)."""
        assert self.metadata is not None
        if request.method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"The requested resource does not support "
                           f"http method '{request.method}'.")
        if not request.args.get("api-version"):
            raise bad_request("The api-version query parameter (?api-version=) is required for "
                              "all requests.", "MissingApiVersionParameter")
        return 200, self.metadata()

    def _authenticate(self, request: Request, request_id: str) -> dict[str, Any]:
        header = request.headers.get("Authorization")
        try:
            return self.authenticator.check(header, request.path)
        except ArmError as error:  # keep why, for tests and the run report
            token = self.authenticator.bearer(header)
            self.decisions.record(Decision(
                request_id, f"{request.method} {request.path}", request.path,
                token_summary(token) if token else {}, False, error.code, error.message,
                check="authentication" if error.status == 401 else "authorization"))
            raise

    def _authorize(self, request: Request, claims: dict[str, Any], action: str,
                   request_id: str) -> None:
        scope = request.path.rstrip("/")
        if self.resources.authorized(str(claims.get("oid", "")), action, scope):
            return
        error = authorization_failed(claims, action, scope)
        token = self.authenticator.bearer(request.headers.get("Authorization"))
        self.decisions.record(Decision(
            request_id, f"{request.method} {request.path}", request.path,
            token_summary(token) if token else {}, False, error.code, error.message,
            check="authorization"))
        raise error

    def _dispatch(self, request: Request, claims: dict[str, Any], request_id: str) -> Reply:
        segments = [s for s in request.path.split("/") if s]
        if len(segments) >= 2 and segments[0].lower() == "subscriptions":
            self.resources.check_subscription(segments[1])
        authorization = authorization_route(segments)
        if authorization is not None:
            return self._authorization(request, claims, request_id, *authorization)
        for pattern, resource_type, handlers in self.routes:
            params = match(pattern, segments)
            if params is None:
                continue
            entry = handlers.get(request.method)
            if entry is None:
                raise ArmError(405, "MethodNotAllowed", f"The requested resource does not "
                               f"support http method '{request.method}'.")
            action, handler = entry
            check_api_version(resource_type, request.args.get("api-version"))
            self._authorize(request, claims, action, request_id)
            params[API_VERSION] = request.args["api-version"]
            if FILTER in request.args:
                params[FILTER] = request.args[FILTER]
            return handler(params, self._body(request))
        raise ArmError(404, "InvalidResourceType", f"The ARM stand-in serves no resource type "
                       f"at '{request.path}'.")

    def _authorization(self, request: Request, claims: dict[str, Any], request_id: str,
                       scope: str, collection: str, name: str | None) -> Reply:
        """Microsoft.Authorization (crossfed/azure/arm/rbac.py). CHOICES: role definitions are
        readable by any principal of the tenant (built-ins are public knowledge); role
        assignments need a subscription scope (the tenant root answers 400
        InvalidRoleAssignmentScope)."""
        rbac = self.resources.rbac
        methods = {"GET"} if collection == "roledefinitions" or name is None else {
            "GET", "PUT", "DELETE"}
        if request.method not in methods:
            raise ArmError(405, "MethodNotAllowed", f"The requested resource does not support "
                           f"http method '{request.method}'.")
        filter_ = request.args.get(FILTER)
        if collection == "roledefinitions":
            check_api_version(ROLE_DEFINITION_TYPE, request.args.get("api-version"))
            if name is None:
                return 200, rbac.list_definitions(scope, filter_)
            return 200, rbac.get_definition(scope, name)
        check_api_version(ROLE_ASSIGNMENT_TYPE, request.args.get("api-version"))
        if not scope:
            raise bad_request("Role assignments are served at a subscription, resource group "
                              "or resource scope.", "InvalidRoleAssignmentScope")
        action = {"GET": "read", "PUT": "write", "DELETE": "delete"}[request.method]
        self._authorize(request, claims, f"{ROLE_ASSIGNMENT_TYPE}/{action}", request_id)
        if name is None:
            return 200, rbac.list(scope, filter_)
        if request.method == "GET":
            return 200, rbac.get(scope, name)
        if request.method == "DELETE":
            removed = rbac.delete(scope, name)
            return (200, removed) if removed is not None else (204, None)
        return put_status(rbac.put(scope, name, self._body(request),
                                   str(claims.get("oid", "")),
                                   self.resources.directory.propagation.effective_at))

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
                 host: str = LOOPBACK, port: int = 0, *, authority_host: str | None = None,
                 owners: Sequence[str] | None = None, implicit_groups: bool = True) -> None:
        """authority_host: the Entra stand-in, for the metadata document (default: the vault
        host's, else the public one). owners: object ids that get Owner on the subscription
        (default: the tenant's applications in the directory now, i.e. the administrator)."""
        self.tenant_id, self.subscription_id = tenant_id, subscription_id
        self.decisions = DecisionLog()
        self.resources = ResourceManager(directory, tenant_id, subscription_id, vault_host,
                                         implicit_groups)
        if owners is None:
            owners = [p.object_id for p in directory.principals(tenant_id)
                      if p.kind == "application"]
        for owner in owners:
            self.resources.assign_role(owner, "Owner")
        self.authority_host = (authority_host or getattr(vault_host, "authority_host", None)
                               or LOGIN)
        authenticator = Authenticator(signer, directory, tenant_id)
        self.app = ArmApp(self.resources, authenticator, self.decisions,
                          lambda: cloud_metadata(self.endpoint, self.authority_host))
        # a unique label: several stand-ins may share one CA directory
        context = ca.server_context(f"arm-{uuid.uuid4().hex[:8]}", host)
        self._server = HTTPSServer(context, host, port)

    @property
    def endpoint(self) -> str:
        return self._server.url

    def add_managed_cluster(self, resource_group: str, name: str, issuer_url: str,
                            location: str = "westeurope") -> None:
        """An AKS record (GET .../managedClusters/{name}) whose OIDC issuer is issuer_url,
        returned exactly as given; its resource group is created if missing."""
        self.resources.add_managed_cluster(resource_group, name, issuer_url, location)

    def start(self) -> ArmStandIn:
        self._server.start(self.app)
        return self

    def stop(self) -> None:
        self._server.stop()
