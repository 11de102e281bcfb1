"""Fetching an issuer's discovery document and JWKS over HTTPS, as a cloud verifier does.

Trust: the verifier's roots first (AWS: its public-root library; here the run's CA); if the
chain is not trusted and the caller knows thumbprints (IAM's ThumbprintList), the top
certificate the host serves is compared with them, per host (discovery and JWKS hosts alike).
"""

from __future__ import annotations

import select
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from OpenSSL import SSL, crypto

from crossfed.pki import sha1_thumbprint

MAX_KEYS = 100  # AWS and Entra use at most the first 100 keys of a JWKS
CACHE_TTL = 60.0  # UNDOC at AWS and Entra: ours is one minute, refreshed early on an unknown kid


class FetchFailure(Exception):
    def __init__(self, kind: str, url: str, detail: str) -> None:
        super().__init__(f"{kind}: {url}: {detail}")
        self.kind, self.url, self.detail = kind, url, detail


@dataclass(frozen=True)
class TrustSettings:
    ca_bundle: str | None
    thumbprints: tuple[str, ...] = ()
    timeout: float = 5.0


@dataclass(frozen=True)
class FetchedKeys:
    issuer: str
    jwks_uri: str
    jwks: dict[str, Any]
    via: str


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FetchFailure("unreachable", url, "not an https:// URL")
    return parts.hostname, parts.port or 443


def served_chain_thumbprints(url: str, timeout: float = 5.0) -> list[str]:
    """SHA-1 of each certificate the server presents, in served order (no verification).

    pyOpenSSL, because the standard library only exposes the peer's chain from Python 3.13.
    """
    host, port = _host_port(url)
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise FetchFailure("unreachable", url, str(exc)) from exc
    connection = SSL.Connection(context, sock)
    try:
        connection.set_tlsext_host_name(host.encode())
        connection.set_connect_state()
        deadline = time.monotonic() + timeout
        while True:  # a socket with a timeout is non-blocking to OpenSSL: wait for each read
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                    raise FetchFailure("unreachable", url, "TLS handshake timed out") from None
        chain = connection.get_peer_cert_chain() or []
        return [sha1_thumbprint(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))
                for cert in chain]
    except (SSL.Error, OSError) as exc:
        raise FetchFailure("unreachable", url, f"TLS handshake failed: {exc}") from exc
    finally:
        connection.close()


def top_thumbprint(url: str, timeout: float = 5.0) -> str:
    """What IAM pins: the last certificate of the served chain (`openssl s_client -showcerts`)."""
    chain = served_chain_thumbprints(url, timeout)
    if not chain:
        raise FetchFailure("unreachable", url, "the server presented no certificate")
    return chain[-1]


def _get_json(url: str, trust: TrustSettings) -> tuple[Any, str]:
    """GET a JSON document, trusting the roots, else the thumbprints; returns (doc, via)."""
    _host_port(url)
    via = "trusted-ca"
    verify: str | bool = trust.ca_bundle or True
    try:
        response = requests.get(url, verify=verify, timeout=trust.timeout,
                                allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        if not trust.thumbprints:
            raise FetchFailure("untrusted", url, f"certificate verify failed: {exc}") from exc
        served = top_thumbprint(url, trust.timeout)
        if served.lower() not in {t.lower() for t in trust.thumbprints}:
            raise FetchFailure(
                "thumbprint_mismatch", url,
                f"served chain's top certificate has thumbprint {served}, provider lists "
                f"{list(trust.thumbprints)}") from exc
        response = _get_pinned(url, trust.timeout)
        via = "thumbprint"
    except requests.RequestException as exc:
        raise FetchFailure("unreachable", url, str(exc)) from exc
    if response.status_code != 200:
        raise FetchFailure("unreachable", url, f"HTTP {response.status_code}")
    try:
        return response.json(), via
    except ValueError as exc:
        raise FetchFailure("unreachable", url, "the response is not JSON") from exc


def _get_pinned(url: str, timeout: float) -> requests.Response:
    """GET without chain verification, after the caller compared the served top thumbprint.

    The chain is read on one connection and the document on another; for a stand-in on
    loopback that window does not matter, and it keeps this to plain requests.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return requests.get(url, verify=False, timeout=timeout, allow_redirects=False)


def fetch_keys(issuer_url: str, trust: TrustSettings) -> FetchedKeys:
    """Discovery, then its jwks_uri; each host trusted on its own (roots, else thumbprints)."""
    discovery_url = issuer_url.removesuffix("/") + "/.well-known/openid-configuration"
    discovery, via = _get_json(discovery_url, trust)
    if not isinstance(discovery, dict) or not discovery.get("jwks_uri"):
        raise FetchFailure("bad_document", discovery_url, "no jwks_uri in the discovery document")
    if discovery.get("issuer") != issuer_url:
        raise FetchFailure("bad_document", discovery_url,
                           f"discovery says issuer {discovery.get('issuer')!r}, "
                           f"the token says {issuer_url!r}")
    jwks_uri = str(discovery["jwks_uri"])
    jwks, jwks_via = _get_json(jwks_uri, trust)
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise FetchFailure("bad_document", jwks_uri, "the JWKS has no 'keys' list")
    return FetchedKeys(issuer_url, jwks_uri, {"keys": jwks["keys"][:MAX_KEYS]},
                       "thumbprint" if "thumbprint" in (via, jwks_via) else "trusted-ca")


class KeyCache:
    """FetchedKeys per (issuer, trust) for CACHE_TTL seconds; failures are never cached."""

    def __init__(self, ttl: float = CACHE_TTL, min_refetch_interval: float = 1.0) -> None:
        self.ttl, self.min_refetch_interval = ttl, min_refetch_interval
        self.fetch_count = 0
        self._entries: dict[tuple[str, TrustSettings], tuple[float, FetchedKeys]] = {}
        self._lock = threading.Lock()

    def get(self, issuer_url: str, trust: TrustSettings, refresh: bool = False) -> FetchedKeys:
        key = (issuer_url, trust)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            fetched_at, keys = entry
            fresh = now - fetched_at < self.ttl
            too_soon = now - fetched_at < self.min_refetch_interval
            if (fresh and not refresh) or too_soon:
                return keys
        keys = fetch_keys(issuer_url, trust)
        with self._lock:
            self.fetch_count += 1
            self._entries[key] = (time.monotonic(), keys)
        return keys

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
