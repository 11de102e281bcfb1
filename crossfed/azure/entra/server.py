"""The Entra ID stand-in: the token endpoint (client credentials with a federated assertion or
a client secret), the tenant's OpenID configuration and keys, MSAL's instance discovery, and our
own decision feed.

What azure-identity and MSAL Python send is in the facts file, sections 1 and 5. Choices where
Entra documents nothing (UNDOC):
- order of the token endpoint's checks: the HTTP verb (POST only, else AADSTS900561, before
  the tenant), tenant, grant_type, client_id, scope (missing: AADSTS90014), a credential, the
  scope's shape, its resource (AADSTS500011); then the credential's own checks
  (crossfed.azure.entra.assertion);
- a request with both client_assertion and client_secret is judged on the assertion;
- scopes: `openid`, `profile` and `offline_access` are ignored; what remains must be exactly
  one `<resource>/.default` (else AADSTS1002012); an empty `scope=` counts as missing;
- resources: only those in KNOWN_RESOURCES exist in every tenant (see there);
- Correlation ID echoes the client's `client-request-id` (MSAL) or `x-ms-client-request-id`
  (azure-core) header, else a fresh id; the Trace ID is also the decision's request_id;
- instance discovery answers for any authorization_endpoint host: MSAL drops the port, and a
  stand-in is only ever reached on purpose;
- keys are served for every known tenant and for `common`; an unknown tenant there gets the
  same AADSTS90002 body as the discovery document.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from crossfed.azure.directory import Directory, ServicePrincipal
from crossfed.azure.entra import errors
from crossfed.azure.entra.access_tokens import AccessTokenSigner, resource_of
from crossfed.azure.entra.assertion import (
    CLIENT_ASSERTION_TYPE,
    AssertionVerifier,
    find_tenant,
    verify_client_secret,
)
from crossfed.decisions import Decision, DecisionLog, is_feed_path, token_summary
from crossfed.https_server import LOOPBACK, HTTPSServer
from crossfed.oidc.fetch import KeyCache
from crossfed.pki import RunCA

TOKEN_ACTION = "oauth2/v2.0/token"
RESERVED_SCOPES = {"openid", "profile", "offline_access"}
# CHOICE: the resources every tenant of the stand-in knows, by identifier URI: the first-party
# services the harness and its workloads ask for (Key Vault, ARM under both of its names,
# Microsoft Graph) and the token-exchange audience api://AzureADTokenExchange. Matched exactly,
# trailing "/" ignored. Any other resource answers AADSTS500011, as in a tenant where it has no
# service principal; app ids (GUIDs) and the tenant's own applications' URIs are not resources
# here.
KNOWN_RESOURCES = frozenset({
    "https://vault.azure.net",
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://graph.microsoft.com",
    "api://AzureADTokenExchange",
})
SHARED_TENANTS = {"common"}  # served keys without being a tenant of the directory

URLS = Map([
    Rule("/common/discovery/instance", endpoint="instance", methods=["GET"]),
    Rule("/<tenant>/oauth2/v2.0/token", endpoint="token"),  # any verb: others get 900561
    Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="openid", methods=["GET"]),
    Rule("/<tenant>/discovery/v2.0/keys", endpoint="keys", methods=["GET"]),
], strict_slashes=False)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status,
                        content_type="application/json; charset=utf-8")
    response.headers["Cache-Control"] = "no-store, no-cache"
    response.headers["Pragma"] = "no-cache"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def requested_resource(scope: str, tenant: str) -> str:
    """The one resource of a client-credentials scope string (the access token's aud), if the
    tenant knows it."""
    scopes = [s for s in scope.split() if s not in RESERVED_SCOPES]
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise errors.InvalidScope(
            errors.INVALID_SCOPE.format(scope=scope), check="scope",
            detail=f"scope is {scope!r}; the client credentials grant takes exactly one "
            "'<resource>/.default' scope, e.g. https://vault.azure.net/.default")
    resource = resource_of(scopes[0])
    if resource.rstrip("/") not in KNOWN_RESOURCES:
        raise errors.ResourceNotFound(
            errors.RESOURCE_NOT_FOUND.format(resource=resource, tenant=tenant),
            check="resource",
            detail=f"no service principal of tenant {tenant} has the identifier {resource!r}; "
            f"known here: {', '.join(sorted(KNOWN_RESOURCES))}")
    return resource


def check_request_shape(form: MultiDict[str, str]) -> None:
    """The form fields every client-credentials request needs, before any lookup."""
    grant_type = form.get("grant_type", "")
    if not grant_type:
        raise _missing("grant_type")
    if grant_type != "client_credentials":
        raise errors.UnsupportedGrantType(
            errors.UNSUPPORTED_GRANT.format(grant_type=grant_type), check="request",
            detail="the stand-in implements the client credentials grant only")
    if not form.get("client_id"):
        raise _missing("client_id")
    if not form.get("scope", "").strip():
        raise errors.MissingRequiredField(
            errors.MISSING_REQUIRED_FIELD.format(name="scope"), check="request",
            detail="the form body has no 'scope' field (or an empty one); the client "
            "credentials grant needs '<resource>/.default', e.g. https://vault.azure.net/.default")
    if not (form.get("client_assertion") or form.get("client_assertion_type")
            or form.get("client_secret")):
        raise errors.MissingClientCredential(
            errors.MISSING_CREDENTIAL, check="request",
            detail="the request carries neither a federated assertion nor a client secret")
    if form.get("client_assertion") or form.get("client_assertion_type"):
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise errors.MissingParameter(
                errors.WRONG_ASSERTION_TYPE, check="request",
                detail=f"client_assertion_type is {form.get('client_assertion_type')!r}")
        if not form.get("client_assertion"):
            raise _missing("client_assertion")


def _missing(name: str) -> errors.MissingParameter:
    return errors.MissingParameter(errors.MISSING_PARAMETER.format(name=name), check="request",
                                   detail=f"the form body has no {name!r} field")


class EntraApp:
    """WSGI app; `authority` is the scheme://host:port clients reach it at."""

    def __init__(self, directory: Directory, signer: AccessTokenSigner,
                 verifier: AssertionVerifier, decisions: DecisionLog, authority: str) -> None:
        self.directory, self.signer, self.verifier = directory, signer, verifier
        self.decisions, self.authority = decisions, authority.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        # Not an Entra path: the harness's diagnosis feed, at its secret path only.
        if request.method == "GET" and is_feed_path(request.path, self.decisions.feed_path):
            return _json(self.decisions.as_json())(environ, start_response)
        try:
            endpoint, args = URLS.bind_to_environ(environ).match()
            response = getattr(self, f"on_{endpoint}")(request, **args)
        except HTTPException as exc:
            response = exc.get_response(environ)
        return response(environ, start_response)

    # --- endpoints ---------------------------------------------------------------------

    def on_openid(self, request: Request, tenant: str) -> Response:
        try:
            find_tenant(self.directory, tenant)
        except errors.EntraError as error:
            return self._error(error, request)
        return _json(self.openid_configuration(tenant))

    def on_keys(self, request: Request, tenant: str) -> Response:
        if tenant not in SHARED_TENANTS:
            try:
                find_tenant(self.directory, tenant)
            except errors.EntraError as error:
                return self._error(error, request)
        return _json(self.signer.jwks())

    def on_instance(self, request: Request) -> Response:
        """MSAL's instance discovery: where the tenant's OpenID configuration lives."""
        endpoint = request.args.get("authorization_endpoint", "")
        segments = [s for s in urlsplit(endpoint).path.split("/") if s]
        tenant = segments[0] if segments else "common"
        netloc = urlsplit(self.authority).netloc
        hostname = urlsplit(self.authority).hostname or netloc
        return _json({
            "tenant_discovery_endpoint":
                f"{self.authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": request.args.get("api-version", "1.1"),
            "metadata": [{"preferred_network": netloc, "preferred_cache": netloc,
                          "aliases": sorted({netloc, hostname})}],
        })

    def on_token(self, request: Request, tenant: str) -> Response:
        trace_id = str(uuid.uuid4())
        if request.method != "POST":
            return self._wrong_method(request, trace_id)
        form = request.form
        client_id = form.get("client_id", "")
        assertion = form.get("client_assertion", "")
        decision = Decision(request_id=trace_id, action=TOKEN_ACTION, target=client_id,
                            token=self._credential_summary(form), allowed=False)
        try:
            principal, appidacr, resource, how = self.authenticate(tenant, form, assertion)
        except errors.EntraError as error:
            decision.code, decision.message = error.aadsts, error.message
            decision.check, decision.detail = error.check, error.detail
            self.decisions.record(decision)
            return self._error(error, request, trace_id)
        issued = self.signer.issue(principal, resource, appidacr=appidacr)
        decision.allowed = True
        decision.detail = (f"issued an access token for {resource} to {principal.display_name} "
                           f"(oid {principal.object_id}, appidacr {appidacr}) {how}")
        self.decisions.record(decision)
        return _json({"token_type": "Bearer", "expires_in": issued.expires_in,
                      "ext_expires_in": issued.expires_in, "access_token": issued.token},
                     headers={"x-ms-request-id": trace_id})

    # --- helpers -----------------------------------------------------------------------

    def _wrong_method(self, request: Request, trace_id: str) -> Response:
        """AADSTS900561 for any verb but POST; nothing of the request is read."""
        error = errors.MethodNotAccepted(
            errors.METHOD_NOT_ACCEPTED.format(method=request.method), check="method",
            detail=f"{request.method} on the token endpoint; tokens are requested with POST "
            "and a form-urlencoded body")
        self.decisions.record(Decision(
            request_id=trace_id, action=TOKEN_ACTION, target="", token={}, allowed=False,
            code=error.aadsts, message=error.message, check=error.check, detail=error.detail))
        return self._error(error, request, trace_id)

    def authenticate(self, tenant: str, form: MultiDict[str, str],
                     assertion: str) -> tuple[ServicePrincipal, str, str, str]:
        """(principal, appidacr, resource, how) or the EntraError to answer with."""
        find_tenant(self.directory, tenant)
        check_request_shape(form)
        resource = requested_resource(form["scope"], tenant)
        client_id = form["client_id"]
        if assertion:
            grant = self.verifier.verify_grant(tenant, client_id, assertion)
            how = f"through federated credential '{grant.credential.name}'"
            return grant.principal, "2", resource, how
        principal = verify_client_secret(self.directory, tenant, client_id,
                                         form.get("client_secret", ""))
        return principal, "1", resource, "with a client secret"

    @staticmethod
    def _credential_summary(form: MultiDict[str, str]) -> dict[str, Any]:
        """What the decision log may keep of the credential: never the assertion or secret."""
        if form.get("client_assertion"):
            return token_summary(form["client_assertion"])
        return {"credential": "client_secret" if form.get("client_secret") else "none"}

    def _error(self, error: errors.EntraError, request: Request,
               trace_id: str | None = None) -> Response:
        correlation = (request.headers.get("client-request-id")
                       or request.headers.get("x-ms-client-request-id"))
        body = errors.error_body(error, self.authority, trace_id=trace_id,
                                 correlation_id=correlation)
        return _json(body, status=error.status, headers={"x-ms-request-id": body["trace_id"]})

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.authority}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        }


class EntraStandIn:
    """Entra ID on a loopback port with a certificate from `ca`.

    trusted_roots: the CA bundle the token endpoint trusts when it fetches an issuer's keys;
    None means the system's public roots, which is what Entra itself trusts.
    """

    def __init__(self, ca: RunCA, directory: Directory, signer: AccessTokenSigner,
                 trusted_roots: str | None, host: str = LOOPBACK, port: int = 0) -> None:
        self.directory, self.signer = directory, signer
        self.decisions = DecisionLog()
        self.keys = KeyCache()
        self._server = HTTPSServer(ca.server_context("entra", host, "localhost"), host=host,
                                   port=port)
        self.verifier = AssertionVerifier(directory, self.keys, trusted_roots)
        self.app = EntraApp(directory, signer, self.verifier, self.decisions,
                            self.authority_host)

    @property
    def authority_host(self) -> str:
        return self._server.url

    @property
    def decisions_url(self) -> str:
        """The decision feed (JSON), for the harness only: the path carries a per-run secret."""
        return self.authority_host + self.decisions.feed_path

    def start(self) -> EntraStandIn:
        self._server.start(self.app)
        return self

    def stop(self) -> None:
        self._server.stop()
