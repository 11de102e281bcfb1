"""The AWS stand-in's process: it dies with its harness, and nothing it hands out or records
carries a secret in full."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crossfed.aws.standin import AdminCredentials
from crossfed.aws.wire import internal_detail

pytestmark = [pytest.mark.local, pytest.mark.aws]

HARNESS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from crossfed.aws.standin import AwsStandIn
    from crossfed.pki import RunCA
    ca = RunCA(Path(sys.argv[1]))
    aws = AwsStandIn(ca, trusted_roots=str(ca.bundle_path)).start()
    print(aws.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ", 1)[1].startswith("Z"))


def test_the_stand_in_dies_with_a_killed_harness(tmp_path: Path) -> None:
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        child = int(harness.stdout.readline())
        assert _alive(child)
        harness.send_signal(signal.SIGKILL)  # no teardown runs
        harness.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"the AWS stand-in (pid {child}) outlived its harness"
    finally:
        if harness.poll() is None:
            harness.kill()


def test_admin_credentials_show_at_most_the_secret_s_last_four_characters() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    shown = repr(AdminCredentials("AKIAIOSFODNN7EXAMPLE", secret))
    assert "AKIAIOSFODNN7EXAMPLE" in shown
    # booleans: a failure must not print the secret
    shows_more = any(part in shown for part in (secret, secret[:-4], secret[-5:]))
    assert not shows_more, "the repr shows more of the secret than its last 4 characters"
    in_str = secret in str(AdminCredentials("AKIAIOSFODNN7EXAMPLE", secret))
    assert not in_str, "str() shows the secret"


def test_an_internal_error_on_the_feed_carries_no_part_of_the_token() -> None:
    token = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpi"
             "In0.c2lnbmF0dXJlLXZhbHVlLWhlcmUtbG9uZy1lbm91Z2gtdG8tbWF0dGVy")
    other = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"
    for exc in (ValueError(f"cannot parse {token}"), KeyError(token.split(".")[2]),
                RuntimeError(f"{token.split('.')[1]} and {other}")):
        detail = internal_detail(exc, {"WebIdentityToken": token})
        parts = [token, *token.split("."), other]
        leaked = any(part in detail for part in parts)  # a boolean: never print the token
        assert not leaked, "a token part reached the feed"
        assert type(exc).__name__ in detail and "sha256:" in detail, "no type or fingerprint"
