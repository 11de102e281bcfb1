"""Finding the command-line tools of the kind environment: kind, kubectl, helm and docker.

Order: an explicit path (the --crossfed-kind-bin / -kubectl-bin / -helm-bin flags) wins, else
the tool on PATH, else a pinned release downloaded once into a cache directory
(default ~/.cache/crossfed/tools/<tool>-<version>/) whose SHA-256 must match the table below.
A release whose checksum for this platform is not in the table is never downloaded. Docker is
never downloaded: it is a daemon, not a binary.

Every subprocess of the kind environment goes through `run_command`; tests replace it with a
recorder. Downloads go through an injectable `fetch(url) -> bytes`.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("kind", "kubectl", "helm", "docker")
# The pytest options naming each tool (crossfed/pytest_plugin.py registers them).
FLAGS = {"kind": "--crossfed-kind-bin", "kubectl": "--crossfed-kubectl-bin",
         "helm": "--crossfed-helm-bin"}
# Docker Desktop is not supported: its bridge gateway, where pods reach the stand-ins, is inside
# its VM (README, "kind on a laptop").
DOCKER_INSTALL_HINT = ("install Docker Engine on Linux and start it "
                       "(Docker Desktop is not supported)")
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Fetch = Callable[[str], bytes]
Platform = tuple[str, str]  # (os, arch) in Go's spelling: ("linux", "amd64")


class ToolMissing(Exception):
    """A tool cannot be found or obtained; the message is one line saying what to do."""


class ChecksumMismatch(ToolMissing):
    """A downloaded release does not have its pinned SHA-256: refused, nothing cached."""


@dataclass(frozen=True)
class ToolRelease:
    """One pinned release: where to get it and the SHA-256 of what that URL serves.

    `url` and `member` are templates over {version}, {os} and {arch}; `member` names the file
    inside a .tar.gz (None: the URL serves the bare binary). `sha256` maps (os, arch) to the
    hex digest of the downloaded bytes (the archive for helm).
    """

    tool: str
    version: str
    url: str
    sha256: Mapping[Platform, str] = field(default_factory=dict)
    member: str | None = None

    def url_for(self, plat: Platform) -> str:
        return self.url.format(version=self.version, os=plat[0], arch=plat[1])

    def member_for(self, plat: Platform) -> str | None:
        if self.member is None:
            return None
        return self.member.format(version=self.version, os=plat[0], arch=plat[1])


# Published checksums, found with the code search over public repositories that pin the same
# assets (the release's own <asset>.sha256sum / kubectl.sha256 / helm .sha256sum text is not
# reachable from this machine). Each digest was seen in at least one independent pin, most in
# several; for kind-linux-amd64 one repository pins 6e811cf0... against five independent ones
# agreeing on the value below. A wrong entry fails closed: the download is refused.
KIND = ToolRelease(
    "kind", "v0.32.0",
    "https://github.com/kubernetes-sigs/kind/releases/download/{version}/kind-{os}-{arch}",
    {
        ("linux", "amd64"): "50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54",
        ("linux", "arm64"): "b92cd615e97585de8ddade28ed5cd7feb4248d717c233eea5b03c37298900f5d",
        ("darwin", "amd64"): "295ac6d0d634c9819c9907df45e3017d1f13166bd13c3404c45e79f7faa47498",
        ("darwin", "arm64"): "dca67911095a110c2b5c36e26df6cac860c602033e456c0db47be498cdef1ebb",
    },
)
# kubectl matches the node image of kind v0.32.0 (kindest/node:v1.36.1).
KUBECTL = ToolRelease(
    "kubectl", "v1.36.1", "https://dl.k8s.io/release/{version}/bin/{os}/{arch}/kubectl",
    {("linux", "amd64"): "629d3f410e09bf49b64ae7079f7f0bda1191efed311f7d37fdbab0ad5b0ec2b7"},
)
# Helm 3's last line: bare `--wait` is a bool there and the `watcher` strategy in Helm 4, so the
# argv of crossfed.webhooks.charts works with both.
HELM = ToolRelease(
    "helm", "v3.22.0", "https://get.helm.sh/helm-{version}-{os}-{arch}.tar.gz",
    {
        ("linux", "amd64"): "1e4ab49e429626cf6c6958d914248b78c9730803c2751b87627e171dc800e7bb",
        ("linux", "arm64"): "f14e804dfee240f55525b667488fe9adca349e63e00c9af634c0beb1421ac310",
    },
    member="{os}-{arch}/helm",
)
RELEASES: dict[str, ToolRelease] = {r.tool: r for r in (KIND, KUBECTL, HELM)}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "crossfed" / "tools"


def host_platform() -> Platform:
    os_name = {"linux": "linux", "darwin": "darwin", "win32": "windows"}.get(sys.platform,
                                                                             sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine)
    return os_name, arch


def run_command(argv: Sequence[str], *, timeout: float | None = 120, input: str | None = None,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The one place the kind environment starts a process: text output captured, no check."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input, env=dict(env) if env is not None else None, check=False)


def fetch_url(url: str) -> bytes:
    """Default downloader: https (or file, for local mirrors); size-limited."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("https", "file"):
        raise ToolMissing(f"refusing to download {url}: only https:// or file:// URLs")
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise ToolMissing(f"refusing {url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
    return data


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _hint(tool: str) -> str:
    if tool == "docker":
        return DOCKER_INSTALL_HINT
    return f"install {tool} on PATH or pass {FLAGS[tool]} PATH"


def find_tool(tool: str, explicit: str | os.PathLike[str] | None = None, *,
              path_env: str | None = None, cache_dir: Path | None = None,
              download: bool = True, fetch: Fetch = fetch_url,
              plat: Platform | None = None,
              releases: Mapping[str, ToolRelease] = RELEASES) -> Path:
    """Path of an executable `tool`: explicit > PATH > cache > pinned download (if allowed).

    `path_env` replaces $PATH for the lookup (None: the process's PATH).
    """
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}; expected one of {', '.join(TOOLS)}")
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
            flag = FLAGS.get(tool, "the explicit path")
            raise ToolMissing(f"{tool}: {flag} {path} is not an executable file")
        return path.resolve()
    found = shutil.which(tool, path=path_env)
    if found:
        return Path(found)
    if tool == "docker":
        raise ToolMissing(f"docker: no docker binary on PATH; {DOCKER_INSTALL_HINT}")
    release = releases[tool]
    cached = cached_path(release, cache_dir)
    if _is_executable(cached):
        return cached
    if not download:
        raise ToolMissing(f"{tool}: not on PATH and not cached at {cached}; {_hint(tool)}")
    return install_release(release, cache_dir=cache_dir, fetch=fetch, plat=plat)


def tool_problem(tool: str, explicit: str | os.PathLike[str] | None = None, *,
                 path_env: str | None = None, cache_dir: Path | None = None,
                 plat: Platform | None = None,
                 releases: Mapping[str, ToolRelease] = RELEASES) -> str | None:
    """None when `find_tool` would find `tool` or may download it (its release has a pinned
    SHA-256 for this platform); else the one-line reason. Runs and downloads nothing."""
    try:
        find_tool(tool, explicit, path_env=path_env, cache_dir=cache_dir, download=False,
                  releases=releases)
        return None
    except ToolMissing as exc:
        release = releases.get(tool)
        if explicit is None and release is not None and (plat or host_platform()) in (
                release.sha256):
            return None
        return str(exc)


def cached_path(release: ToolRelease, cache_dir: Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{release.tool}-{release.version}" / release.tool


def install_release(release: ToolRelease, *, cache_dir: Path | None = None,
                    fetch: Fetch = fetch_url, plat: Platform | None = None) -> Path:
    """Download `release` once, verify its pinned SHA-256, unpack it into the cache.

    Nothing is written before the bytes are verified; the version directory appears by an
    atomic rename, so concurrent workers either see the complete binary or nothing.
    """
    plat = plat or host_platform()
    tool, version = release.tool, release.version
    expected = release.sha256.get(plat)
    if expected is None:
        raise ToolMissing(f"{tool} {version}: no pinned SHA-256 for {plat[0]}/{plat[1]}, "
                          f"refusing to download it; {_hint(tool)}")
    url = release.url_for(plat)
    data = fetch(url)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.lower():
        raise ChecksumMismatch(f"{tool} {version}: {url} has SHA-256 {actual}, pinned "
                               f"{expected}; refused, nothing cached; {_hint(tool)}")
    binary = _unpack(release, plat, data, url)

    final = cached_path(release, cache_dir)
    if _is_executable(final):
        return final
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.parent.name}.", dir=final.parent.parent))
    try:
        target = staging / tool
        target.write_bytes(binary)
        target.chmod(0o755)
        try:
            staging.rename(final.parent)
        except OSError:
            if not _is_executable(final):  # not another worker's finished copy: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _unpack(release: ToolRelease, plat: Platform, data: bytes, url: str) -> bytes:
    member = release.member_for(plat)
    if member is None:
        return data
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            info = archive.getmember(member)
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is None:
                raise KeyError(member)
            return handle.read()
    except (KeyError, tarfile.TarError) as exc:
        raise ToolMissing(f"{release.tool} {release.version}: {url} has no regular file "
                          f"{member} ({exc.__class__.__name__}); {_hint(release.tool)}") from exc


@dataclass(frozen=True)
class Tools:
    kind: Path
    kubectl: Path
    helm: Path | None  # None: not needed (the reference mutator installs no chart)
    docker: Path


def find_tools(explicit: Mapping[str, str | None] | None = None, *, helm: bool = True,
               **kwargs) -> Tools:
    """The tools; `explicit` maps tool name to the flag's value (None: not given).

    helm=False leaves helm unresolved, so a run without the real charts downloads no helm.
    """
    explicit = explicit or {}
    wanted = [tool for tool in TOOLS if helm or tool != "helm"]
    found: dict[str, Path | None] = {tool: find_tool(tool, explicit.get(tool), **kwargs)
                                     for tool in wanted}
    return Tools(**{"helm": None, **found})


def docker_available(docker_bin: str | os.PathLike[str] | None = None, *, timeout: float = 10,
                     runner: Runner = run_command, path_env: str | None = None) -> str | None:
    """None when a Docker daemon answers `docker info`; else a one-line reason."""
    try:
        docker = find_tool("docker", docker_bin, path_env=path_env, download=False)
    except ToolMissing as exc:
        return str(exc)
    argv = [str(docker), "info", "--format", "{{.ServerVersion}}"]
    try:
        result = runner(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"docker: daemon not reachable: `docker info` did not answer within {timeout:g}s"
    except OSError as exc:
        return f"docker: cannot run {docker}: {exc.strerror or exc}"
    version = (result.stdout or "").strip().strip('"')
    if result.returncode == 0 and version:
        return None
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("WARNING")] or lines
    detail = lines[0] if lines else f"`docker info` exited {result.returncode} without a reason"
    return f"docker: daemon not reachable: {detail}"
