"""Secrets at every log level (issue 14, point 5): the scenarios of both directions, positive
and negative, run in a pytest of their own at --log-cli-level=DEBUG with JUnit (junit_logging=
all) and the run report; then everything that run wrote (its terminal output, the JUnit file,
the report, the state directory but its key files) is scanned by crossfed.secret_scan for full
JWTs, PEM private keys, AWS secret keys and session tokens, Entra client secrets and the values
the stand-ins handed out (the Key Vault secrets' values, the client secrets). Any hit fails,
listed without its secret; so does a scan that read nothing.

The values are witnessed in the inner run by a small plugin (WITNESS, written next to the run,
never into what is scanned): the Key Vault values are random per plan (crossfed/azure/
provision.py), so they are known only to the run that set them.

Without -s: pytest then puts every test's captured stdout, stderr and log into the JUnit file
(junit_logging=all) while the live log goes to the terminal, so both sinks are scanned; with -s
the captured output would only reach the terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossfed.pytest_plugin import selected_environments
from crossfed.redact import scrub_text
from crossfed.secret_scan import scan

pytestmark = [pytest.mark.local, pytest.mark.aws, pytest.mark.azure]

REPO = Path(__file__).resolve().parents[2]
SCENARIO_FILES = ["tests/e2e/test_aws_federation.py", "tests/e2e/test_azure_federation.py"]
# Positive and negative, both directions: the ones that carry session tokens to S3, client
# assertions and access tokens to Key Vault, and tokens that are refused.
SELECTION = " or ".join([
    "test_workload_assumes_role_and_lists_bucket", "test_workload_reads_the_secret",
    "other-service-account", "expired-token", "no-list-permission",
    "seed-credential-for-aks-sa", "azure-forged-kid", "no-secret-permission"])
# >>> Extra arguments for the inner run. The run report joins on its own once
# `pytest --help` lists --crossfed-report (see _report_args); put here anything else the
# scan should see written (e.g. another report format).
EXTRA_ARGS: list[str] = []
# <<<
# Variables that would change the inner run (a user's or CI's crossfed and pytest settings).
DROPPED_ENV = ("CROSSFED_", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST", "PYTEST_CURRENT")
INNER_TIMEOUT = 600

WITNESS = '''\
"""Written by tests/e2e/test_debug_secret_scan.py for its inner run: records the secret values
the stand-ins hand out into $SECRET_SCAN_WITNESS (0600), never logging them."""
import os


def _record(kind, value):
    fd = os.open(os.environ["SECRET_SCAN_WITNESS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(f"{kind}\\t{value}\\n")


def pytest_configure(config):
    from crossfed.aws.standin import AwsStandIn
    from crossfed.azure.directory import Directory
    from crossfed.azure.keyvault.model import Vault

    set_secret, add, start = Vault.set_secret, Directory.add, AwsStandIn.start

    def witnessed_set_secret(self, name, value, *args, **kwargs):
        _record("keyvault", value)
        return set_secret(self, name, value, *args, **kwargs)

    def witnessed_add(self, principal):
        for secret in principal.client_secrets:
            _record("entra", secret)
        return add(self, principal)

    def witnessed_start(self, *args, **kwargs):
        started = start(self, *args, **kwargs)
        if self.admin is not None:
            _record("aws", self.admin.secret_access_key)
        return started

    Vault.set_secret, Directory.add, AwsStandIn.start = (
        witnessed_set_secret, witnessed_add, witnessed_start)
'''


def _inner_env(witness_dir: Path, witness_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(witness_dir), env.get("PYTHONPATH"))
                                        if p)
    env["SECRET_SCAN_WITNESS"] = str(witness_file)
    return env


def _report_args(env: dict[str, str], cwd: Path, report: Path) -> list[str]:
    """--crossfed-report REPORT when this crossfed has the option."""
    shown = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"],
                           cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return ["--crossfed-report", str(report)] if "--crossfed-report" in shown.stdout else []


def test_no_secret_is_written_at_debug_level(tmp_path: Path, request: pytest.FixtureRequest
                                            ) -> None:
    if "process" not in selected_environments(request.config):
        # The inner run is the process environment whatever this session runs, so a session
        # that asked for others only (CI's kind session) would repeat the README suite's run.
        pytest.skip("its inner run is the process environment, which this session did not "
                    "select (--crossfed-env)")
    cwd, witness_dir = tmp_path / "cwd", tmp_path / "witness"
    cwd.mkdir()
    witness_dir.mkdir(mode=0o700)
    (witness_dir / "crossfed_scan_witness.py").write_text(WITNESS)
    witness = witness_dir / "values.tsv"
    terminal, junit = tmp_path / "out" / "terminal.txt", tmp_path / "out" / "junit.xml"
    state, report = tmp_path / "out" / "state", tmp_path / "out" / "report.html"
    terminal.parent.mkdir()
    env = _inner_env(witness_dir, witness)
    report_args = _report_args(env, cwd, report)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
            "-p", "crossfed_scan_witness", *(str(REPO / f) for f in SCENARIO_FILES),
            "-k", SELECTION, "--crossfed-env", "process", "--log-cli-level=DEBUG",
            "-o", "junit_logging=all", "--junitxml", str(junit),
            "--crossfed-state-dir", str(state), *report_args, *EXTRA_ARGS]
    with terminal.open("wb") as out:
        inner = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                               timeout=INNER_TIMEOUT)
    values = [line.split("\t", 1) for line in witness.read_text().splitlines()] \
        if witness.exists() else []
    known = [value for _, value in values]

    sinks = [terminal, junit, state, *([report] if report_args else [])]
    result = scan(sinks, known=known)
    unread = [str(sink) for sink in sinks
              if not any(f == sink or sink in f.parents for f in result.scanned_files)]
    # pytest.fail, not assert: the message is all a failure shows (hits without values)
    if result.nothing_scanned or unread:
        pytest.fail(f"nothing to scan in {', '.join(unread) or 'any output'}:\n"
                    f"{result.describe()}", pytrace=False)
    if result.hits:
        pytest.fail(f"secrets written at DEBUG level:\n{result.describe()}", pytrace=False)
    if inner.returncode != 0:
        tail = scrub_text(terminal.read_text(errors="replace")[-3000:], *known)
        pytest.fail(f"the inner run failed ({inner.returncode}):\n{tail}", pytrace=False)
    unseen = {"keyvault", "entra", "aws"} - {kind for kind, _ in values}
    if unseen:
        pytest.fail(f"the witness saw no {'/'.join(sorted(unseen))} value: the scan for "
                    "known values would prove nothing", pytrace=False)
