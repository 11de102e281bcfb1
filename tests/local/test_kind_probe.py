"""Where the kind environment's probe image and node network come from.

- the node image: `--kind-node-image` names it in the kind config, and its label
  io.crossfed.kind.default-cni=none (or `--kind-disable-default-cni`) turns on
  networking.disableDefaultCNI;
- the probe image (crossfed/environments/kind_probe.py): an archive given by
  `--crossfed-probe-image-archive`, else `docker build` of probe.Dockerfile, else, when that
  build cannot reach its base image, the archive cluster/build-probe-image.sh prints;
- the pytest options and the KindSettings the plugin makes of them.

No Docker here: docker's answers come from the runners below (docker build's pull errors as
the classic builder and BuildKit print them, `docker image inspect` of a node image's labels),
and kind/kubectl/helm from tests/local/kind_fakes.py. The docker-archive tars are real tar
files holding a manifest.json, which is all archive_tags reads.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from kind_fakes import FakeTools

from crossfed.cluster.tools import Tools
from crossfed.environments import kind_probe
from crossfed.environments.kind import (
    DEFAULT_DOCKERFILE,
    KindEnvironment,
    KindSettings,
    KindSetupError,
)
from crossfed.environments.kind_probe import (
    ProbeImage,
    ProbeImageError,
    ProbeSource,
    archive_tags,
    base_image,
)
from crossfed.pytest_plugin import kind_settings

pytestmark = [pytest.mark.local]

TOOLS = Tools(kind=Path("/fake/bin/kind"), kubectl=Path("/fake/bin/kubectl"),
              helm=Path("/fake/bin/helm"), docker=Path("/fake/bin/docker"))
PROBE = "crossfed/probe:local"
NODE_IMAGE = "crossfed/kind-node:v1.36.1-local"
LABELS_FORMAT = "{{json .Config.Labels}}"
# The label cluster/kind/build-images.sh puts on its node image (spelt out: it is a contract).
NO_DEFAULT_CNI_LABEL = "io.crossfed.kind.default-cni"
# What docker build prints when FROM cannot be fetched through a closed proxy.
CLASSIC_PULL_ERROR = ("Step 1/6 : FROM python:3.11-slim-bookworm\n",
                      'Error response from daemon: Get "https://registry.example/v2/": '
                      "proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused\n")
# BuildKit's last line carries the whole chain (the warning keeps its last 200 characters).
BUILDKIT_PULL_ERROR = ("", "#2 [internal] load metadata for docker.io/library/python:3.11-slim-"
                       "bookworm\n#2 ERROR: failed to do request: Head \"https://registry."
                       "example/v2/library/python/manifests/3.11-slim-bookworm\": proxyconnect "
                       "tcp: dial tcp 127.0.0.1:9: connect: connection refused\nERROR: failed "
                       "to solve: python:3.11-slim-bookworm: failed to resolve source metadata "
                       "for docker.io/library/python:3.11-slim-bookworm: failed to do request: "
                       "Head \"https://registry.example/v2/library/python/manifests/3.11-"
                       "slim-bookworm\": proxyconnect tcp: dial tcp 127.0.0.1:9: connect: "
                       "connection refused\n")
COPY_ERROR = ("Step 5/6 : COPY crossfed /opt/probe/app/crossfed\n",
              "COPY failed: file not found in build context or excluded by .dockerignore: "
              "stat crossfed: file does not exist\n")


def docker_archive(path: Path, *tags: str) -> Path:
    """A docker-archive tar with just its manifest.json (what archive_tags reads)."""
    manifest = [{"Config": "0123abcd.json", "RepoTags": list(tags),
                 "Layers": ["0123abcd/layer.tar"]}]
    data = json.dumps(manifest).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


# --- the node image: its name in the config, its label turning off kind's default CNI ---------

class NodeImageTools(FakeTools):
    """FakeTools, plus docker's labels of local node images (`image inspect --format
    {{json .Config.Labels}}`): `node_labels[image]` is the labels dict (None: the image has no
    labels, docker prints `null`); an image not in it is not in docker's image store."""

    def __init__(self, node_labels: dict[str, dict[str, str] | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_labels = node_labels

    def _docker(self, args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["image", "inspect"] and LABELS_FORMAT in args:
            assert args[:4] == ["image", "inspect", "--format", LABELS_FORMAT], args
            image = args[-1]
            if image not in self.node_labels:
                return 1, "[]\n", f"Error response from daemon: No such image: {image}\n"
            return 0, json.dumps(self.node_labels[image]) + "\n", ""
        return super()._docker(args)

    def label_inspections(self) -> list[list[str]]:
        return [c for c in self.of("docker") if c[:2] == ["image", "inspect"]
                and LABELS_FORMAT in c]


def start(tmp_path: Path, fake: FakeTools, **settings: Any) -> KindEnvironment:
    env = KindEnvironment(KindSettings(state_dir=tmp_path / "state", **settings), TOOLS,
                          runner=fake, sleep=lambda seconds: None)
    return env.start(tmp_path / "pki")


def created_config(tmp_path: Path, fake: FakeTools) -> dict[str, Any]:
    """The config kind was created with: the file given as --config, as kind read it."""
    [create] = [c for c in fake.of("kind") if c[:2] == ["create", "cluster"]]
    config_file = Path(create[create.index("--config") + 1])
    assert config_file == tmp_path / "state" / "kind-config.yaml"
    written = yaml.safe_load(config_file.read_text())
    assert fake.created == [written]
    return written


def test_a_node_image_labelled_without_default_cni_disables_kinds_cni(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="crossfed")
    fake = NodeImageTools({NODE_IMAGE: {NO_DEFAULT_CNI_LABEL: "none",
                                        "org.opencontainers.image.title": "kind node"}})
    env = start(tmp_path, fake, node_image=NODE_IMAGE)
    try:
        config = created_config(tmp_path, fake)
        assert config["networking"] == {"apiServerAddress": "127.0.0.1",
                                        "disableDefaultCNI": True}
        assert config["nodes"][0]["image"] == NODE_IMAGE
        assert fake.label_inspections() == [["image", "inspect", "--format", LABELS_FORMAT,
                                             NODE_IMAGE]]
        assert any("has no default CNI" in r.getMessage() and NODE_IMAGE in r.getMessage()
                   for r in caplog.records)
    finally:
        env.stop()


@pytest.mark.parametrize("labels", [
    {"org.opencontainers.image.title": "kind node"},
    {NO_DEFAULT_CNI_LABEL: "kindnet"},
    None,  # an image without labels: docker prints null
], ids=["other-labels", "label-not-none", "no-labels"])
def test_a_node_image_without_the_label_keeps_kinds_default_cni(tmp_path, labels):
    fake = NodeImageTools({NODE_IMAGE: labels})
    env = start(tmp_path, fake, node_image=NODE_IMAGE)
    try:
        config = created_config(tmp_path, fake)
        assert config["networking"] == {"apiServerAddress": "127.0.0.1"}
        assert config["nodes"][0]["image"] == NODE_IMAGE
        assert len(fake.label_inspections()) == 1
    finally:
        env.stop()


@pytest.mark.parametrize("node_image", [NODE_IMAGE, None], ids=["node-image", "kinds-default"])
def test_the_setting_forces_disable_default_cni_without_inspecting(tmp_path, node_image):
    fake = NodeImageTools({})  # docker has no such node image: it must not be asked
    env = start(tmp_path, fake, node_image=node_image, disable_default_cni=True)
    try:
        config = created_config(tmp_path, fake)
        assert config["networking"]["disableDefaultCNI"] is True
        assert config["networking"]["apiServerAddress"] == "127.0.0.1"
        assert ("image" in config["nodes"][0]) == (node_image is not None)
        assert fake.label_inspections() == []
    finally:
        env.stop()


def test_no_node_image_means_kinds_own_image_and_its_cni(tmp_path):
    fake = NodeImageTools({})
    env = start(tmp_path, fake)
    try:
        config = created_config(tmp_path, fake)
        assert config["networking"] == {"apiServerAddress": "127.0.0.1"}
        assert "image" not in config["nodes"][0]
        assert fake.label_inspections() == []
    finally:
        env.stop()


def test_a_node_image_docker_does_not_have_is_left_to_kind_with_a_warning(tmp_path, caplog):
    """A published image not pulled yet has no labels to read: kind pulls it (a laptop with a
    registry); the warning says what to do where none answers."""
    fake = NodeImageTools({"some/other-node:v1": {NO_DEFAULT_CNI_LABEL: "none"}})
    env = start(tmp_path, fake, node_image=NODE_IMAGE)
    try:
        config = created_config(tmp_path, fake)
        assert "disableDefaultCNI" not in config["networking"]
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
                    and "labels cannot be read" in r.getMessage()]
        assert len(warnings) == 1 and NODE_IMAGE in warnings[0]
        assert "build or load a local one" in warnings[0]
        assert "--kind-disable-default-cni" in warnings[0]
    finally:
        env.stop()


def test_a_given_probe_archive_is_loaded_as_it_is_and_once(tmp_path):
    archive = docker_archive(tmp_path / "images" / "probe.tar", PROBE)
    fake = FakeTools()
    env = start(tmp_path, fake, probe_archive=archive, keep=True)
    env.stop()
    docker = fake.of("docker")
    assert not [c for c in docker if c[0] in ("build", "save")]
    assert not [c for c in docker if c[:2] == ["image", "inspect"]]
    loads = [c for c in fake.of("kind") if c[:2] == ["load", "image-archive"]]
    assert loads == [["load", "image-archive", str(archive.resolve()), "--name", "crossfed"]]

    # the kept cluster already has this archive: not loaded again; a changed one is
    again = start(tmp_path, fake, probe_archive=archive, keep=True)
    again.stop()
    assert len([c for c in fake.of("kind") if c[:2] == ["load", "image-archive"]]) == 1
    docker_archive(archive, PROBE, "crossfed/probe:v2")
    third = start(tmp_path, fake, probe_archive=archive, keep=True)
    third.stop()
    assert len([c for c in fake.of("kind") if c[:2] == ["load", "image-archive"]]) == 2


def test_a_probe_archive_without_the_probe_image_fails_the_start(tmp_path):
    archive = docker_archive(tmp_path / "probe.tar", "someone/else:v1")
    fake = FakeTools()
    with pytest.raises(KindSetupError, match=r"crossfed kind: .*someone/else:v1.*not the probe "
                                             r"image crossfed/probe:local"):
        start(tmp_path, fake, probe_archive=archive)
    assert fake.clusters == {}  # created by this run: torn down


# --- the probe image: archive, docker build, the Debian-built fallback --------------------------

class DockerBuild:
    """Answers `docker image inspect` (no such image) and `docker build` (fails with the given
    stdout and stderr, or succeeds); records every argv."""

    def __init__(self, failure: tuple[str, str] | None = None) -> None:
        self.failure = failure
        self.calls: list[list[str]] = []
        self.built = False

    def __call__(self, argv, *, timeout=None, **kwargs) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        assert Path(argv[0]).name == "docker", argv
        if argv[1:3] == ["image", "inspect"]:
            if self.built:
                return subprocess.CompletedProcess(argv, 0, "sha256:feed built\n", "")
            return subprocess.CompletedProcess(argv, 1, "[]\n",
                                               f"Error response from daemon: No such image: "
                                               f"{argv[-1]}\n")
        assert argv[1] == "build", argv
        if self.failure is None:
            self.built = True
            return subprocess.CompletedProcess(argv, 0, "Successfully built feed\n", "")
        out, err = self.failure
        return subprocess.CompletedProcess(argv, 1, out, err)

    def builds(self) -> list[list[str]]:
        return [c for c in self.calls if c[1] == "build"]


class ScriptRun:
    """The `run(argv, what, timeout)` of ProbeImage: records argv, answers with `stdout` (the
    script's log goes to stderr, the archive path is its last stdout line)."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, argv, what, timeout=300) -> subprocess.CompletedProcess[str]:
        self.calls.append(([str(a) for a in argv], what))
        return subprocess.CompletedProcess(argv, 0, self.stdout,
                                           "crossfed build-probe-image: cached\n")


def probe_image(runner: Any, run: Any, archive: Path | None = None,
                dockerfile: Path = DEFAULT_DOCKERFILE) -> ProbeImage:
    return ProbeImage(PROBE, dockerfile, None, archive, "/fake/bin/docker", run, runner)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "crossfed" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("failure", [CLASSIC_PULL_ERROR, BUILDKIT_PULL_ERROR],
                         ids=["classic-builder", "buildkit"])
def test_a_build_that_cannot_reach_its_base_image_falls_back_to_the_debian_archive(
        tmp_path, caplog, failure):
    caplog.set_level(logging.INFO, logger="crossfed")
    archive = docker_archive(tmp_path / "cache" / "images" / "probe-0123.tar", PROBE)
    runner = DockerBuild(failure)
    run = ScriptRun(f"{tmp_path}/not-this-line.tar\n{archive}\n")
    source = probe_image(runner, run).source()

    assert source.archive == archive.resolve()
    assert source.mark.startswith("archive:")
    [(argv, what)] = run.calls
    assert argv == ["bash", str(kind_probe.DEBIAN_BUILD_SCRIPT)]
    assert str(kind_probe.DEBIAN_BUILD_SCRIPT) in what
    [build] = runner.builds()
    assert build[build.index("--file") + 1] == str(DEFAULT_DOCKERFILE)
    assert build[build.index("--tag") + 1] == PROBE
    [warning] = warnings_of(caplog)
    assert "python:3.11-slim-bookworm" in warning
    assert "proxyconnect" in warning  # why, from docker's output
    assert "build-probe-image.sh" in warning


def test_the_fallback_archive_must_hold_the_probe_image(tmp_path):
    archive = docker_archive(tmp_path / "probe.tar", "crossfed/probe:other")
    run = ScriptRun(f"{archive}\n")
    with pytest.raises(ProbeImageError, match=r"crossfed/probe:other.*not the probe image "
                                              r"crossfed/probe:local"):
        probe_image(DockerBuild(CLASSIC_PULL_ERROR), run).source()


def test_a_fallback_script_that_prints_no_path_is_an_error(tmp_path):
    with pytest.raises(ProbeImageError, match="printed no archive path"):
        probe_image(DockerBuild(CLASSIC_PULL_ERROR), ScriptRun("\n")).source()


def test_without_the_debian_script_the_error_says_to_pass_an_archive(tmp_path, monkeypatch,
                                                                     caplog):
    monkeypatch.setattr(kind_probe, "DEBIAN_BUILD_SCRIPT", tmp_path / "no" / "build.sh")
    run = ScriptRun("unused\n")
    with pytest.raises(ProbeImageError) as caught:
        probe_image(DockerBuild(CLASSIC_PULL_ERROR), run).source()
    message = str(caught.value)
    assert "cannot reach its base image python:3.11-slim-bookworm" in message
    assert "proxyconnect" in message
    assert "--crossfed-probe-image-archive" in message
    assert run.calls == [] and warnings_of(caplog) == []


def test_a_build_failing_otherwise_is_an_error_with_dockers_words(tmp_path, caplog):
    runner, run = DockerBuild(COPY_ERROR), ScriptRun("unused\n")
    with pytest.raises(ProbeImageError) as caught:
        probe_image(runner, run).source()
    message = str(caught.value)
    assert message.startswith("docker build of the probe image failed (exit 1): ")
    assert "COPY failed: file not found in build context" in message
    assert run.calls == [] and warnings_of(caplog) == []  # no fallback


PIP_NETWORK_ERROR = ("Step 1/6 : FROM python:3.11-slim-bookworm\n ---> 1a2b\n"
                     "Step 2/6 : ENV PIP_NO_CACHE_DIR=1\nStep 3/6 : RUN python -m venv /opt/probe\n"
                     "WARNING: Retrying after connection broken by 'NewConnectionError: "
                     "[Errno 101] Network is unreachable'\n",
                     "The command '/bin/sh -c python -m venv' returned a non-zero code: 1\n")
BUILDKIT_PIP_ERROR = ("", "#5 [2/4] RUN python -m venv /opt/probe\n#5 3.2 [Errno 101] Network "
                      "is unreachable\n#5 ERROR: process did not complete successfully\n")


@pytest.mark.parametrize("failure", [PIP_NETWORK_ERROR, BUILDKIT_PIP_ERROR],
                         ids=["classic-builder", "buildkit"])
def test_a_network_error_after_from_is_not_taken_for_an_unreachable_base(tmp_path, caplog,
                                                                        failure):
    runner, run = DockerBuild(failure), ScriptRun("unused\n")
    with pytest.raises(ProbeImageError) as caught:
        probe_image(runner, run).source()
    assert "Network is unreachable" in str(caught.value) or "non-zero" in str(caught.value)
    assert run.calls == [] and warnings_of(caplog) == []  # the base was there: no fallback


def test_a_build_that_works_gives_the_local_image(tmp_path):
    runner, run = DockerBuild(), ScriptRun("unused\n")
    source = probe_image(runner, run).source()
    assert source == ProbeSource("sha256:feed")  # saved from docker, no archive
    assert len(runner.builds()) == 1 and run.calls == []


def test_a_given_archive_with_the_probe_image_is_used_without_docker(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="crossfed")
    archive = docker_archive(tmp_path / "probe.tar", PROBE)
    runner, run = DockerBuild(COPY_ERROR), ScriptRun("unused\n")
    image = probe_image(runner, run, archive=archive)
    first = image.source()
    assert first.archive == archive.resolve()
    assert first.mark.startswith("archive:") and len(first.mark) > len("archive:")
    assert image.source() == first  # same file: same mark (a reused cluster keeps it)
    assert runner.calls == [] and run.calls == []
    assert warnings_of(caplog) == []

    docker_archive(archive, PROBE, "crossfed/probe:v2")  # rebuilt: another size and mtime
    second = image.source()
    assert second.archive == first.archive and second.mark != first.mark
    assert second.mark.startswith("archive:")


def test_an_archive_changed_in_place_with_the_same_size_gets_a_new_mark(tmp_path):
    archive = docker_archive(tmp_path / "probe.tar", PROBE)
    image = probe_image(DockerBuild(), ScriptRun("unused\n"), archive=archive)
    first = image.source()
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert image.source().mark != first.mark


def test_an_archive_tagged_with_the_registry_prefix_is_accepted(tmp_path):
    archive = docker_archive(tmp_path / "probe.tar", f"docker.io/{PROBE}")
    source = probe_image(DockerBuild(), ScriptRun("unused\n"), archive=archive).source()
    assert source.archive == archive.resolve()


def test_a_given_archive_without_the_probe_image_names_its_tags(tmp_path):
    archive = docker_archive(tmp_path / "probe.tar", "someone/probe:v3", "someone/probe:latest")
    runner = DockerBuild()
    with pytest.raises(ProbeImageError) as caught:
        probe_image(runner, ScriptRun("unused\n"), archive=archive).source()
    message = str(caught.value)
    assert "someone/probe:v3" in message and "someone/probe:latest" in message
    assert f"not the probe image {PROBE}" in message
    assert "--crossfed-probe-image someone/probe:v3" in message
    assert runner.calls == []  # no docker build instead


def test_a_given_archive_without_tags_says_so(tmp_path):
    archive = docker_archive(tmp_path / "probe.tar")
    with pytest.raises(ProbeImageError, match="no tagged image"):
        probe_image(DockerBuild(), ScriptRun("unused\n"), archive=archive).source()


def test_a_missing_archive_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "probe.tar"
    runner = DockerBuild()
    with pytest.raises(ProbeImageError) as caught:
        probe_image(runner, ScriptRun("unused\n"), archive=missing).source()
    message = str(caught.value)
    assert str(missing.resolve()) in message and "missing" in message
    assert "--crossfed-probe-image-archive" in message
    assert runner.calls == []


def test_a_file_that_is_not_a_docker_archive_is_named(tmp_path):
    not_tar = tmp_path / "probe.tar"
    not_tar.write_text("not a tar\n")
    with pytest.raises(ProbeImageError, match="not a docker-archive tar"):
        archive_tags(not_tar)
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("layer.tar")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ProbeImageError, match=f"{plain}: not a docker-archive tar"):
        archive_tags(plain)


def test_archive_tags_lists_every_images_tags(tmp_path):
    archive = tmp_path / "two.tar"
    manifest = json.dumps([{"RepoTags": ["a/b:1", "a/b:2"]}, {"RepoTags": None},
                           {"RepoTags": ["c/d:3"]}]).encode()
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    assert archive_tags(archive) == ["a/b:1", "a/b:2", "c/d:3"]


def test_base_image_is_the_first_froms_image(tmp_path):
    assert base_image(DEFAULT_DOCKERFILE) == "python:3.11-slim-bookworm"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# syntax=docker/dockerfile:1\n"
                          "# FROM commented/out:1\n"
                          "ARG VERSION=3.12\n"
                          "\n"
                          "from --platform=$BUILDPLATFORM python:3.12-slim AS build\n"
                          "RUN true\n"
                          "FROM debian:bookworm-slim\n")
    assert base_image(dockerfile) == "python:3.12-slim"
    dockerfile.write_text("FROM --platform=linux/amd64 alpine:3.20\n")
    assert base_image(dockerfile) == "alpine:3.20"
    dockerfile.write_text("RUN echo no base\n")
    assert base_image(dockerfile) == "?"


def test_the_fallback_warning_names_the_dockerfiles_own_base(tmp_path, caplog):
    dockerfile = tmp_path / "probe.Dockerfile"
    dockerfile.write_text("FROM --platform=linux/amd64 registry.example/python:3.13\nRUN true\n")
    archive = docker_archive(tmp_path / "probe.tar", PROBE)
    runner = DockerBuild(("", "ERROR: failed to solve: registry.example/python:3.13: failed "
                              "to resolve source metadata: dial tcp: lookup registry.example: "
                              "no such host\n"))
    source = probe_image(runner, ScriptRun(f"{archive}\n"), dockerfile=dockerfile).source()
    assert source.archive == archive.resolve()
    [warning] = warnings_of(caplog)
    assert "registry.example/python:3.13" in warning and "no such host" in warning


# --- the pytest options and the KindSettings made of them --------------------------------------

class Config:
    """What kind_settings() asks of a pytest.Config: getoption by the option's name."""

    DEFAULTS = {"--crossfed-probe-dockerfile": None, "--crossfed-probe-image-archive": None,
                "--kind-cluster-name": "crossfed", "--kind-node-image": None,
                "--kind-disable-default-cni": False, "--crossfed-webhooks": None,
                "--crossfed-keep-cluster": False, "--crossfed-probe-image": PROBE,
                "--webhook-versions": None, "--upgrade-webhooks-to": None}

    def __init__(self, **options: Any) -> None:
        self.options = {**self.DEFAULTS, **options}

    def getoption(self, name: str) -> Any:
        return self.options[name]


def test_kind_settings_default_to_kinds_image_the_label_and_a_build():
    settings = kind_settings(Config())  # type: ignore[arg-type]
    assert settings.node_image is None
    assert settings.disable_default_cni is None  # None: the node image's label decides
    assert settings.probe_archive is None
    assert settings.dockerfile == DEFAULT_DOCKERFILE and settings.webhooks == "real"


def test_kind_settings_take_the_node_image_cni_and_archive_options(tmp_path):
    config = Config(**{"--kind-node-image": NODE_IMAGE, "--kind-disable-default-cni": True,
                       "--crossfed-probe-image-archive": str(tmp_path / "probe.tar")})
    settings = kind_settings(config, run_token="tok")  # type: ignore[arg-type]
    assert settings.node_image == NODE_IMAGE
    assert settings.disable_default_cni is True
    assert settings.probe_archive == tmp_path / "probe.tar"
    assert isinstance(settings.probe_archive, Path)
    assert settings.run_token == "tok"


def run_pytest(folder: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, in an empty project, with a docker on PATH that only answers."""
    bin_dir, project = folder / "bin", folder / "project"
    bin_dir.mkdir(exist_ok=True)
    project.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text("#!/bin/sh\necho 28.2.2\n")
    (bin_dir / "docker").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CROSSFED_", "PYTEST_"))}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(folder), **environ)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_help_lists_the_node_image_cni_and_archive_options(tmp_path):
    result = run_pytest(tmp_path, "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    heading = result.stdout.index("crossfed: cross-cloud workload identity federation")
    section = " ".join(result.stdout[heading:].split())  # help lines are wrapped
    for flag, variable in (("--kind-node-image", "CROSSFED_KIND_NODE_IMAGE"),
                           ("--kind-disable-default-cni", "CROSSFED_KIND_DISABLE_DEFAULT_CNI"),
                           ("--crossfed-probe-image-archive", "CROSSFED_PROBE_IMAGE_ARCHIVE")):
        assert f"{flag} " in section or f"{flag}=" in section, flag
        assert f"[env {variable}]" in section, variable


SETTINGS_TEST = '''
from pathlib import Path

from crossfed.pytest_plugin import kind_settings


def test_settings(request):
    settings = kind_settings(request.config)
    assert settings.node_image == {node_image!r}
    assert settings.disable_default_cni is {cni!r}
    assert settings.probe_archive == {archive!r}
'''


@pytest.mark.parametrize("how", ["flags", "environment"])
def test_the_options_reach_kind_settings_from_flags_or_environment(tmp_path, how):
    archive = str(tmp_path / "probe.tar")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "test_settings.py").write_text(SETTINGS_TEST.format(
        node_image=NODE_IMAGE, cni=True, archive=Path(archive)).replace(
        "PosixPath(", "Path("))
    if how == "flags":
        result = run_pytest(tmp_path, "-q", "--crossfed-env", "process",
                            "--kind-node-image", NODE_IMAGE, "--kind-disable-default-cni",
                            "--crossfed-probe-image-archive", archive)
    else:
        result = run_pytest(tmp_path, "-q", "--crossfed-env", "process",
                            CROSSFED_KIND_NODE_IMAGE=NODE_IMAGE,
                            CROSSFED_KIND_DISABLE_DEFAULT_CNI="1",
                            CROSSFED_PROBE_IMAGE_ARCHIVE=archive)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_without_the_options_kind_settings_leave_it_to_the_node_image(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "test_settings.py").write_text(SETTINGS_TEST.format(
        node_image=None, cni=None, archive=None))
    result = run_pytest(tmp_path, "-q", "--crossfed-env", "process")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
