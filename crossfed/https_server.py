"""A WSGI app served over HTTPS from a background thread (werkzeug's threaded server)."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LOOPBACK = "127.0.0.1"


class QuietHandler(WSGIRequestHandler):
    """Werkzeug logs every request line; the stand-ins keep their own decision logs instead."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        if type == "error":
            logging.getLogger("crossfed.http").debug(message, *args)


class HTTPSServer:
    """Binds at construction (so its URL is known before the app is built), serves after start()."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        host: str = LOOPBACK,
        port: int = 0,
        request_handler: type[WSGIRequestHandler] | None = None,
    ) -> None:
        self.app: WSGIApp | None = None
        self._server: BaseWSGIServer = make_server(
            host, port, self._dispatch, threaded=True, ssl_context=ssl_context,
            request_handler=request_handler or QuietHandler,
        )
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = self._server.server_port

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _dispatch(self, environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"not started"]
        return self.app(environ, start_response)

    def start(self, app: WSGIApp | None = None) -> HTTPSServer:
        if app is not None:
            self.app = app
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"https-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
