"""Finding kind/kubectl/helm/docker: flag > PATH > cache > verified download; no network here.

Downloads are served by an in-memory fake or a file:// URL with bytes whose SHA-256 the test
computes, so what is tested is the checksum verification and the caching, not the network.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from crossfed.cluster import kind as kind_module
from crossfed.cluster import tools
from crossfed.cluster.tools import (
    ChecksumMismatch,
    ToolMissing,
    ToolRelease,
    docker_available,
    find_tool,
    find_tools,
    install_release,
)

pytestmark = [pytest.mark.local, pytest.mark.cluster]

PLAT = ("linux", "amd64")
FAKE_BINARY = b"#!/bin/sh\necho fake kind\n"


def make_exe(directory: Path, name: str, body: bytes = b"#!/bin/sh\nexit 0\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(body)
    path.chmod(0o755)
    return path


class FakeFetch:
    """Serves fixed bytes for one URL and counts requests."""

    def __init__(self, url: str, data: bytes) -> None:
        self.url, self.data, self.calls = url, data, []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        assert url == self.url, f"unexpected URL {url}"
        return self.data


def no_fetch(url: str) -> bytes:
    raise AssertionError(f"no download expected, got a request for {url}")


def release_for(data: bytes, tool: str = "kind", member: str | None = None,
                url: str = "https://example.invalid/{version}/{tool}-{os}-{arch}") -> ToolRelease:
    return ToolRelease(tool, "v9.9.9", url.replace("{tool}", tool),
                       {PLAT: hashlib.sha256(data).hexdigest()}, member=member)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# --- resolution order -----------------------------------------------------------------------

def test_explicit_path_wins_over_path_and_cache(tmp_path: Path) -> None:
    explicit = make_exe(tmp_path / "explicit", "my-kind")
    on_path = make_exe(tmp_path / "bin", "kind")
    cache = tmp_path / "cache"
    make_exe(cache / "kind-v0.32.0", "kind")
    found = find_tool("kind", explicit, path_env=str(on_path.parent), cache_dir=cache,
                      fetch=no_fetch)
    assert found == explicit.resolve()


def test_path_wins_over_cache(tmp_path: Path) -> None:
    on_path = make_exe(tmp_path / "bin", "kubectl")
    cache = tmp_path / "cache"
    make_exe(cache / f"kubectl-{tools.KUBECTL.version}", "kubectl")
    assert find_tool("kubectl", path_env=str(on_path.parent), cache_dir=cache,
                     fetch=no_fetch) == on_path


def test_cache_is_used_when_not_on_path(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached = make_exe(cache / f"helm-{tools.HELM.version}", "helm")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_tool("helm", path_env=str(empty), cache_dir=cache, fetch=no_fetch) == cached
    assert cached == tools.cached_path(tools.HELM, cache)


def test_default_cache_dir_is_under_the_home_cache() -> None:
    assert tools.default_cache_dir() == Path.home() / ".cache" / "crossfed" / "tools"
    assert tools.cached_path(tools.KIND).parts[-2:] == ("kind-v0.32.0", "kind")


def test_find_tools_takes_the_flag_values(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    for name in ("kind", "kubectl", "helm", "docker"):
        make_exe(bin_dir, name)
    explicit_helm = make_exe(tmp_path / "elsewhere", "helm3")
    found = find_tools({"helm": str(explicit_helm), "kind": None}, path_env=str(bin_dir),
                       cache_dir=tmp_path / "cache", fetch=no_fetch)
    assert found.helm == explicit_helm.resolve()
    assert (found.kind, found.kubectl, found.docker) == (
        bin_dir / "kind", bin_dir / "kubectl", bin_dir / "docker")


def test_find_tools_without_helm_neither_looks_for_nor_downloads_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    for name in ("kind", "kubectl", "docker"):  # no helm anywhere
        make_exe(bin_dir, name)
    found = find_tools({}, helm=False, path_env=str(bin_dir), cache_dir=tmp_path / "cache",
                       fetch=no_fetch)
    assert found.helm is None and found.kind == bin_dir / "kind"


# --- ToolMissing messages -------------------------------------------------------------------

@pytest.mark.parametrize("tool, flag", [("kind", "--crossfed-kind-bin"),
                                        ("kubectl", "--crossfed-kubectl-bin"),
                                        ("helm", "--crossfed-helm-bin")])
def test_explicit_path_that_is_not_executable_names_the_flag(tmp_path: Path, tool: str,
                                                             flag: str) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("x")
    for path in (tmp_path / "missing", plain):
        with pytest.raises(ToolMissing) as caught:
            find_tool(tool, path, fetch=no_fetch)
        message = str(caught.value)
        assert "\n" not in message
        assert flag in message and str(path) in message


def test_not_found_without_download_says_what_to_install_or_pass(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ToolMissing) as caught:
        find_tool("kind", path_env=str(empty), cache_dir=tmp_path / "cache", download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "install kind on PATH or pass --crossfed-kind-bin PATH" in message


def test_docker_is_never_downloaded(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ToolMissing) as caught:
        find_tool("docker", path_env=str(empty), cache_dir=tmp_path / "cache", fetch=no_fetch)
    assert str(caught.value) == ("docker: no docker binary on PATH; install Docker Engine "
                                 "on Linux and start it (Docker Desktop is not supported)")
    assert not (tmp_path / "cache").exists()


def test_unknown_checksum_is_refused_before_any_download(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ToolMissing) as caught:
        find_tool("kubectl", path_env=str(empty), cache_dir=tmp_path / "cache",
                  fetch=no_fetch, plat=("linux", "riscv64"))
    message = str(caught.value)
    assert message == (f"kubectl {tools.KUBECTL.version}: no pinned SHA-256 for linux/riscv64, "
                       "refusing to download it; install kubectl on PATH or pass "
                       "--crossfed-kubectl-bin PATH")
    assert not (tmp_path / "cache").exists()


# --- download, verification, cache ---------------------------------------------------------

def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    url = tools.KIND.url_for(PLAT)
    fetch = FakeFetch(url, b"these are not the published kind bytes")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ChecksumMismatch) as caught:
        find_tool("kind", path_env=str(empty), cache_dir=cache, fetch=fetch, plat=PLAT)
    message = str(caught.value)
    assert fetch.calls == [url]
    assert "\n" not in message and "refused, nothing cached" in message
    assert tools.KIND.sha256[PLAT] in message and "--crossfed-kind-bin" in message
    assert tree(cache) == []


def test_verified_download_is_cached_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    release = release_for(FAKE_BINARY)
    fetch = FakeFetch("https://example.invalid/v9.9.9/kind-linux-amd64", FAKE_BINARY)
    empty = tmp_path / "empty"
    empty.mkdir()
    kwargs = dict(path_env=str(empty), cache_dir=cache, fetch=fetch, plat=PLAT,
                  releases={"kind": release})
    first = find_tool("kind", **kwargs)
    second = find_tool("kind", **kwargs)
    assert first == second == cache / "kind-v9.9.9" / "kind"
    assert fetch.calls == ["https://example.invalid/v9.9.9/kind-linux-amd64"]
    assert first.read_bytes() == FAKE_BINARY
    assert stat.S_IMODE(first.stat().st_mode) == 0o755
    assert tree(cache) == ["kind-v9.9.9", "kind-v9.9.9/kind"]  # no staging left behind
    assert subprocess.run([str(first)], capture_output=True, text=True).stdout == "fake kind\n"


def test_install_when_another_worker_finished_first_keeps_theirs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    release = release_for(FAKE_BINARY)
    theirs = make_exe(cache / "kind-v9.9.9", "kind", b"#!/bin/sh\necho theirs\n")
    fetch = FakeFetch("https://example.invalid/v9.9.9/kind-linux-amd64", FAKE_BINARY)
    assert install_release(release, cache_dir=cache, fetch=fetch, plat=PLAT) == theirs
    assert tree(cache) == ["kind-v9.9.9", "kind-v9.9.9/kind"]


def helm_archive(member: str, body: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in ((member, body), ("linux-amd64/README.md", b"readme")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_helm_archive_is_verified_then_unpacked(tmp_path: Path) -> None:
    body = b"#!/bin/sh\necho helm\n"
    archive = helm_archive("linux-amd64/helm", body)
    release = release_for(archive, tool="helm", member="{os}-{arch}/helm",
                          url="https://example.invalid/helm-{version}-{os}-{arch}.tar.gz")
    fetch = FakeFetch("https://example.invalid/helm-v9.9.9-linux-amd64.tar.gz", archive)
    path = install_release(release, cache_dir=tmp_path, fetch=fetch, plat=PLAT)
    assert path == tmp_path / "helm-v9.9.9" / "helm"
    assert path.read_bytes() == body


def test_helm_archive_without_the_member_is_refused(tmp_path: Path) -> None:
    archive = helm_archive("darwin-arm64/helm", b"x")
    release = release_for(archive, tool="helm", member="{os}-{arch}/helm")
    fetch = FakeFetch("https://example.invalid/v9.9.9/helm-linux-amd64", archive)
    with pytest.raises(ToolMissing, match="has no regular file linux-amd64/helm"):
        install_release(release, cache_dir=tmp_path / "cache", fetch=fetch, plat=PLAT)
    assert tree(tmp_path / "cache") == []


def test_default_fetch_reads_a_file_url_and_refuses_plain_http(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / "v9.9.9"
    mirror.mkdir(parents=True)
    (mirror / "kind-linux-amd64").write_bytes(FAKE_BINARY)
    release = release_for(FAKE_BINARY, url=f"{(tmp_path / 'mirror').as_uri()}"
                                           "/{version}/{tool}-{os}-{arch}")
    path = install_release(release, cache_dir=tmp_path / "cache", plat=PLAT)  # real fetch_url
    assert path.read_bytes() == FAKE_BINARY
    with pytest.raises(ToolMissing, match="only https:// or file://"):
        tools.fetch_url("http://example.invalid/kind")


def test_pinned_table_is_well_formed() -> None:
    assert (tools.KIND.version, tools.KUBECTL.version, tools.HELM.version) == (
        "v0.32.0", "v1.36.1", "v3.22.0")
    for release in tools.RELEASES.values():
        assert release.sha256, release.tool
        for plat, digest in release.sha256.items():
            assert re.fullmatch(r"[0-9a-f]{64}", digest), (release.tool, plat)
            assert release.url_for(plat).startswith("https://")
    assert tools.KIND.url_for(PLAT) == ("https://github.com/kubernetes-sigs/kind/releases/"
                                        "download/v0.32.0/kind-linux-amd64")
    assert tools.KUBECTL.url_for(PLAT) == "https://dl.k8s.io/release/v1.36.1/bin/linux/amd64/kubectl"
    assert tools.HELM.url_for(PLAT) == "https://get.helm.sh/helm-v3.22.0-linux-amd64.tar.gz"
    assert tools.HELM.member_for(PLAT) == "linux-amd64/helm"
    # kubectl is pinned to the Kubernetes version of the pinned kind's node image
    assert kind_module.NODE_IMAGES[tools.KIND.version].startswith(
        f"kindest/node:{tools.KUBECTL.version}@sha256:")


# --- the runner and docker_available --------------------------------------------------------

def test_run_command_captures_text_and_exit_code() -> None:
    result = tools.run_command([sys.executable, "-c",
                                "import sys; print('out'); print('err', file=sys.stderr); "
                                "sys.exit(3)"], timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


class DockerRunner:
    def __init__(self, result: subprocess.CompletedProcess[str] | Exception) -> None:
        self.result, self.calls = result, []

    def __call__(self, argv, *, timeout=None, **kwargs):
        self.calls.append((list(argv), timeout))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_docker_available_without_a_binary(tmp_path: Path) -> None:
    reason = docker_available(path_env=str(tmp_path), runner=DockerRunner(AssertionError()))
    assert reason is not None and "\n" not in reason
    assert reason.startswith("docker: no docker binary on PATH")


def test_docker_available_with_the_daemon_down(tmp_path: Path) -> None:
    docker = make_exe(tmp_path, "docker")
    stderr = ("WARNING: something unrelated\n"
              "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
              "Is the docker daemon running?\n")
    runner = DockerRunner(subprocess.CompletedProcess([], 1, '""\n', stderr))
    reason = docker_available(docker, runner=runner, timeout=7)
    assert runner.calls == [([str(docker), "info", "--format", "{{.ServerVersion}}"], 7)]
    assert reason == ("docker: daemon not reachable: Cannot connect to the Docker daemon at "
                      "unix:///var/run/docker.sock. Is the docker daemon running?")


def test_docker_available_when_docker_info_hangs(tmp_path: Path) -> None:
    docker = make_exe(tmp_path, "docker")
    runner = DockerRunner(subprocess.TimeoutExpired(["docker", "info"], 5))
    assert docker_available(docker, runner=runner, timeout=5) == (
        "docker: daemon not reachable: `docker info` did not answer within 5s")


def test_docker_available_when_the_daemon_answers(tmp_path: Path) -> None:
    docker = make_exe(tmp_path, "docker")
    runner = DockerRunner(subprocess.CompletedProcess([], 0, "28.2.2\n", ""))
    assert docker_available(docker, runner=runner) is None


def test_docker_available_on_this_machine() -> None:
    """Real `docker info`: None only if a daemon answers, else exactly one line of reason."""
    reason = docker_available(timeout=15)
    if shutil.which("docker") is None:
        assert reason is not None and reason.startswith("docker: no docker binary")
    if reason is not None:
        assert reason.startswith("docker: ") and "\n" not in reason and len(reason) < 300
    else:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
