"""The probe image the kind environment's pods run, and where it comes from.

Two sources, chosen in this order:
- an archive the user names (--crossfed-probe-image-archive): loaded as it is;
- `docker build` of cluster/probe.Dockerfile, with a context holding only the probe's sources.
  Rebuilt only when the Dockerfile or the sources changed (a label on the image says which).

When that build cannot reach its base image (no registry: air-gapped CI, this project's own CI),
the Debian-built archive of cluster/build-probe-image.sh takes its place, with one line saying
why; a laptop that can pull keeps the Dockerfile. Either way the image reaches the node through
`kind load image-archive`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crossfed.progress import progress

log = logging.getLogger("crossfed")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOCKERFILE = PACKAGE_ROOT / "cluster" / "probe.Dockerfile"
PROBE_SOURCES = PACKAGE_ROOT / "probe"
SOURCES_LABEL = "crossfed.probe.sources"
# In a source checkout: the script that builds the probe image from Debian and PyPI only.
DEBIAN_BUILD_SCRIPT = PACKAGE_ROOT.parent / "cluster" / "build-probe-image.sh"
# What docker (classic builder and BuildKit) prints when FROM cannot be fetched: no route to a
# registry, a refused proxy, a failed name lookup, a denied or missing repository.
BASE_UNREACHABLE = re.compile(
    r"pull access denied|failed to resolve source metadata|error pulling image|"
    r"manifest unknown|proxyconnect|dial tcp|no such host|i/o timeout|TLS handshake timeout|"
    r"failed to do request|server misbehaving|network is unreachable|"
    r"Get \"https://[^\"]*/v2/", re.IGNORECASE)
# A step after FROM ran (classic builder "Step 2/7", BuildKit "#5 [2/4]"): the base was there,
# and a network error is a later step's (pip reaching its index), not the base image's.
LATER_STEP = re.compile(r"^(Step (?!1/)\d+/\d+ :|#\d+ \[\s*(?!1/)\d+/\d+\])", re.MULTILINE)

Run = Callable[..., "subprocess.CompletedProcess[str]"]


class ProbeImageError(RuntimeError):
    """The probe image cannot be had; the message says what to do."""


@contextmanager
def probe_context(given: Path | None = None) -> Iterator[Path]:
    """The probe image's build context: `given`, or a temporary folder holding only what the
    pods run (crossfed/__init__.py empty, crossfed/probe/*.py), taken from the installed package
    so that it works wherever crossfed is installed (probe.Dockerfile copies `crossfed/`)."""
    if given is not None:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="crossfed-probe-context-") as folder:
        package = Path(folder) / "crossfed"
        (package / "probe").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        for source in sorted(PROBE_SOURCES.glob("*.py")):
            shutil.copy2(source, package / "probe" / source.name)
        yield Path(folder)


def base_image(dockerfile: Path) -> str:
    """The first FROM's image (what docker build must fetch when it is not local)."""
    for line in Path(dockerfile).read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            names = [w for w in words[1:] if not w.startswith("--")]
            if names:
                return names[0]
    return "?"


def archive_tags(archive: Path) -> list[str]:
    """The RepoTags of a docker-archive tar (its manifest.json)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else []
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise ProbeImageError(f"{archive}: not a docker-archive tar ({exc})") from exc
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


@dataclass(frozen=True)
class ProbeSource:
    """What to load into the node: `archive` as it is, or (None) the local image, saved first.
    `mark` tells a reused cluster whether it already has exactly this."""

    mark: str
    archive: Path | None = None


class ProbeImage:
    """Finds or builds the probe image; `run(argv, what, timeout)` raises on a failed command."""

    def __init__(self, image: str, dockerfile: Path, build_context: Path | None,
                 archive: Path | None, docker: Path | str, run: Run, runner: Run) -> None:
        self.image, self.dockerfile, self.build_context = image, Path(dockerfile), build_context
        self.archive, self.docker, self.run, self.runner = archive, str(docker), run, runner

    def source(self) -> ProbeSource:
        if self.archive is not None:
            log.info("crossfed kind: probe image %s from the archive %s", self.image,
                     self.archive)
            return self._archive_source(Path(self.archive), "--crossfed-probe-image-archive")
        fingerprint = self.fingerprint()
        found = self.inspect(self.image)
        if found and found[1] == fingerprint:
            log.info("crossfed kind: probe image %s is up to date", self.image)
            return ProbeSource(found[0])
        log.info("crossfed kind: building probe image %s from %s (a few minutes the first "
                 "time)", self.image, self.dockerfile)
        with probe_context(self.build_context) as context, progress(
                f"kind: building probe image {self.image}"):
            result = self.runner([self.docker, "build", "--file", str(self.dockerfile),
                                  "--tag", self.image, "--label",
                                  f"{SOURCES_LABEL}={fingerprint}", str(context)],
                                 timeout=1800)
        if result.returncode != 0:
            output = f"{result.stdout or ''}\n{result.stderr or ''}"
            if not BASE_UNREACHABLE.search(output) or LATER_STEP.search(output):
                lines = [line for line in output.splitlines() if line.strip()]
                raise ProbeImageError(f"docker build of the probe image failed (exit "
                                      f"{result.returncode}): " + " | ".join(lines[-3:]))
            return self._debian_fallback(_last_match(output))
        found = self.inspect(self.image)
        if found is None:
            raise ProbeImageError(f"docker build succeeded but image {self.image} is not there")
        return ProbeSource(found[0])

    def _debian_fallback(self, why: str) -> ProbeSource:
        base = base_image(self.dockerfile)
        if not DEBIAN_BUILD_SCRIPT.is_file():
            raise ProbeImageError(
                f"docker build of the probe image cannot reach its base image {base} ({why}); "
                "pull it where a registry is reachable (docker pull, docker save/load), or "
                "pass --crossfed-probe-image-archive TAR (cluster/build-probe-image.sh of a "
                "crossfed checkout builds one from Debian and PyPI)")
        log.warning("crossfed kind: docker build cannot reach the probe's base image %s (%s): "
                    "using the Debian-built archive of %s, loaded with kind load image-archive",
                    base, why, DEBIAN_BUILD_SCRIPT.name)
        with progress(f"kind: probe image from Debian ({DEBIAN_BUILD_SCRIPT.name}; minutes "
                      "the first time, then cached)"):
            result = self.run(["bash", str(DEBIAN_BUILD_SCRIPT)],
                              f"{DEBIAN_BUILD_SCRIPT} (the Debian-built probe image)",
                              timeout=1800)
        lines = (result.stdout or "").strip().splitlines()
        if not lines:
            raise ProbeImageError(f"{DEBIAN_BUILD_SCRIPT} printed no archive path")
        return self._archive_source(Path(lines[-1].strip()), DEBIAN_BUILD_SCRIPT.name)

    def _archive_source(self, archive: Path, origin: str) -> ProbeSource:
        archive = archive.expanduser().resolve()
        if not archive.is_file():
            raise ProbeImageError(f"{archive}: probe image archive missing ({origin})")
        tags = archive_tags(archive)
        if self.image not in tags and f"docker.io/{self.image}" not in tags:
            raise ProbeImageError(f"{archive} holds {tags or 'no tagged image'}, not the probe "
                                  f"image {self.image} the pods run; pass "
                                  f"--crossfed-probe-image {tags[0] if tags else '...'}")
        stat = archive.stat()
        mark = hashlib.sha256(f"{archive}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        return ProbeSource("archive:" + mark.hexdigest()[:16], archive)

    def fingerprint(self) -> str:
        """Dockerfile + the probe's sources: what the pods run (the rest is the harness's)."""
        digest = hashlib.sha256(self.dockerfile.read_bytes())
        for source in sorted(PROBE_SOURCES.glob("*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
        return digest.hexdigest()[:16]

    def inspect(self, image: str) -> tuple[str, str] | None:
        """(id, sources label) of a local image, or None when docker has no such image."""
        result = self.runner([self.docker, "image", "inspect", "--format",
                              "{{.Id}} {{index .Config.Labels \"" + SOURCES_LABEL + "\"}}",
                              image], timeout=60)
        if result.returncode != 0:
            return None
        image_id, _, label = (result.stdout or "").strip().partition(" ")
        return image_id, label


def _last_match(output: str) -> str:
    lines: Sequence[str] = [line.strip() for line in output.splitlines()
                            if BASE_UNREACHABLE.search(line)]
    return (lines[-1] if lines else "no registry")[-200:]
