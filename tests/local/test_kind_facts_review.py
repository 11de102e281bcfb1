"""Review against shared/reference/kind-and-charts-facts.md: the places where the kind
environment differed from the facts, each pinned by a test that failed before the fix.

No Docker or kind here: kind_config is run for real, docker/kind/helm/kubectl go to the
FakeTools of test_kind_environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_kind_environment import IPAM, FakeTools, environment

from crossfed.cluster.kind import kind_config, kind_network, network_gateway
from crossfed.environments.kind import KindSetupError, provider_problem
from crossfed.issuer.keys import SigningKey

pytestmark = [pytest.mark.local]

ISSUER = "https://127.0.0.1:8443"
JWKS = ISSUER + "/openid/v1/jwks"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return SigningKey.generate().write(tmp_path_factory.mktemp("keys"))


def config_with_image(key_pair: tuple[Path, Path], image: str) -> dict:
    private, public = key_pair
    return kind_config("crossfed", private, public, ISSUER, JWKS, [ISSUER], node_image=image)


# §2: "Tags are rebuilt per kind release (v1.33.1 differs in v0.28/v0.29): pin @sha256".
@pytest.mark.parametrize("image", ["kindest/node:v1.36.1", "docker.io/kindest/node:v1.35.0",
                                   "kindest/node"])
def test_a_kindest_node_image_without_digest_is_refused(key_pair, image) -> None:
    with pytest.raises(ValueError, match="must be pinned by digest"):
        config_with_image(key_pair, image)


# §2 "Default node image per release" table, rows v0.31.0 and v0.32.0.
FACTS_V0_31_0 = ("kindest/node:v1.35.0@sha256:"
                 "452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f")
FACTS_V0_32_0 = ("kindest/node:v1.36.1@sha256:"
                 "3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5")


@pytest.mark.parametrize("image", [FACTS_V0_32_0, FACTS_V0_31_0,
                                   "localhost:5000/kindest/node:dev", "my/node:v1.36.1"])
def test_digest_pinned_or_local_node_images_are_kept(key_pair, image) -> None:
    assert config_with_image(key_pair, image)["nodes"][0]["image"] == image


def test_the_refusal_offers_the_kind_releases_defaults_from_the_facts(key_pair) -> None:
    """What a user is told to pin instead of a bare tag: the digests of the facts' table."""
    with pytest.raises(ValueError, match="must be pinned by digest") as caught:
        config_with_image(key_pair, "kindest/node:v1.36.1")
    assert f"v0.31.0: {FACTS_V0_31_0}" in str(caught.value)
    assert f"v0.32.0: {FACTS_V0_32_0}" in str(caught.value)


# §3: KIND_EXPERIMENTAL_DOCKER_NETWORK=<name> puts the nodes on another network; the gateway
# pods reach the host at is that network's, not `kind`'s.
def test_kind_network_follows_kinds_experimental_network_variable() -> None:
    assert kind_network({}) == "kind"
    assert kind_network({"KIND_EXPERIMENTAL_DOCKER_NETWORK": ""}) == "kind"
    assert kind_network({"KIND_EXPERIMENTAL_DOCKER_NETWORK": "crossfed-net"}) == "crossfed-net"


def test_the_environment_inspects_the_network_kind_uses(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", "crossfed-net")
    fake = FakeTools()
    env = environment(tmp_path, fake).start(tmp_path / "pki")
    try:
        [inspect] = [c for c in fake.of("docker") if c[:2] == ["network", "inspect"]]
        assert inspect[2] == "crossfed-net"
        assert env.bridge == "172.18.0.1"
    finally:
        env.stop()


def test_network_gateway_defaults_to_kinds_network(monkeypatch) -> None:
    monkeypatch.delenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", raising=False)
    calls: list[list[str]] = []

    def runner(argv, **_):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, json.dumps(IPAM), "")

    assert network_gateway("docker", runner=runner) == "172.18.0.1"
    assert calls[0][:4] == ["docker", "network", "inspect", "kind"]


# §2: KIND_EXPERIMENTAL_PROVIDER=podman|nerdctl|finch|nerdctl.lima puts the nodes in other
# containers; the environment's docker inspect/save/network steps would then fail after
# kind created a cluster. Refused before anything is created.
@pytest.mark.parametrize("provider", ["podman", "nerdctl", "finch", "nerdctl.lima"])
def test_a_non_docker_kind_provider_is_refused_before_anything_is_created(
        tmp_path, monkeypatch, provider) -> None:
    monkeypatch.setenv("KIND_EXPERIMENTAL_PROVIDER", provider)
    fake = FakeTools()
    env = environment(tmp_path, fake)
    try:
        with pytest.raises(KindSetupError, match=f"KIND_EXPERIMENTAL_PROVIDER={provider}"):
            env.start(tmp_path / "pki")
    finally:
        env.stop()  # without the check, start() serves the issuer: stop it
    assert fake.calls == [] and fake.clusters == {}


def test_docker_or_an_unknown_provider_value_is_kinds_docker_provider() -> None:
    assert provider_problem({}) is None
    assert provider_problem({"KIND_EXPERIMENTAL_PROVIDER": "docker"}) is None
    assert provider_problem({"KIND_EXPERIMENTAL_PROVIDER": "bogus"}) is None  # kind ignores it
