"""A WSGI app served over HTTPS from a background thread pool (cheroot).

cheroot rather than werkzeug's development server: it keeps connections alive, as the clouds'
endpoints do, so an SDK client pays for one TLS handshake per connection instead of one per
request (measured: 0.7 ms a request instead of 2.5-13 ms on loopback).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from crossfed.pki import ServerTLS

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LOOPBACK = "127.0.0.1"
log = logging.getLogger("crossfed.http")
# One line per request: method, path and status, never the query string, headers or body (an
# STS GET carries the WebIdentityToken in its query, a Key Vault call its bearer token in a
# header). Off unless an application turns it on, as `crossfed serve` does.
access_log = logging.getLogger("crossfed.http.access")
# A decision feed's path carries its secret (crossfed.decisions.FEED_PREFIX + "/<secret>").
FEED_PATH = re.compile(r"^(/crossfed/decisions)/.*")


def logged_path(path: str) -> str:
    """The request path as the access log shows it: a feed's secret is left out."""
    return FEED_PATH.sub(r"\1/…", path)
access_log.setLevel(logging.WARNING)


class _Server(wsgi.Server):
    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        # Client disconnects and TLS handshake failures of negative tests are expected noise.
        log.debug("%s", msg, exc_info=traceback)


class HTTPSServer:
    """Binds at construction (so its URL is known before the app is built), serves after start()."""

    def __init__(self, ssl_context: ServerTLS, host: str = LOOPBACK, port: int = 0,
                 threads: int = 16) -> None:
        self.app: WSGIApp | None = None
        self._server = _Server((host, port), self._dispatch, numthreads=threads,
                               server_name="crossfed")
        adapter = BuiltinSSLAdapter(str(ssl_context.chain_path), str(ssl_context.key_path))
        adapter.context = ssl_context
        self._server.ssl_adapter = adapter
        self._server.prepare()
        self._thread: threading.Thread | None = None
        self.host = host
        self.port: int = self._server.bind_addr[1]

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _dispatch(self, environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"not started"]
        if not access_log.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)

        def logged_start_response(status: str, *args: Any) -> Any:
            access_log.info("%s %s %s -> %s", self.url, environ.get("REQUEST_METHOD"),
                            logged_path(environ.get("PATH_INFO") or ""),
                            status.split(" ", 1)[0])
            return start_response(status, *args)

        return self.app(environ, logged_start_response)

    def start(self, app: WSGIApp | None = None) -> HTTPSServer:
        if app is not None:
            self.app = app
        self._thread = threading.Thread(target=self._server.serve, name=f"https-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
