"""The scanner behind the DEBUG-level secret scan (crossfed.secret_scan): it finds each kind
of secret planted in a tree of run outputs and reports it without its value, finds nothing in
ordinary or redacted text, and says when it had nothing to scan."""

from __future__ import annotations

import base64
import html
import json
import secrets
from pathlib import Path

import pytest
from moto.sts.utils import random_session_token

from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.redact import scrub_text
from crossfed.secret_scan import scan, scan_text

pytestmark = [pytest.mark.local]


@pytest.fixture(scope="module")
def planted() -> dict[str, str]:
    return {
        "jwt": Issuer("https://127.0.0.1:1", SigningKey.generate()).mint(
            ServiceAccountRef("crossfed-probe", "s3-reader"), ["sts.amazonaws.com"], 3600),
        "pem": SigningKey.generate().private_pem().decode(),
        "aws_secret": "Ab1" + base64.b64encode(secrets.token_bytes(30)).decode()[:37],
        "session_token": random_session_token(),
        "entra_secret": "Qz4" + "7Q~" + secrets.token_urlsafe(26)[:34],
        "vault_value": secrets.token_urlsafe(24),
    }


def _tree(root: Path, planted: dict[str, str]) -> Path:
    """A run's outputs: terminal text, JUnit, an HTML report, a state directory."""
    (root / "state" / "pki").mkdir(parents=True)
    (root / "state" / "pods" / "p" / "serviceaccount").mkdir(parents=True)
    (root / "terminal.txt").write_text(
        "collected 3 items\n"
        f"DEBUG botocore.auth: Authorization: Bearer {planted['jwt']}\n"
        "GET /?Action=ListBuckets&X-Amz-Security-Token="
        f"{planted['session_token'].replace('+', '%2B').replace('/', '%2F')} 200\n")
    pem_in_attribute = planted["pem"].replace("\n", "&#10;")
    (root / "junit.xml").write_text(
        f'<testsuite><testcase name="t"><failure message="{pem_in_attribute}"/>'
        f"<system-err>\nAWS_SECRET_ACCESS_KEY={planted['aws_secret']}\n</system-err>"
        "</testcase></testsuite>\n")
    (root / "report.html").write_text(
        f"<html><body><pre>client_secret={html.escape(planted['entra_secret'])}</pre>"
        "</body></html>\n")
    (root / "state" / "decisions.json").write_text(
        json.dumps({"vault": {"value": planted["vault_value"]},
                    "key": planted["pem"]}, indent=1))
    (root / "state" / "pki" / "issuer.key").write_text(planted["pem"])  # key files: skipped
    (root / "state" / "pods" / "p" / "serviceaccount" / "token").write_text(planted["jwt"])
    (root / "state" / "pki" / "issuer.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    return root


def test_every_planted_kind_is_found_and_shown_without_its_value(
        tmp_path: Path, planted: dict[str, str]) -> None:
    root = _tree(tmp_path, planted)
    result = scan([root], known=[planted["vault_value"]])
    found = {(hit.path.relative_to(root).as_posix(), hit.line, hit.kind) for hit in result.hits}
    assert found == {
        ("terminal.txt", 2, "jwt"),
        ("terminal.txt", 3, "aws session token"),
        ("junit.xml", 1, "private key"),
        ("junit.xml", 2, "aws secret key"),
        ("report.html", 1, "entra client secret"),
        ("state/decisions.json", 3, "known secret"),
        ("state/decisions.json", 5, "private key"),  # JSON's escaped newlines
    }
    shown = result.describe() + "".join(repr(hit) for hit in result.hits)
    for value in planted.values():
        middle = value[len(value) // 2:][:12]
        leaked = value in shown or middle in shown
        assert not leaked, f"the planted value ending {value[-4:]} shows"
    assert "sha256:" in shown
    assert {p.name for p, why in result.skipped if why == "key file"} == {"issuer.key", "token"}
    assert len(result.scanned_files) == 5 and not result.nothing_scanned
    assert result.scanned_bytes == sum(p.stat().st_size for p in result.scanned_files)


def test_a_known_value_is_found_as_urls_and_markup_write_it(planted: dict[str, str]) -> None:
    value = "pa ss/word&" + secrets.token_hex(4)
    for text in (f"q?v={value.replace(' ', '%20').replace('/', '%2F').replace('&', '%26')}",
                 f"<td>{html.escape(value)}</td>", json.dumps({"v": value}), value):
        hits = scan_text(text, Path("f"), known=[value])
        assert [hit.kind for hit in hits] == ["known secret"], text[:4]


def test_clean_and_redacted_text_has_no_hits(planted: dict[str, str]) -> None:
    clean = "\n".join([
        "assumed arn:aws:iam::123456789012:role/crossfed/crossfed-25a280-aws-allowed-43b13ca0",
        "thumbprint 9e99a48a9960b14926bb7f3b02e22da2b0ab7280 " + "ab" * 20 + " " + "0" * 40,
        "sha256 " + "3f" * 32 + " uuid 6a537560-05ed-4fbd-befc-d7e989b10bf8",
        "RequestId t6XbDeiSiRKReFA1OM8PHFesbajpPY5b7bsm9RRW8UAEZG5AaX0w",
        "tests/e2e/test_aws_federation.py::test_workload_is_refused[process-expired-token]",
        "crossfed.environments.standins.LocalStandIns botocore.parsers.ResponseParser",
        "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/botocore/signers.py",
        "AccessKeyId ASIARZPUZDIKCI3AUQ6S Credential=ASIARZPUZDIKCI3AUQ6S/20261201/us-east-1",
        "-----BEGIN CERTIFICATE-----", "-----BEGIN PRIVATE KEY----- (no body)",
        "client_secret=******** access_token: REDACTED",
    ])
    assert scan_text(clean, Path("clean.txt")) == []
    dirty = "\n".join(f"value {value}" for value in planted.values())
    kinds = {hit.kind for hit in scan_text(dirty, Path("d"), known=[planted["vault_value"]])}
    assert kinds == {"jwt", "private key", "aws secret key", "aws session token",
                     "entra client secret", "known secret"}
    # what crossfed.redact leaves of them is clean (a boolean: a failure prints no secret)
    redacted = scrub_text(dirty, planted["vault_value"])
    left = [hit.kind for hit in scan_text(redacted, Path("r"), known=[planted["vault_value"]])]
    assert left == []


def test_nothing_to_scan_is_reported(tmp_path: Path) -> None:
    empty = scan([tmp_path])
    assert empty.nothing_scanned and empty.scanned_bytes == 0 and empty.hits == []
    (tmp_path / "only.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    only_skipped = scan([tmp_path, tmp_path / "not-there.txt"])
    assert only_skipped.nothing_scanned
    assert sorted(why for _, why in only_skipped.skipped) == ["binary", "key file"]
    assert only_skipped.missing == [tmp_path / "not-there.txt"]
    assert "scanned 0 files, 0 bytes" in only_skipped.describe()
