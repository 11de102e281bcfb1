"""An issuer crossfed did not create: a cluster that signs with a key of its own.

crossfed learns its discovery document and JWKS through the cluster's API server (kube-apiserver
serves both to authenticated clients at /.well-known/openid-configuration and /openid/v1/jwks,
ServiceAccountIssuerDiscovery) and re-serves them from the host, where the stand-ins fetch them.
An in-cluster issuer URL such as https://kubernetes.default.svc is not reachable from the host,
so the stand-ins are told where its documents are mirrored (KeyCache.register_location); they
still check that the discovery document names the token's issuer exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crossfed.https_server import HTTPSServer
from crossfed.issuer.issuer import JWKS_PATH
from crossfed.issuer.server import DISCOVERY_PATH, IssuerApp
from crossfed.issuer.tokens import ServiceAccountRef, service_account_claims
from crossfed.pki import RunCA


class LearnError(RuntimeError):
    """The cluster's issuer could not be learned; the message says what to fix."""


class SigningKeyUnavailable(LookupError):
    """A token variant needs the issuer's private key, which only the cluster holds."""


@dataclass
class LearnedIssuer:
    """Issuer URL and published keys of a cluster; crossfed holds no private key for it."""

    url: str
    discovery: dict[str, Any]
    published_jwks: dict[str, Any]
    key: None = None

    @property
    def kid(self) -> str:
        keys = self.published_jwks.get("keys") or [{}]
        return str(keys[0].get("kid", ""))

    def claims_for(self, account: ServiceAccountRef, audiences: list[str],
                   expires_in: int = 3600) -> dict[str, Any]:
        return service_account_claims(self.url, account, audiences, expires_in)


def _get_json(api_client: Any, path: str) -> dict[str, Any]:
    """GET through the kubernetes client's authenticated connection (raw body, no model)."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        response = api_client.call_api(path, "GET", auth_settings=["BearerToken"],
                                       _preload_content=False, _request_timeout=15)
    except HTTPError as exc:  # refused, timed out, TLS: urllib3 gave up after its retries
        server = getattr(api_client.configuration, "host", "?")
        reason = getattr(exc, "reason", None) or exc
        raise LearnError(f"cannot reach the cluster's API server {server} for {path}: "
                         f"{reason}; check that the cluster is up and that the kubeconfig "
                         "points at it") from exc
    except ApiException as exc:
        hint = (" (ServiceAccountIssuerDiscovery disabled, or the kubeconfig's user may not "
                "read it: grant system:service-account-issuer-discovery)"
                if exc.status in (401, 403, 404) else "")
        raise LearnError(f"the API server answered {exc.status} {exc.reason} for {path}"
                         f"{hint}") from exc
    data = response[0].data if isinstance(response, tuple) else response.data
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise LearnError(f"the API server's {path} is not JSON") from exc
    if not isinstance(document, dict):
        raise LearnError(f"the API server's {path} is not a JSON object")
    return document


def learn_from_api_server(api_client: Any) -> LearnedIssuer:
    """The cluster's service-account issuer and its keys, as its API server publishes them."""
    discovery = _get_json(api_client, DISCOVERY_PATH)
    issuer = discovery.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise LearnError("the API server's discovery document names no issuer "
                         "(is --service-account-issuer set?)")
    jwks = _get_json(api_client, JWKS_PATH)
    if not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise LearnError("the API server publishes no service-account keys at " + JWKS_PATH)
    return LearnedIssuer(issuer, discovery, jwks)


class _MirrorDocuments:
    """The learned documents as the mirror serves them: jwks_uri points at the mirror."""

    def __init__(self, learned: LearnedIssuer, mirror_url: str) -> None:
        self.learned, self.mirror_url = learned, mirror_url

    def discovery_document(self) -> dict[str, Any]:
        # Choice: the cluster's jwks_uri (e.g. https://kubernetes.default.svc/openid/v1/jwks)
        # is not reachable from the host either, so the mirror names its own copy.
        return {**self.learned.discovery, "jwks_uri": self.mirror_url + JWKS_PATH}

    def jwks(self) -> dict[str, Any]:
        return self.learned.published_jwks


class IssuerMirror:
    """Serves a learned issuer's documents on loopback, with a certificate from the run CA."""

    def __init__(self, ca: RunCA, learned: LearnedIssuer, host: str = "127.0.0.1") -> None:
        self._https = HTTPSServer(ca.server_context("issuer-mirror", host, "localhost"),
                                  host=host)
        self.learned = learned
        self.app = IssuerApp(_MirrorDocuments(learned, self._https.url))  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return self._https.url

    def start(self) -> IssuerMirror:
        self._https.start(self.app)
        return self

    def stop(self) -> None:
        self._https.stop()
