"""Fetching an issuer's discovery document and JWKS over HTTPS, as a cloud verifier does.

Trust, per URL (discovery host and JWKS host alike, as IAM checks each): the verifier's roots
first (AWS: its public-root library; here the run's CA). If the chain does not verify and the
caller knows thumbprints (IAM's ThumbprintList), the SHA-1 of the top certificate the host
serves is compared with them. Entra has no thumbprints: roots only.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from crossfed.pki import sha1_thumbprint

MAX_KEYS = 100  # AWS (reported, gh:spiffe/spire#4699) and Entra use at most 100 keys of a JWKS
# UNDOC at AWS and Entra: neither says how long it caches an issuer's keys. One minute keeps a
# burst of token exchanges to one fetch, and a rotated key is picked up at once anyway through
# refresh=True (unknown kid), rate-limited by min_refetch_interval.
CACHE_TTL = 60.0
# UNDOC size limit; a 100-key RSA JWKS is ~50 KB, so 1 MiB only stops a runaway response.
MAX_DOCUMENT_BYTES = 1 << 20
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
USER_AGENT = "crossfed-oidc-fetch"


class FetchFailure(Exception):
    """Why an issuer's keys could not be had; `kind` is what a verifier maps to its error."""

    kind: str  # unreachable | untrusted | thumbprint_mismatch | bad_document
    url: str
    detail: str

    def __init__(self, kind: str, url: str, detail: str) -> None:
        super().__init__(f"{kind}: {url}: {detail}")
        self.kind, self.url, self.detail = kind, url, detail


@dataclass(frozen=True)
class TrustSettings:
    ca_bundle: str | None  # PEM file of trusted roots; None = certifi's public roots
    thumbprints: tuple[str, ...] = ()  # IAM ThumbprintList; empty = no fallback
    timeout: float = 5.0  # AWS fails IdPs slower than 5 s

    def __post_init__(self) -> None:
        # A caller's list would make the settings unhashable, and they key the cache.
        object.__setattr__(self, "thumbprints", tuple(self.thumbprints))

    def lists(self, thumbprint: str) -> bool:
        return thumbprint.lower() in {t.lower() for t in self.thumbprints}


@dataclass(frozen=True)
class FetchedKeys:
    issuer: str
    jwks_uri: str
    jwks: dict[str, Any]
    via: str  # "trusted-ca", or "thumbprint" if either host was accepted by thumbprint


class _Deadline:
    """One document's time budget: AWS counts the IdP's whole answer, not each socket read."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.end = time.monotonic() + timeout

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchFailure("unreachable", self.url,
                               f"no complete answer within {self.timeout:g} s")
        return left


class _VerifyFailed(Exception):
    """The chain did not verify against the roots: the one case the thumbprints may rescue."""


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FetchFailure("unreachable", url, "not an https:// URL")
    return parts.hostname, parts.port or 443


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> ssl/socket)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([item.__context__, item.__cause__, getattr(item, "reason", None),
                      *item.args])


def _reason(exc: BaseException) -> str:
    """The innermost cause in words, not requests' several-layer repr."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve host: {cause.strerror}"
        if isinstance(cause, (TimeoutError, socket.timeout)):
            return "timed out"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return str(exc)


# --- the served chain, on a connection we control (pyOpenSSL) -----------------------------


def _retry(sock: socket.socket, op: Callable[[], Any], deadline: _Deadline) -> Any:
    # A socket with a timeout is non-blocking underneath, so OpenSSL asks to be called again
    # once the socket is ready; each wait is bounded by what is left of the budget.
    while True:
        try:
            return op()
        except SSL.WantReadError:
            select.select([sock], [], [], deadline.remaining())
        except SSL.WantWriteError:
            select.select([], [sock], [], deadline.remaining())


def _close(connection: SSL.Connection, sock: socket.socket) -> None:
    try:
        connection.shutdown()
    except (SSL.Error, OSError):
        pass  # the peer may be gone already; we only want the socket closed
    sock.close()


def _open_tls(url: str, deadline: _Deadline) -> tuple[socket.socket, SSL.Connection]:
    """Handshake without verification (the caller judges the chain itself)."""
    host, port = _host_port(url)
    try:
        sock = socket.create_connection((host, port), timeout=deadline.remaining())
    except OSError as exc:
        raise FetchFailure("unreachable", url, _reason(exc)) from exc
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_verify(SSL.VERIFY_NONE)
    connection = SSL.Connection(context, sock)
    if not _is_ip(host):  # SNI as requests sends it: host names only (RFC 6066 bars IPs)
        connection.set_tlsext_host_name(host.encode("idna"))
    connection.set_connect_state()
    try:
        _retry(sock, connection.do_handshake, deadline)
    except FetchFailure:
        _close(connection, sock)
        raise
    except (SSL.Error, OSError) as exc:
        _close(connection, sock)
        raise FetchFailure("unreachable", url, f"TLS handshake failed: {exc}") from exc
    return sock, connection


def _peer_chain(url: str, connection: SSL.Connection) -> list[x509.Certificate]:
    chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    if not chain:
        raise FetchFailure("unreachable", url, "the server presented no certificate")
    return list(chain)


def _thumbprint(cert: x509.Certificate) -> str:
    return sha1_thumbprint(cert.public_bytes(Encoding.DER))


def served_chain_thumbprints(url: str, timeout: float = 5.0) -> list[str]:
    """SHA-1 of each certificate the server presents, in served order (no verification).

    pyOpenSSL, because the standard library only exposes the peer's chain from Python 3.13.
    """
    deadline = _Deadline(url, timeout)
    sock, connection = _open_tls(url, deadline)
    try:
        return [_thumbprint(cert) for cert in _peer_chain(url, connection)]
    finally:
        _close(connection, sock)


def top_thumbprint(url: str, timeout: float = 5.0) -> str:
    """What IAM pins: the last certificate of the served chain (`openssl s_client -showcerts`)."""
    return served_chain_thumbprints(url, timeout)[-1]


def _names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether the leaf's subjectAltName covers the host (no CN fallback, as browsers)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if _is_ip(host):
        return ipaddress.ip_address(host) in names.get_values_for_type(x509.IPAddress)
    host = host.lower().rstrip(".")
    for name in names.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:]):
            return True
    return False


def _check_pinned_chain(url: str, chain: list[x509.Certificate]) -> None:
    """The served leaf must chain to the pinned top certificate and name the host.

    A CA certificate is public, so a server could append the pinned one to any chain; the
    thumbprint alone proves nothing until the leaf is shown to descend from it. Whether AWS
    checks this (and the host name) on the thumbprint path is UNDOC; we check both.
    """
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(chain[-1]))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)  # the pin may be an intermediate
    leaf = crypto.X509.from_cryptography(chain[0])
    untrusted = [crypto.X509.from_cryptography(cert) for cert in chain[1:]]
    try:
        crypto.X509StoreContext(store, leaf, untrusted).verify_certificate()
    except crypto.X509StoreContextError as exc:
        raise FetchFailure(
            "thumbprint_mismatch", url,
            f"the top certificate matches a listed thumbprint, but the server's certificate "
            f"does not chain to it: {exc}") from exc
    host, _ = _host_port(url)
    if not _names_host(chain[0], host):
        raise FetchFailure("thumbprint_mismatch", url,
                           f"the server's certificate is not valid for host {host!r}")


class _TLSReader(io.RawIOBase):
    """A file over the pyOpenSSL connection, so http.client can parse the response."""

    def __init__(self, sock: socket.socket, connection: SSL.Connection,
                 deadline: _Deadline) -> None:
        super().__init__()
        self._sock, self._connection, self._deadline = sock, connection, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = _retry(self._sock, lambda: self._connection.recv(len(buffer)), self._deadline)
        except SSL.ZeroReturnError:
            return 0
        except SSL.SysCallError as exc:
            if exc.args and exc.args[0] == -1:  # closed without close_notify: EOF; http.client
                return 0  # still catches a body cut short of its Content-Length
            raise
        buffer[: len(data)] = data
        return len(data)


class _ConnectionAsSocket:
    def __init__(self, reader: _TLSReader) -> None:
        self._file = io.BufferedReader(reader)

    def makefile(self, mode: str) -> io.BufferedReader:
        return self._file


def _get_pinned(url: str, trust: TrustSettings) -> tuple[int, bytes]:
    """GET over one TLS connection whose served chain is the one compared with the pins.

    Chosen over "read the thumbprint, then fetch again with verify=False": on that second
    connection a different server could answer. Here the chain checked and the bytes read
    come from the same handshake; http.client parses the response (framing, chunking).
    """
    deadline = _Deadline(url, trust.timeout)
    sock, connection = _open_tls(url, deadline)
    try:
        chain = _peer_chain(url, connection)
        top = _thumbprint(chain[-1])
        if not trust.lists(top):
            raise FetchFailure(
                "thumbprint_mismatch", url,
                f"served chain's top certificate has thumbprint {top}, provider lists "
                f"{list(trust.thumbprints)}")
        _check_pinned_chain(url, chain)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
                   f"User-Agent: {USER_AGENT}\r\nAccept: application/json\r\n"
                   "Connection: close\r\n\r\n").encode("ascii")
        while request:
            sent = _retry(sock, lambda data=request: connection.send(data), deadline)
            request = request[sent:]
        shim: Any = _ConnectionAsSocket(_TLSReader(sock, connection, deadline))
        response = http.client.HTTPResponse(shim, method="GET")
        response.begin()
        body = response.read(MAX_DOCUMENT_BYTES + 1)
        return response.status, body
    except (SSL.Error, OSError, http.client.HTTPException) as exc:
        raise FetchFailure("unreachable", url, f"reading the response failed: {exc!r}") from exc
    finally:
        _close(connection, sock)


# --- the verified path (requests) ------------------------------------------------------------


def _read_capped(chunks: Iterable[bytes], deadline: _Deadline) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        deadline.remaining()  # a server trickling bytes must not stretch the 5 s
        if len(body) > MAX_DOCUMENT_BYTES:
            break
    return bytes(body)


def _get_verified(session: requests.Session, url: str, trust: TrustSettings) -> tuple[int, bytes]:
    deadline = _Deadline(url, trust.timeout)
    try:
        # verify per request: a Session-level value would lose to REQUESTS_CA_BUNDLE
        with session.get(url, verify=trust.ca_bundle or True, timeout=trust.timeout,
                         allow_redirects=False, stream=True,
                         headers={"Accept": "application/json"}) as response:
            return response.status_code, _read_capped(response.iter_content(65536), deadline)
    except requests.exceptions.SSLError as exc:
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                message = getattr(cause, "verify_message", "") or str(cause)
                raise _VerifyFailed(f"certificate verify failed: {message}") from exc
        raise FetchFailure("unreachable", url, f"TLS handshake failed: {_reason(exc)}") from exc
    except requests.Timeout as exc:
        raise FetchFailure("unreachable", url,
                           f"no answer within {trust.timeout:g} s ({_reason(exc)})") from exc
    except requests.RequestException as exc:
        raise FetchFailure("unreachable", url, _reason(exc)) from exc


def _get_json(session: requests.Session, url: str, trust: TrustSettings) -> tuple[Any, str]:
    """GET one document, trusting the roots, else the thumbprints; returns (doc, via)."""
    _host_port(url)
    try:
        status, body = _get_verified(session, url, trust)
        via = "trusted-ca"
    except _VerifyFailed as failed:
        if not trust.thumbprints:
            raise FetchFailure("untrusted", url, str(failed)) from failed
        status, body = _get_pinned(url, trust)
        via = "thumbprint"
    if status != 200:
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise FetchFailure("unreachable", url, f"HTTP {status}{hint}")
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchFailure("bad_document", url, f"larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body), via
    except ValueError as exc:
        raise FetchFailure("unreachable", url, f"the response is not JSON: {exc}") from exc


def fetch_keys(issuer_url: str, trust: TrustSettings,
               documents_url: str | None = None) -> FetchedKeys:
    """Discovery, then its jwks_uri; each host trusted on its own (roots, else thumbprints).

    `documents_url`: where the issuer's documents are fetched from when its own URL is not
    reachable from here (a cluster's in-cluster issuer, mirrored by crossfed); the discovery
    document must still name `issuer_url`.
    """
    discovery_url = (documents_url or issuer_url).removesuffix("/") + DISCOVERY_SUFFIX
    with requests.Session() as session:
        session.trust_env = False  # no proxy or CA bundle from the environment: trust is explicit
        session.headers["User-Agent"] = USER_AGENT
        discovery, via = _get_json(session, discovery_url, trust)
        if not isinstance(discovery, dict) or not isinstance(discovery.get("jwks_uri"), str):
            raise FetchFailure("bad_document", discovery_url,
                               "the discovery document has no jwks_uri")
        if discovery.get("issuer") != issuer_url:
            # UNDOC whether AWS compares these; OIDC Discovery 4.3 requires it, and Entra does.
            raise FetchFailure("bad_document", discovery_url,
                               f"discovery says issuer {discovery.get('issuer')!r}, "
                               f"expected {issuer_url!r} (exact match, trailing slash counts)")
        jwks_uri = discovery["jwks_uri"]
        if not jwks_uri.startswith("https://"):
            raise FetchFailure("bad_document", discovery_url,
                               f"jwks_uri {jwks_uri!r} is not an https:// URL")
        jwks, jwks_via = _get_json(session, jwks_uri, trust)
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise FetchFailure("bad_document", jwks_uri, "the JWKS has no 'keys' list")
    return FetchedKeys(issuer_url, jwks_uri, {"keys": jwks["keys"][:MAX_KEYS]},
                       "thumbprint" if "thumbprint" in (via, jwks_via) else "trusted-ca")


class KeyCache:
    """FetchedKeys per (issuer, trust) for `ttl` seconds (CACHE_TTL: UNDOC at AWS and Entra).

    `refresh=True` (a token names a kid the cached JWKS lacks: rotation) refetches unless the
    last fetch is under `min_refetch_interval` old, so tokens with made-up kids cannot make the
    verifier hammer the issuer. Failures are not cached. Concurrent misses for one key wait
    for a single fetch (a burst of STS calls fetches once); other keys are not held up.
    """

    def __init__(self, ttl: float = CACHE_TTL, min_refetch_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.min_refetch_interval, self.clock = ttl, min_refetch_interval, clock
        self.fetch_count = 0  # fetch attempts, failed ones included
        self._entries: dict[tuple[str, TrustSettings], tuple[float, FetchedKeys]] = {}
        self._key_locks: dict[tuple[str, TrustSettings], threading.Lock] = {}
        self._lock = threading.Lock()
        # issuer URL -> base URL its documents are mirrored at (crossfed's extension: a real
        # verifier only ever fetches from the issuer URL itself)
        self.locations: dict[str, str] = {}

    def register_location(self, issuer_url: str, documents_url: str) -> None:
        with self._lock:
            self.locations[issuer_url] = documents_url
            for key in [k for k in self._entries if k[0] == issuer_url]:
                del self._entries[key]

    def _cached(self, key: tuple[str, TrustSettings], refresh: bool) -> FetchedKeys | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self.clock() - entry[0]
        if age < self.min_refetch_interval or (not refresh and age < self.ttl):
            return entry[1]
        return None

    def get(self, issuer_url: str, trust: TrustSettings, refresh: bool = False) -> FetchedKeys:
        key = (issuer_url, trust)
        with self._lock:
            cached = self._cached(key, refresh)
            if cached is not None:
                return cached
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:  # another thread may have fetched while this one waited
                cached = self._cached(key, refresh)
                if cached is not None:
                    return cached
                self.fetch_count += 1
            keys = fetch_keys(issuer_url, trust, self.locations.get(issuer_url))
            with self._lock:
                self._entries[key] = (self.clock(), keys)
            return keys

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
