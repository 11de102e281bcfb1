"""How a verifier fetches an issuer's keys: real HTTPS servers, trusted and untrusted CAs."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from crossfed.https_server import HTTPSServer
from crossfed.issuer.issuer import JWKS_PATH, Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.server import DISCOVERY_PATH, IssuerApp, IssuerServer
from crossfed.oidc.fetch import (
    MAX_KEYS,
    FetchedKeys,
    FetchFailure,
    KeyCache,
    TrustSettings,
    fetch_keys,
    served_chain_thumbprints,
    top_thumbprint,
)
from crossfed.pki import RunCA, ServerTLS

pytestmark = [pytest.mark.local]

# One key for every issuer here: RSA generation is the slow part, and no test compares keys
# across issuers.
KEY = SigningKey.generate()


@pytest.fixture(scope="module")
def trusted_ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(tmp_path_factory.mktemp("trusted"), "trusted CA")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> RunCA:
    return RunCA(tmp_path_factory.mktemp("other"), "other CA")


@pytest.fixture
def third_ca(tmp_path: Path) -> RunCA:
    return RunCA(tmp_path / "third", "third CA")


@pytest.fixture
def servers() -> Iterator[list[Any]]:
    """Servers a test starts for itself; stopped at teardown even when the test fails."""
    started: list[Any] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def issuer_on(servers: list[Any]) -> Callable[[RunCA], IssuerServer]:
    def start(ca: RunCA) -> IssuerServer:
        server = IssuerServer(ca, key=KEY).start()
        servers.append(server)
        return server

    return start


@pytest.fixture(scope="module")
def shared_issuers(trusted_ca: RunCA, other_ca: RunCA) -> Iterator[dict[str, IssuerServer]]:
    # Shared by the module: stopping a server costs ~0.5 s. Tests change them only through
    # monkeypatch, and the fetch counters are reset per test.
    issuers = {"trusted": IssuerServer(trusted_ca, key=KEY).start(),
               "other": IssuerServer(other_ca, key=KEY).start()}
    yield issuers
    for server in issuers.values():
        server.stop()


@pytest.fixture
def trusted_issuer(shared_issuers: dict[str, IssuerServer]) -> IssuerServer:
    shared_issuers["trusted"].app.fetches.clear()
    return shared_issuers["trusted"]


@pytest.fixture
def other_issuer(shared_issuers: dict[str, IssuerServer]) -> IssuerServer:
    shared_issuers["other"].app.fetches.clear()
    return shared_issuers["other"]


def trust(ca: RunCA, *thumbprints: str, timeout: float = 5.0) -> TrustSettings:
    return TrustSettings(ca_bundle=str(ca.bundle_path), thumbprints=thumbprints,
                         timeout=timeout)


def failure(issuer_url: str, settings: TrustSettings) -> FetchFailure:
    with pytest.raises(FetchFailure) as caught:
        fetch_keys(issuer_url, settings)
    return caught.value


def serve_issuer_with(servers: list[Any], context: ServerTLS) -> HTTPSServer:
    """An issuer behind a hand-made TLS context (chains IssuerServer would not serve)."""
    https = HTTPSServer(context)
    https.start(IssuerApp(Issuer(https.url, KEY)))
    servers.append(https)
    return https


def tls_context(directory: Path, label: str, chain_pem: bytes, key_pem: bytes) -> ServerTLS:
    chain_path, key_path = directory / f"{label}.crt", directory / f"{label}.key"
    chain_path.write_bytes(chain_pem)
    key_path.write_bytes(key_pem)
    context = ServerTLS(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(chain_path), str(key_path))
    context.chain_path, context.key_path = chain_path, key_path
    return context


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}"


# --- trusted roots -------------------------------------------------------------------------


def test_issuer_with_a_trusted_certificate_is_fetched_via_the_ca(
        trusted_ca: RunCA, trusted_issuer: IssuerServer) -> None:
    keys = fetch_keys(trusted_issuer.url, trust(trusted_ca))
    assert keys == FetchedKeys(trusted_issuer.url, trusted_issuer.url + JWKS_PATH,
                               trusted_issuer.issuer.jwks(), "trusted-ca")
    assert [k["kid"] for k in keys.jwks["keys"]] == [KEY.kid]
    assert trusted_issuer.app.fetches == {DISCOVERY_PATH: 1, JWKS_PATH: 1}


def test_system_roots_do_not_trust_the_run_ca(trusted_issuer: IssuerServer) -> None:
    # ca_bundle=None: public roots, which know nothing of a run's CA (Entra's situation)
    found = failure(trusted_issuer.url, TrustSettings(ca_bundle=None))
    assert found.kind == "untrusted"
    assert found.url == trusted_issuer.url + DISCOVERY_PATH


def test_only_the_first_100_keys_are_kept(monkeypatch: pytest.MonkeyPatch, trusted_ca: RunCA,
                                          trusted_issuer: IssuerServer) -> None:
    published = [{"kty": "RSA", "kid": f"k{i}"} for i in range(150)]
    monkeypatch.setattr(trusted_issuer.issuer, "jwks", lambda: {"keys": published})
    keys = fetch_keys(trusted_issuer.url, trust(trusted_ca))
    assert MAX_KEYS == 100
    assert keys.jwks["keys"] == published[:100]


# --- untrusted certificates and thumbprints -----------------------------------------------


def test_untrusted_certificate_without_thumbprints_fails_untrusted(
        trusted_ca: RunCA, other_issuer: IssuerServer) -> None:
    found = failure(other_issuer.url, trust(trusted_ca))
    assert found.kind == "untrusted"
    assert found.url == other_issuer.url + DISCOVERY_PATH
    assert found.detail == ("certificate verify failed: "
                            "self-signed certificate in certificate chain")
    assert other_issuer.app.fetches == {}  # nothing was read from a server we do not trust


def test_listed_thumbprint_of_the_top_certificate_is_accepted(
        trusted_ca: RunCA, other_ca: RunCA, other_issuer: IssuerServer) -> None:
    assert top_thumbprint(other_issuer.url) == other_ca.thumbprint
    # ThumbprintList entries compare case-insensitively
    keys = fetch_keys(other_issuer.url, trust(trusted_ca, "0" * 40, other_ca.thumbprint.upper()))
    assert keys.via == "thumbprint"
    assert keys.jwks == other_issuer.issuer.jwks()
    assert keys.jwks_uri == other_issuer.url + JWKS_PATH
    # both documents were really read over the pinned connections
    assert other_issuer.app.fetches == {DISCOVERY_PATH: 1, JWKS_PATH: 1}


def test_wrong_thumbprint_fails_thumbprint_mismatch(
        trusted_ca: RunCA, other_ca: RunCA, other_issuer: IssuerServer) -> None:
    found = failure(other_issuer.url, trust(trusted_ca, trusted_ca.thumbprint))
    assert found.kind == "thumbprint_mismatch"
    assert found.url == other_issuer.url + DISCOVERY_PATH
    assert other_ca.thumbprint in found.detail and trusted_ca.thumbprint in found.detail
    assert other_issuer.app.fetches == {}


def test_pinned_ca_appended_to_a_foreign_chain_is_refused(
        tmp_path: Path, servers: list[Any], trusted_ca: RunCA, other_ca: RunCA) -> None:
    # An impostor with its own CA serves leaf + the (public) pinned CA certificate: the top
    # thumbprint matches, but the leaf does not descend from it.
    impostor = trustme.CA()
    leaf = impostor.issue_cert("127.0.0.1", "localhost")
    context = tls_context(tmp_path, "impostor",
                          leaf.cert_chain_pems[0].bytes() + other_ca.bundle_path.read_bytes(),
                          leaf.private_key_pem.bytes())
    https = serve_issuer_with(servers, context)
    assert top_thumbprint(https.url) == other_ca.thumbprint
    found = failure(https.url, trust(trusted_ca, other_ca.thumbprint))
    assert found.kind == "thumbprint_mismatch"
    assert "does not chain to it" in found.detail


def test_pinned_chain_must_name_the_host(servers: list[Any], trusted_ca: RunCA,
                                         other_ca: RunCA) -> None:
    https = serve_issuer_with(servers, other_ca.server_context("elsewhere", "other.example"))
    found = failure(https.url, trust(trusted_ca, other_ca.thumbprint))
    assert found.kind == "thumbprint_mismatch"
    assert "not valid for host '127.0.0.1'" in found.detail


def test_each_host_is_checked_on_its_own(
        monkeypatch: pytest.MonkeyPatch, issuer_on: Callable[[RunCA], IssuerServer],
        trusted_ca: RunCA, other_ca: RunCA, third_ca: RunCA) -> None:
    # discovery on a host of one CA, jwks_uri on a host of another: IAM needs both thumbprints
    discovery_host, jwks_host = issuer_on(other_ca), issuer_on(third_ca)
    document = {**discovery_host.issuer.discovery_document(),
                "jwks_uri": jwks_host.issuer.jwks_uri}
    monkeypatch.setattr(discovery_host.issuer, "discovery_document", lambda: document)

    found = failure(discovery_host.url, trust(trusted_ca, other_ca.thumbprint))
    assert (found.kind, found.url) == ("thumbprint_mismatch", jwks_host.issuer.jwks_uri)
    assert third_ca.thumbprint in found.detail

    keys = fetch_keys(discovery_host.url,
                      trust(trusted_ca, other_ca.thumbprint, third_ca.thumbprint))
    assert keys.via == "thumbprint"
    assert keys.jwks == jwks_host.issuer.jwks()
    assert jwks_host.app.fetches[JWKS_PATH] == 1


def test_trusted_discovery_with_an_untrusted_jwks_host(
        monkeypatch: pytest.MonkeyPatch, trusted_ca: RunCA, other_ca: RunCA,
        trusted_issuer: IssuerServer, other_issuer: IssuerServer) -> None:
    document = {**trusted_issuer.issuer.discovery_document(),
                "jwks_uri": other_issuer.issuer.jwks_uri}
    monkeypatch.setattr(trusted_issuer.issuer, "discovery_document", lambda: document)
    found = failure(trusted_issuer.url, trust(trusted_ca))
    assert (found.kind, found.url) == ("untrusted", other_issuer.issuer.jwks_uri)
    keys = fetch_keys(trusted_issuer.url, trust(trusted_ca, other_ca.thumbprint))
    assert keys.via == "thumbprint"  # one pinned host is enough to say so


def test_served_chain_is_leaf_then_ca(other_ca: RunCA, other_issuer: IssuerServer) -> None:
    chain = served_chain_thumbprints(other_issuer.url)
    leaf_pem = ssl.get_server_certificate(("127.0.0.1", int(other_issuer.url.rsplit(":", 1)[1])))
    leaf = hashlib.sha1(ssl.PEM_cert_to_DER_cert(leaf_pem)).hexdigest()
    assert chain == [leaf, other_ca.thumbprint]
    assert leaf != other_ca.thumbprint


# --- unreachable, slow and malformed issuers -------------------------------------------------


def test_stopped_server_and_closed_port_fail_unreachable_quickly(
        trusted_ca: RunCA, issuer_on: Callable[[RunCA], IssuerServer]) -> None:
    stopped = issuer_on(trusted_ca)
    stopped.stop()
    for url in (stopped.url, closed_port_url()):
        started = time.monotonic()
        found = failure(url, trust(trusted_ca, trusted_ca.thumbprint))
        assert time.monotonic() - started < 2
        assert (found.kind, found.url) == ("unreachable", url + DISCOVERY_PATH)
        assert found.detail == "connection refused"
        with pytest.raises(FetchFailure) as caught:
            top_thumbprint(url)
        assert caught.value.kind == "unreachable"


def test_server_that_never_answers_fails_within_the_timeout(trusted_ca: RunCA) -> None:
    with socket.socket() as listener:  # accepts TCP (backlog) but never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        for fetch in (lambda: fetch_keys(url, trust(trusted_ca, timeout=0.5)),
                      lambda: served_chain_thumbprints(url, timeout=0.5)):
            started = time.monotonic()
            with pytest.raises(FetchFailure) as caught:
                fetch()
            assert time.monotonic() - started < 2
            assert caught.value.kind == "unreachable"
            assert "within 0.5 s" in caught.value.detail


def test_trickling_answer_counts_against_one_deadline(
        servers: list[Any], trusted_ca: RunCA) -> None:
    # every chunk comes well within the per-read timeout; the whole answer does not
    def trickle(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        for _ in range(20):
            yield b" "
            time.sleep(0.2)
        yield b"{}"

    https = HTTPSServer(trusted_ca.server_context("trickle", "127.0.0.1")).start(trickle)
    servers.append(https)
    started = time.monotonic()
    found = failure(https.url, trust(trusted_ca, timeout=1.0))
    assert time.monotonic() - started < 2
    assert found.kind == "unreachable" and "within 1 s" in found.detail


def test_missing_document_fails_unreachable(trusted_ca: RunCA,
                                            trusted_issuer: IssuerServer) -> None:
    found = failure(trusted_issuer.url + "/elsewhere", trust(trusted_ca))
    assert (found.kind, found.detail) == ("unreachable", "HTTP 404")


def test_discovery_issuer_must_equal_the_expected_issuer(
        trusted_ca: RunCA, trusted_issuer: IssuerServer) -> None:
    # a trailing slash reaches the same discovery URL but names another issuer
    found = failure(trusted_issuer.url + "/", trust(trusted_ca))
    assert (found.kind, found.url) == ("bad_document", trusted_issuer.url + DISCOVERY_PATH)
    assert repr(trusted_issuer.url) in found.detail


@pytest.mark.parametrize("broken", ["discovery_without_jwks_uri", "jwks_without_keys"])
def test_incomplete_documents_fail_bad_document(
        monkeypatch: pytest.MonkeyPatch, broken: str, trusted_ca: RunCA,
        trusted_issuer: IssuerServer) -> None:
    issuer = trusted_issuer.issuer
    if broken == "discovery_without_jwks_uri":
        monkeypatch.setattr(issuer, "discovery_document", lambda: {"issuer": issuer.url})
        failed_url = issuer.url + DISCOVERY_PATH
    else:
        monkeypatch.setattr(issuer, "jwks", lambda: {"kid": "not-a-key-set"})
        failed_url = issuer.jwks_uri
    found = failure(issuer.url, trust(trusted_ca))
    assert (found.kind, found.url) == ("bad_document", failed_url)


# --- the cache ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_fetches_once_for_repeated_gets(trusted_ca: RunCA,
                                              trusted_issuer: IssuerServer) -> None:
    cache = KeyCache()
    first = cache.get(trusted_issuer.url, trust(trusted_ca))
    for _ in range(5):
        assert cache.get(trusted_issuer.url, trust(trusted_ca)) is first
    assert cache.fetch_count == 1
    assert trusted_issuer.app.fetches == {DISCOVERY_PATH: 1, JWKS_PATH: 1}


def test_cache_refetches_after_the_ttl(trusted_ca: RunCA,
                                       trusted_issuer: IssuerServer) -> None:
    clock = FakeClock()
    cache = KeyCache(ttl=60, clock=clock)
    cache.get(trusted_issuer.url, trust(trusted_ca))
    clock.now += 59
    cache.get(trusted_issuer.url, trust(trusted_ca))
    assert cache.fetch_count == 1
    clock.now += 2
    cache.get(trusted_issuer.url, trust(trusted_ca))
    assert cache.fetch_count == 2
    assert trusted_issuer.app.fetches[JWKS_PATH] == 2


def test_refresh_respects_the_minimum_interval_and_sees_a_rotated_key(
        monkeypatch: pytest.MonkeyPatch, trusted_ca: RunCA,
        trusted_issuer: IssuerServer) -> None:
    clock = FakeClock()
    cache = KeyCache(min_refetch_interval=1.0, clock=clock)
    cache.get(trusted_issuer.url, trust(trusted_ca))
    rotated = SigningKey.generate()
    monkeypatch.setattr(trusted_issuer.issuer, "extra_public_keys", [rotated])

    clock.now += 0.5  # an unknown kid just after a fetch: no new fetch
    keys = cache.get(trusted_issuer.url, trust(trusted_ca), refresh=True)
    assert cache.fetch_count == 1
    assert trusted_issuer.app.fetches[JWKS_PATH] == 1  # what the issuer server received
    assert rotated.kid not in [k["kid"] for k in keys.jwks["keys"]]

    clock.now += 1.0
    keys = cache.get(trusted_issuer.url, trust(trusted_ca), refresh=True)
    assert cache.fetch_count == 2
    assert trusted_issuer.app.fetches[JWKS_PATH] == 2  # exactly one refetch reached it
    assert rotated.kid in [k["kid"] for k in keys.jwks["keys"]]
    assert cache.get(trusted_issuer.url, trust(trusted_ca)) is keys  # the refetch is cached
    assert trusted_issuer.app.fetches[JWKS_PATH] == 2


def test_failures_are_not_cached(monkeypatch: pytest.MonkeyPatch, trusted_ca: RunCA,
                                 trusted_issuer: IssuerServer) -> None:
    cache = KeyCache()
    with monkeypatch.context() as patch:
        patch.setattr(trusted_issuer.issuer, "discovery_document", lambda: {"issuer": "x"})
        for attempt in (1, 2):
            with pytest.raises(FetchFailure):
                cache.get(trusted_issuer.url, trust(trusted_ca))
            assert cache.fetch_count == attempt
    keys = cache.get(trusted_issuer.url, trust(trusted_ca))
    assert keys.jwks == trusted_issuer.issuer.jwks()
    assert cache.get(trusted_issuer.url, trust(trusted_ca)) is keys
    assert cache.fetch_count == 3


def test_cache_keys_on_the_trust_settings(trusted_ca: RunCA, other_ca: RunCA,
                                          other_issuer: IssuerServer) -> None:
    cache = KeyCache()
    with pytest.raises(FetchFailure) as caught:
        cache.get(other_issuer.url, trust(trusted_ca))
    assert caught.value.kind == "untrusted"
    # another provider (with thumbprints) for the same issuer is its own entry
    assert cache.get(other_issuer.url, trust(trusted_ca, other_ca.thumbprint)).via == "thumbprint"
    with pytest.raises(FetchFailure):
        cache.get(other_issuer.url, trust(trusted_ca))


def test_a_burst_of_concurrent_gets_fetches_once(trusted_ca: RunCA,
                                                 trusted_issuer: IssuerServer) -> None:
    cache = KeyCache()
    barrier = threading.Barrier(16)
    results: list[FetchedKeys] = []
    errors: list[BaseException] = []

    def verify() -> None:
        barrier.wait()
        try:
            results.append(cache.get(trusted_issuer.url, trust(trusted_ca)))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=verify) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == [] and len(results) == 16
    assert cache.fetch_count == 1
    assert trusted_issuer.app.fetches == {DISCOVERY_PATH: 1, JWKS_PATH: 1}
