"""Serves an issuer's discovery document and JWKS over HTTPS, as a public OIDC issuer does."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from werkzeug.wrappers import Request, Response

from crossfed.https_server import HTTPSServer
from crossfed.issuer.issuer import JWKS_PATH, Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.pki import RunCA

DISCOVERY_PATH = "/.well-known/openid-configuration"


class IssuerApp:
    """WSGI app; counts fetches so a diagnosis can say whether a verifier ever came by."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.fetches: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        documents = {DISCOVERY_PATH: self.issuer.discovery_document, JWKS_PATH: self.issuer.jwks}
        producer = documents.get(request.path)
        if request.method not in ("GET", "HEAD") or producer is None:  # HEAD: as net/http
            response = Response("not found\n", status=404, content_type="text/plain")
        else:
            with self._lock:
                self.fetches[request.path] += 1
            response = Response(json.dumps(producer()), content_type="application/json")
        return response(environ, start_response)


class IssuerServer:
    """An issuer with its own key, served on a loopback port with a certificate from `ca`."""

    def __init__(self, ca: RunCA, label: str = "issuer", key: SigningKey | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._https = HTTPSServer(ca.server_context(label, host, "localhost"), host=host,
                                  port=port)
        self.issuer = Issuer(self._https.url, key or SigningKey.generate())
        self.app = IssuerApp(self.issuer)

    @property
    def url(self) -> str:
        return self.issuer.url

    def start(self) -> IssuerServer:
        self._https.start(self.app)
        return self

    def stop(self) -> None:
        self._https.stop()
