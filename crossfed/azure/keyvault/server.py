"""The Key Vault data-plane stand-in (secrets): one HTTPS listener per vault, driven unchanged by
azure-keyvault-secrets' SecretClient.

What the SDK sends, the challenge flow and the error table are in the facts file, section 4.
Each request is checked in this order: route, api-version, bearer token (401 with the
challenge), token issuer/tenant, secret name (400), authorization (403), then the operation
itself (404, 409, 403 SecretDisabled, 400 for a bad body). Every request except the diagnosis
feed records a Decision (target "vault/secret", "vault/*" for collections) carrying a
token_summary, never the token; GET on the decision log's secret feed path
(crossfed/decisions.py) on a vault's listener returns that vault's decisions (not a Key Vault
path: any other /crossfed/... path is an unknown path).

Challenge-resource verification. The 401 challenge names the real resource,
`https://vault.azure.net`, because that is the audience Entra puts in the token and the one
this server checks. Since azure-keyvault-secrets 4.6.0 the SDK refuses a challenge whose
resource domain is not a parent of the vault's host (port included), and
`https://127.0.0.1:PORT` is no subdomain of `vault.azure.net`, so local clients must be built
with `SecretClient(..., verify_challenge_resource=False)`. That switch exists to stop a client
from sending a Key Vault token to a host posing as a vault; it is safe here only because the
vault URL points at a loopback listener this run started and whose certificate comes from the
run's own CA. Never turn it off for a real vault: there the check is what keeps the token home.

Choices where Key Vault documents nothing (UNDOC):
- unknown paths answer 404 code NotFound, known paths with another method 405
  MethodNotAllowed (with Allow), both before authentication so a wrong URL is named as such;
- api-version: missing (Key Vault documents that there is no default) or malformed is 400
  BadParameter. CHOICE: a well-formed version is accepted whether or not Key Vault has it
  (the stand-in speaks one protocol for all), so 7.9 or 2031-01-01 pass; well-formed is
  API_VERSION: N.N or a calendar date YYYY-MM-DD, then optionally -preview or -preview.N;
- every 401 carries the WWW-Authenticate challenge, so the SDK fetches a token once more and
  then gives up with ClientAuthenticationError (two requests per failed call);
- the name is validated after authentication and before authorization; a version that is not
  stored is 404 SecretNotFound, whatever its shape;
- names are case-insensitive (as Key Vault's object names are): a request in other case finds
  the stored secret, and the stored spelling is the one in `id`;
- soft delete is on, 90 days: DELETE answers a DeletedSecretBundle, GET/DELETE
  /deletedsecrets/{name} and POST .../recover work (get/purge/recover permissions), and PUT
  on a deleted name is 409 Conflict ObjectIsDeletedButRecoverable. Nothing is purged by time;
- attributes: `enabled` is honoured on PUT/PATCH; `nbf`/`exp` are stored and returned (the
  SecretBundle carries them) but not enforced;
- GET /secrets/{name}/versions of an unknown secret is 404 SecretNotFound;
- paging: maxresults 1..25 (default 25, else 400); nextLink carries an opaque `$skiptoken`
  (an offset) and maxresults; the last page has `"nextLink": null`;
- access policies carrying an applicationId (compound identity) only match a token whose
  appid is that application;
- Azure RBAC vaults (enableRbacAuthorization) ignore access policies: the operation's data
  action (Operation.data_action) must be granted by a role assignment at the secret, the
  vault, its group or the subscription, in force (propagated), as ARM's role assignments say
  (Vault.rbac); a vault opened without ARM has none and denies everything. Denial: 403
  Forbidden / ForbiddenByRbac, decision check "role_assignment";
- tokens: v1.0 only (iss `https://sts.windows.net/{tid}/`), checked by
  AccessTokenSigner.verify (key, audience, lifetime with 300 s skew), then iss and tid against
  the vault's tenant (AKV10032).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import jwt
from werkzeug.wrappers import Request, Response

from crossfed.azure.entra.access_tokens import (
    LEEWAY,
    AccessTokenError,
    AccessTokenSigner,
    v1_issuer,
)
from crossfed.azure.keyvault import errors
from crossfed.azure.keyvault.model import RbacVerdict, SecretVersion, Vault
from crossfed.decisions import Decision, DecisionLog, is_feed_path, token_summary
from crossfed.https_server import LOOPBACK, HTTPSServer
from crossfed.pki import RunCA

RESOURCE = errors.VAULT_RESOURCE
MAX_RESULTS = 25  # Key Vault's page size limit (SPECS: maxresults 1..25)
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
API_VERSION = re.compile(r"(?:\d{1,2}\.\d{1,2}|(?P<date>\d{4}-\d{2}-\d{2}))"
                         r"(?:-preview(?:\.\d{1,2})?)?")  # used with fullmatch

WSGIStart = Callable[..., Any]


def check_api_version(version: str) -> None:
    """Raise BadParameter unless `version` has the shape of a Key Vault api-version."""
    if not version:
        raise errors.missing_api_version()
    shape = API_VERSION.fullmatch(version)
    if shape is None:
        raise errors.unrecognized_api_version(version)
    if shape.group("date"):
        try:
            datetime.date.fromisoformat(shape.group("date"))
        except ValueError:
            raise errors.unrecognized_api_version(version) from None


@dataclass
class DeletedSecret:
    name: str  # stored spelling
    versions: list[SecretVersion]
    deleted: int

    @property
    def purge_date(self) -> int:
        return self.deleted + RECOVERABLE_DAYS * 86400


@dataclass(frozen=True)
class Route:
    shape: str  # which path pattern matched
    name: str | None
    version: str | None


@dataclass(frozen=True)
class Operation:
    action: str  # Key Vault's audit-log operation name
    permission: str  # the secret permission it needs (access policies)
    handler: str  # VaultApp method
    data_action: str = ""  # what Azure RBAC checks (enableRbacAuthorization)


# Data actions: getSecret and readMetadata are in the field's denial messages; the others are
# the secrets data actions as the built-in roles list them (rbac-guide.md). CHOICE: deleted
# secrets are read (list, get) with readMetadata, purged and recovered with secrets/purge and
# secrets/recover.
SECRETS = "Microsoft.KeyVault/vaults/secrets/"
GET, READ = SECRETS + "getSecret/action", SECRETS + "readMetadata/action"
OPERATIONS: dict[str, dict[str, Operation]] = {
    "secrets": {"GET": Operation("SecretList", "list", "_list", READ)},
    "secret": {
        "GET": Operation("SecretGet", "get", "_get", GET),
        "PUT": Operation("SecretSet", "set", "_set", SECRETS + "setSecret/action"),
        "DELETE": Operation("SecretDelete", "delete", "_delete", SECRETS + "delete"),
        # update_secret_properties without a version sends PATCH /secrets/{name}/: the latest
        "PATCH": Operation("SecretUpdate", "set", "_update", SECRETS + "update/action"),
    },
    "versions": {"GET": Operation("SecretListVersions", "list", "_list_versions", READ)},
    "version": {
        "GET": Operation("SecretGet", "get", "_get", GET),
        "PATCH": Operation("SecretUpdate", "set", "_update", SECRETS + "update/action"),
    },
    "deleted": {"GET": Operation("SecretListDeleted", "list", "_list_deleted", READ)},
    "deleted_secret": {
        "GET": Operation("SecretGetDeleted", "get", "_get_deleted", READ),
        "DELETE": Operation("SecretPurge", "purge", "_purge", SECRETS + "purge/action"),
    },
    "recover": {"POST": Operation("SecretRecover", "recover", "_recover",
                                  SECRETS + "recover/action")},
}


def match_route(path: str) -> Route | None:
    """Trailing slashes are ignored: the SDK asks for the latest version as /secrets/{name}/."""
    trimmed = path.strip("/")
    parts = trimmed.split("/") if trimmed else []
    head = parts[0].lower() if parts else ""
    if head == "secrets":
        if len(parts) == 1:
            return Route("secrets", None, None)
        if len(parts) == 2:
            return Route("secret", parts[1], None)
        if len(parts) == 3:
            if parts[2].lower() == "versions":  # a version is 32 hex, never "versions"
                return Route("versions", parts[1], None)
            return Route("version", parts[1], parts[2])
    if head == "deletedsecrets":
        if len(parts) == 1:
            return Route("deleted", None, None)
        if len(parts) == 2:
            return Route("deleted_secret", parts[1], None)
        if len(parts) == 3 and parts[2].lower() == "recover":
            return Route("recover", parts[1], None)
    return None


def _encode_skip(offset: int) -> str:
    raw = json.dumps({"skip": offset}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_skip(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        offset = json.loads(raw)["skip"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request("The $skiptoken is not valid.",
                                 f"$skiptoken {token!r} was not issued by this vault") from exc
    if not isinstance(offset, int) or offset < 0:
        raise errors.bad_request("The $skiptoken is not valid.")
    return offset


class VaultApp:
    """The WSGI app of one vault; reads the Vault live, so ARM updates apply at once."""

    def __init__(self, vault: Vault, signer: AccessTokenSigner, authority_host: str,
                 decisions: DecisionLog) -> None:
        self.vault = vault
        self.signer = signer
        self.authority_host = authority_host.rstrip("/")
        self.decisions = decisions
        # Soft-deleted secrets and `updated` stamps live here: the model keeps neither.
        self._deleted: dict[str, DeletedSecret] = {}  # by lower-case name
        self._updated: dict[str, int] = {}  # by version id

    # -- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: WSGIStart) -> Iterable[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        if request.method == "GET" and is_feed_path(request.path, self.decisions.feed_path):
            return self._json(self._own_decisions(), request_id=request_id)
        summary: dict[str, Any] = {}
        action, target = f"{request.method} {request.path}", f"{self.vault.name}{request.path}"
        try:
            route = match_route(request.path)
            if route is None:
                raise errors.route_not_found(request.method, request.path)
            methods = OPERATIONS[route.shape]
            operation = methods.get(request.method)
            if operation is None:
                raise errors.method_not_allowed(request.method, request.path, tuple(methods))
            action, target = operation.action, f"{self.vault.name}/{route.name or '*'}"
            check_api_version(request.args.get("api-version", ""))
            bearer = self._bearer(request)
            summary = token_summary(bearer)
            claims = self._authenticate(bearer)
            if route.name is not None and not NAME.match(route.name):
                raise errors.invalid_name(route.name)
            why = self._authorize(claims, operation, route.name)
            response: Response = getattr(self, operation.handler)(request, route)
        except errors.KeyVaultError as exc:
            self.decisions.record(Decision(
                request_id=request_id, action=action, target=target, token=summary,
                allowed=False, code=exc.code if not exc.inner else f"{exc.code}/{exc.inner}",
                message=exc.message, check=exc.check, detail=exc.detail))
            return self._error(exc, request_id)
        self.decisions.record(Decision(
            request_id=request_id, action=action, target=target, token=summary, allowed=True,
            detail=why))
        response.headers["x-ms-request-id"] = request_id
        response.headers["x-ms-keyvault-region"] = self.vault.location
        return response

    # -- authentication and authorization ------------------------------------------------------

    def challenge(self) -> str:
        with self.vault.lock:
            tenant = self.vault.tenant_id
        return f'Bearer authorization="{self.authority_host}/{tenant}", resource="{RESOURCE}"'

    @staticmethod
    def _bearer(request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.missing_token(header or None)
        return token.strip()

    def _authenticate(self, token: str) -> dict[str, Any]:
        try:
            claims = self.signer.verify(token, (RESOURCE,))
        except AccessTokenError as exc:
            raise self._token_error(token, exc) from exc
        with self.vault.lock:
            tenant = self.vault.tenant_id
        # GUIDs compare case-insensitively; iss must be the v1 issuer of the vault's tenant.
        iss, tid = str(claims.get("iss", "")), str(claims.get("tid", ""))
        if iss.lower() != v1_issuer(tenant).lower() or tid.lower() != tenant.lower():
            raise errors.invalid_issuer(tenant, claims.get("iss"), claims.get("tid"))
        return claims

    def _token_error(self, token: str, exc: AccessTokenError) -> errors.KeyVaultError:
        """Map the signer's reason onto Key Vault's 401 texts (signature already checked for
        audience and lifetime reasons, so reading the claims unverified is safe there)."""
        if exc.reason == "malformed":
            return errors.malformed(exc.message)
        if exc.reason == "signature":
            header = jwt.get_unverified_header(token)
            if header.get("alg") == "RS256" and header.get("kid") != self.signer.key.kid:
                return errors.unknown_key(token.split(".", 1)[0], header.get("kid"))
            return errors.bad_signature(f"{exc.message} (alg {header.get('alg')!r}, kid "
                                        f"{header.get('kid')!r})")
        claims = jwt.decode(token, options={"verify_signature": False})
        now = int(time.time())
        if exc.reason == "audience":
            return errors.invalid_audience(claims.get("aud"))
        if exc.reason == "expired":
            return errors.expired(claims.get("exp"), now, LEEWAY)
        if exc.reason == "not_yet_valid":
            return errors.not_yet_valid(claims.get("nbf"), now, LEEWAY)
        return errors.malformed(exc.message)

    def _authorize(self, claims: dict[str, Any], operation: Operation,
                   secret: str | None) -> str:
        vault, permission = self.vault, operation.permission
        tid, oid, appid = claims.get("tid", ""), claims.get("oid", ""), claims.get("appid")
        with vault.lock:
            rbac = vault.enable_rbac_authorization
            granted = not rbac and vault.allowed(tid, oid, permission, appid)
            name, location = vault.name, vault.location
            decider, resource_id = vault.rbac, vault.resource_id
        if rbac:
            return self._authorize_rbac(claims, operation, secret, decider, resource_id)
        if not granted:
            raise errors.access_denied(claims, permission, name, location, tid)
        return f"an access policy grants secrets {permission} to object id {oid} (appid {appid})"

    def _authorize_rbac(self, claims: dict[str, Any], operation: Operation, secret: str | None,
                        decider: Any, resource_id: str) -> str:
        """Azure RBAC vaults ignore access policies: role assignments at the vault (or the
        secret), its group or the subscription decide, through ARM's decider."""
        vault = self.vault
        base = resource_id or f"providers/Microsoft.KeyVault/vaults/{vault.name}"
        scope = f"{base}/secrets/{secret}" if secret else base
        oid = str(claims.get("oid", ""))
        if decider is None:
            verdict = RbacVerdict(False, f"vault {vault.name} uses Azure RBAC "
                                  "(enableRbacAuthorization) and was opened without ARM, so no "
                                  "role assignment can grant anything")
        else:
            verdict = decider(oid, operation.data_action, scope)
        if not verdict.allowed:
            # CHOICE: the resource in lower case, as the field's denial messages show it
            raise errors.forbidden_by_rbac(claims, operation.data_action, vault.name,
                                           vault.location, scope.lower(), verdict.why)
        return verdict.why

    # -- shapes ---------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return self.vault.uri if self.vault.uri.endswith("/") else self.vault.uri + "/"

    def _attributes(self, version: SecretVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": version.created,
            "updated": self._updated.get(version.version, version.created),
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        }
        if version.not_before is not None:
            attributes["nbf"] = version.not_before
        if version.expires is not None:
            attributes["exp"] = version.expires
        return attributes

    def _bundle(self, name: str, version: SecretVersion, value: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"value": version.value} if value else {}
        body["id"] = f"{self.base}secrets/{name}/{version.version}"
        body["attributes"] = self._attributes(version)
        if version.content_type is not None:
            body["contentType"] = version.content_type
        if version.tags is not None:
            body["tags"] = dict(version.tags)
        return body

    def _item(self, name: str, version: SecretVersion, with_version: bool) -> dict[str, Any]:
        body = self._bundle(name, version, value=False)  # list items never carry values
        if not with_version:
            body["id"] = f"{self.base}secrets/{name}"
        return body

    def _deleted_bundle(self, entry: DeletedSecret, item: bool = False) -> dict[str, Any]:
        body = {
            "recoveryId": f"{self.base}deletedsecrets/{entry.name}",
            "deletedDate": entry.deleted,
            "scheduledPurgeDate": entry.purge_date,
        }
        shape = self._item(entry.name, entry.versions[-1], with_version=False) if item else \
            self._bundle(entry.name, entry.versions[-1], value=False)
        return {**body, **shape}

    def _page(self, request: Request, items: Sequence[dict[str, Any]]) -> Response:
        raw = request.args.get("maxresults")
        try:
            size = MAX_RESULTS if raw in (None, "") else int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_RESULTS:
            raise errors.bad_request(
                f"The value of maxresults must be between 1 and {MAX_RESULTS}.",
                f"maxresults={raw!r}")
        skip = _decode_skip(request.args["$skiptoken"]) if "$skiptoken" in request.args else 0
        page = list(items[skip:skip + size])
        next_link = None
        if skip + size < len(items):
            api = quote(request.args.get("api-version", ""), safe="")
            next_link = (f"{self.base}{request.path.strip('/')}?api-version={api}"
                         f"&$skiptoken={_encode_skip(skip + size)}&maxresults={size}")
        return self._json({"value": page, "nextLink": next_link})

    # -- state helpers ---------------------------------------------------------------------------

    def _stored_name(self, name: str) -> str | None:
        """Key Vault names are case-insensitive; the model's dict is not."""
        with self.vault.lock:
            lowered = name.lower()
            return next((k for k, v in self.vault.secrets.items()
                         if k.lower() == lowered and v), None)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError as exc:
            raise errors.bad_request("The request body is not valid JSON.", str(exc)) from exc
        if not isinstance(body, dict):
            raise errors.bad_request("The request body must be a JSON object.")
        return body

    @staticmethod
    def _dates(body: dict[str, Any]) -> dict[str, int]:
        """attributes.nbf / attributes.exp that the body sets: epoch seconds (UnixTime)."""
        attributes = body.get("attributes") or {}  # a dict: _properties checked it first
        dates: dict[str, int] = {}
        for key in ("nbf", "exp"):
            value = attributes.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise errors.bad_request(f"attributes.{key} must be a Unix time in seconds.")
            dates[key] = value
        return dates

    @staticmethod
    def _apply_dates(version: SecretVersion, dates: dict[str, int]) -> None:
        if "nbf" in dates:
            version.not_before = dates["nbf"]
        if "exp" in dates:
            version.expires = dates["exp"]

    @staticmethod
    def _properties(body: dict[str, Any]) -> tuple[str | None, dict[str, str] | None,
                                                   bool | None]:
        content_type, tags = body.get("contentType"), body.get("tags")
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise errors.bad_request("attributes must be an object.")
        enabled = attributes.get("enabled")
        if content_type is not None and not isinstance(content_type, str):
            raise errors.bad_request("contentType must be a string.")
        if tags is not None and not (isinstance(tags, dict)
                                     and all(isinstance(v, str) for v in tags.values())):
            raise errors.bad_request("tags must be an object of string values.")
        if enabled is not None and not isinstance(enabled, bool):
            raise errors.bad_request("attributes.enabled must be a boolean.")
        return content_type, tags, enabled

    # -- operations ------------------------------------------------------------------------------

    def _get(self, request: Request, route: Route) -> Response:
        name = self._stored_name(route.name or "")
        found = self.vault.get_secret(name, route.version) if name else None
        if name is None or found is None:
            raise errors.secret_not_found(route.name or "", route.version)
        if not found.enabled:
            raise errors.secret_disabled(name, found.version)
        return self._json(self._bundle(name, found))

    def _set(self, request: Request, route: Route) -> Response:
        requested = route.name or ""
        body = self._body(request)
        value = body.get("value")
        if not isinstance(value, str):
            raise errors.bad_request("The request body must have a string 'value'.",
                                     f"value is {type(value).__name__}")
        content_type, tags, enabled = self._properties(body)
        dates = self._dates(body)
        with self.vault.lock:  # the deleted check and the write are one step
            if requested.lower() in self._deleted:
                raise errors.deleted_but_recoverable(self._deleted[requested.lower()].name)
            name = self._stored_name(requested) or requested
            version = self.vault.set_secret(name, value, content_type,
                                            dict(tags) if tags is not None else None)
            if enabled is not None:
                version.enabled = enabled
            self._apply_dates(version, dates)
        return self._json(self._bundle(name, version))

    def _update(self, request: Request, route: Route) -> Response:
        body = self._body(request)
        content_type, tags, enabled = self._properties(body)
        dates = self._dates(body)
        with self.vault.lock:
            name = self._stored_name(route.name or "")
            found = self.vault.get_secret(name, route.version) if name else None
            if name is None or found is None:
                raise errors.secret_not_found(route.name or "", route.version)
            if "contentType" in body:
                found.content_type = content_type
            if "tags" in body:
                found.tags = dict(tags) if tags is not None else None
            if enabled is not None:
                found.enabled = enabled
            self._apply_dates(found, dates)
            self._updated[found.version] = int(time.time())
        return self._json(self._bundle(name, found, value=False))  # update returns no value

    def _delete(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            name = self._stored_name(route.name or "")
            if name is None:
                raise errors.secret_not_found(route.name or "")
            entry = DeletedSecret(name, self.vault.secrets.pop(name), int(time.time()))
            self._deleted[name.lower()] = entry
        return self._json(self._deleted_bundle(entry))

    def _list(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            items = [self._item(name, versions[-1], with_version=False)
                     for name, versions in sorted(self.vault.secrets.items(),
                                                  key=lambda kv: kv[0].lower())
                     if versions]
        return self._page(request, items)

    def _list_versions(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            name = self._stored_name(route.name or "")
            if name is None:
                raise errors.secret_not_found(route.name or "")
            items = [self._item(name, v, with_version=True) for v in self.vault.secrets[name]]
        return self._page(request, items)

    def _deleted_entry(self, name: str) -> DeletedSecret:
        entry = self._deleted.get(name.lower())
        if entry is None:
            raise errors.deleted_not_found(name)
        return entry

    def _get_deleted(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            entry = self._deleted_entry(route.name or "")
            return self._json(self._deleted_bundle(entry))

    def _list_deleted(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            items = [self._deleted_bundle(e, item=True)
                     for _, e in sorted(self._deleted.items())]
        return self._page(request, items)

    def _purge(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            entry = self._deleted_entry(route.name or "")
            del self._deleted[entry.name.lower()]
        return Response(status=204)

    def _recover(self, request: Request, route: Route) -> Response:
        with self.vault.lock:
            entry = self._deleted_entry(route.name or "")
            del self._deleted[entry.name.lower()]
            self.vault.secrets[entry.name] = entry.versions
        return self._json(self._bundle(entry.name, entry.versions[-1], value=False))

    # -- responses -------------------------------------------------------------------------------

    def _own_decisions(self) -> list[dict[str, Any]]:
        prefix = f"{self.vault.name}/"
        return [asdict(d) for d in self.decisions.all() if d.target.startswith(prefix)]

    def _json(self, body: Any, status: int = 200, request_id: str | None = None) -> Response:
        response = Response(json.dumps(body), status=status,
                            content_type="application/json; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Pragma"] = "no-cache"
        if request_id:
            response.headers["x-ms-request-id"] = request_id
        return response

    def _error(self, exc: errors.KeyVaultError, request_id: str) -> Response:
        response = self._json(exc.body(), exc.status, request_id)
        response.headers["x-ms-keyvault-region"] = self.vault.location
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = self.challenge()
        if isinstance(exc, errors.MethodNotAllowed):
            response.headers["Allow"] = ", ".join(exc.allowed)
        return response


class KeyVaultFleet:
    """Every vault of a run, each on its own port of `host` (one certificate serves them all)."""

    def __init__(self, ca: RunCA, signer: AccessTokenSigner, authority_host: str,
                 host: str = LOOPBACK) -> None:
        self.ca = ca
        self.signer = signer
        self.authority_host = authority_host.rstrip("/")
        self.host = host
        self.decisions = DecisionLog()
        self._context = ca.server_context(f"keyvault-{uuid.uuid4().hex[:8]}", host)
        self._open: dict[str, tuple[Vault, HTTPSServer, VaultApp]] = {}  # by lower-case name
        self._lock = threading.Lock()

    def _url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{port}/"

    def open_vault(self, vault: Vault) -> str:
        """Serve the vault on a free port; sets and returns vault.uri (idempotent per vault)."""
        key = vault.name.lower()
        with self._lock:
            if key in self._open:
                served = self._open[key][0]
                if served is not vault:
                    raise ValueError(f"a different vault named {vault.name!r} is already open")
                return vault.uri
            server = HTTPSServer(self._context, host=self.host)
            vault.uri = self._url(server.port)  # before start: ids are built from it
            app = VaultApp(vault, self.signer, self.authority_host, self.decisions)
            server.start(app)
            self._open[key] = (vault, server, app)
        return vault.uri

    def decisions_url(self, vault: Vault) -> str:
        """A vault's decision feed (JSON), for the harness only: the path carries a secret."""
        return vault.uri.rstrip("/") + self.decisions.feed_path

    def close_vault(self, vault: Vault) -> None:
        with self._lock:
            entry = self._open.pop(vault.name.lower(), None)
        if entry is not None:
            entry[1].stop()

    def vault(self, name: str) -> Vault | None:
        with self._lock:
            entry = self._open.get(name.lower())
        return entry[0] if entry else None

    def app(self, name: str) -> VaultApp | None:
        with self._lock:
            entry = self._open.get(name.lower())
        return entry[2] if entry else None

    def stop(self) -> None:
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
        for _, server, _ in entries:
            server.stop()
