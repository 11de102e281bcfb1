"""crossfed as other teams get it: a wheel installed into a fresh virtualenv, beside the pytest
plugins they are likely to have, run from folders that are not this repository.

The virtualenv has no access to this repository (no system site-packages, no PYTHONPATH, an
empty working folder), so a file the package forgets to ship, or an import of the repository's
`fixtures/`, fails here. Building it installs crossfed's dependencies from the package index:
about a minute the first time, pip's cache makes later runs faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from kind_fakes import install_executables

pytestmark = [pytest.mark.package]

REPO_ROOT = Path(__file__).resolve().parents[2]
NEIGHBOURS = ("pytest-kind-ng", "pytest-kubernetes", "pytest-xdist")  # plugins users have
USER_TEST = REPO_ROOT / "tests" / "local" / "user_repository" / "test_our_federation.py"


class Venv:
    def __init__(self, root: Path) -> None:
        self.root, self.bin = root, root / "bin"

    def run(self, *argv: str, cwd: Path, path: str = "/usr/bin:/bin",
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        home = self.root.parent / "home"  # the user's home: run state goes there, not to cwd
        home.mkdir(exist_ok=True)
        """A command of the venv, with an environment that knows nothing of this repository."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CROSSFED_", "PYTEST_", "PYTHON", "VIRTUAL_ENV", "AWS_",
                                    "AZURE_", "KUBECONFIG"))}
        env.pop("XDG_RUNTIME_DIR", None)
        env.update(PATH=f"{self.bin}:{path}", HOME=str(home), VIRTUAL_ENV=str(self.root))
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)

    def pytest(self, *args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run("python", "-m", "pytest", "-p", "no:cacheprovider", *args, cwd=cwd,
                        **kwargs)


def _check(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built as `pip wheel` builds any sdist-less project: setuptools in an isolated env.
    _check(subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "--disable-pip-version-check", "--wheel-dir", str(out),
                           str(REPO_ROOT)],
                          capture_output=True, text=True, timeout=600))
    [built] = out.glob("crossfed-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with the wheel and the neighbouring plugins, nothing else of ours."""
    root = tmp_path_factory.mktemp("venv") / "v"
    venv.create(root, with_pip=True, system_site_packages=False)
    env = Venv(root)
    _check(env.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   str(wheel), *NEIGHBOURS, cwd=root.parent))
    return env


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_wheel_ships_the_suite_and_the_kind_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("crossfed/suite/test_aws.py", "crossfed/suite/test_azure.py",
                    "crossfed/suite/plans.py", "crossfed/suite/data/seed-trust-policy.json",
                    "crossfed/cluster/probe.Dockerfile", "crossfed/cluster/pack_image.py",
                    "crossfed/probe/__main__.py"):
        assert shipped in names
    assert not [name for name in names if name.startswith(("fixtures/", "tests/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "Requires-Dist: PyYAML" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_the_suite_passes_from_an_empty_folder(installed: Venv, empty: Path) -> None:
    where = _check(installed.run("python", "-c", "import crossfed; print(crossfed.__file__)",
                                 cwd=empty))
    assert where.startswith(str(installed.root))  # the wheel's copy, not this repository
    no_docker = installed.root.parent / "no-docker-bin"  # whatever this host has installed
    no_docker.mkdir(exist_ok=True)
    out = _check(installed.pytest("--pyargs", "crossfed.suite", "-m", "local", "-q",
                                  cwd=empty, path=str(no_docker)))
    assert "24 passed" in out
    assert "crossfed: process: 24 of 24 scenarios passed in processes" in out
    # no docker on this PATH: kind says why in one line, recommending what is supported
    [kind_line] = [line for line in out.splitlines() if "kind environment skipped" in line]
    assert "Docker Engine running on Linux" in kind_line and "or Docker Desktop" not in kind_line
    assert "Docker Desktop is not supported" in kind_line  # as the README says
    assert list(empty.iterdir()) == []  # nothing written into the user's folder
    runs = installed.root.parent / "home" / ".cache" / "crossfed" / "runs"
    assert list(runs.iterdir()) == []  # the run's keys and tokens removed at its end


def test_crossfed_test_runs_the_same_suite(installed: Venv, empty: Path) -> None:
    out = _check(installed.run("crossfed", "test", "-p", "no:cacheprovider", "-m", "local",
                               "-q", "-k", "aws", cwd=empty))
    # -m local leaves out the 11 Azure tests and all 48 cloud-tier parameters; the upgrade
    # test (marked aws and azure) has no environment without --upgrade-webhooks-to (it runs
    # only in the E@before/E@after ones) and its one empty parameter set is deselected
    assert "13 passed" in out and "60 deselected" in out


def test_kind_set_up_finds_its_files_from_the_wheel(installed: Venv, empty: Path,
                                                   tmp_path: Path) -> None:
    """The kind environment of the installed package, against fake kind/docker/kubectl: it
    builds the probe image from the Dockerfile and sources the wheel shipped, creates the
    cluster with the key files it wrote, and gets as far as the cluster's API server (which
    the fakes do not serve)."""
    state = tmp_path / "fake-tools.json"
    install_executables(tmp_path / "fakebin", state, [{"Subnet": "127.0.0.0/8",
                                                        "Gateway": "127.0.0.1"}])
    result = installed.pytest("--pyargs", "crossfed.suite", "-m", "local", "-x", "-q",
                              "--crossfed-env", "kind", "--crossfed-webhooks", "reference",
                              "-k", "assumes_role", cwd=empty,
                              path=f"{tmp_path / 'fakebin'}:/usr/bin:/bin", timeout=600)
    tools = json.loads(state.read_text())
    site = str(installed.root)
    [build] = [call for call in tools["calls"] if call[:2] == ["docker", "build"]]
    dockerfile = build[build.index("--file") + 1]
    assert dockerfile.startswith(site) and dockerfile.endswith("crossfed/cluster/probe.Dockerfile")
    assert tools["contexts"] == [["crossfed/__init__.py", "crossfed/probe/__init__.py",
                                  "crossfed/probe/__main__.py", "crossfed/probe/aws.py",
                                  "crossfed/probe/azure.py", "crossfed/probe/report.py"]]
    [config] = tools["created"]
    mounts = config["nodes"][0]["extraMounts"]  # the signing key pair crossfed wrote
    assert len(mounts) == 2 and all(Path(m["hostPath"]).is_file() for m in mounts)
    # set-up went on to the cluster itself: the fakes serve no API server, so the scenario
    # errors there, and the run deletes the cluster it created
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 error" in result.stdout, result.stdout[-3000:]
    assert ("cannot reach the cluster's API server https://127.0.0.1:40123" in result.stdout
            and "check that the cluster is up" in result.stdout), result.stdout[-3000:]
    assert tools["clusters"] == {}
    assert ["kind", "delete", "cluster", "--name", "crossfed"] in [c[:5] for c in tools["calls"]]


def test_help_works_beside_pytest_kind_ng_and_pytest_kubernetes(installed: Venv,
                                                                empty: Path) -> None:
    out = _check(installed.pytest("--help", cwd=empty))
    for flag in ("--crossfed-keep-cluster", "--crossfed-kubeconfig", "--crossfed-kind-bin",
                 "--keep-cluster", "--kind-bin", "--k8s-kubeconfig", "--numprocesses"):
        assert flag in out  # crossfed's and its neighbours' options, side by side
    plugins = _check(installed.pytest("--version", "--version", cwd=empty))
    for plugin in ("crossfed", "pytest-kind", "pytest-kubernetes", "xdist"):
        assert plugin in plugins


def test_old_spelling_belongs_to_the_plugin_that_defines_it(installed: Venv, empty: Path) -> None:
    """--keep-cluster is pytest-kind-ng's here, so crossfed leaves it alone (no warning)."""
    (empty / "test_x.py").write_text("def test_x(request):\n"
                                     "    assert request.config.getoption('keep_cluster')\n"
                                     "    assert not request.config.getoption("
                                     "'crossfed_keep_cluster')\n")
    out = _check(installed.pytest("-q", "--keep-cluster", "-W", "error::DeprecationWarning",
                                  cwd=empty))
    assert "1 passed" in out


def test_a_users_repository_runs_its_own_plans(installed: Venv, empty: Path) -> None:
    """The README's example test file, copied into a folder outside this repository."""
    (empty / USER_TEST.name).write_text(USER_TEST.read_text())
    out = _check(installed.pytest("-q", "-rA", cwd=empty))
    assert "2 passed" in out
