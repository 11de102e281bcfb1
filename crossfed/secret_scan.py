"""Find secrets in what a run wrote: terminal output, JUnit XML, HTML reports, JSON, logs.

    result = scan([Path("out.txt"), Path("junit.xml"), state_dir], known=[vault_value])
    assert result.scanned_files and not result.hits, result.describe()

The opposite of crossfed.redact: redact replaces anything that might be a secret; the scanner
reports only what is one, so that a hit is worth failing a run for. It looks for

- full JWTs: three base64url parts (the last may be empty, alg none), header and payload each
  decoding to a JSON object;
- PEM private key blocks (BEGIN ... PRIVATE KEY with a body), also with their newlines escaped
  (JSON's \\n, XML's &#10;);
- AWS session tokens, by their prefixes (moto's FQoGZXIvYXdzE, AWS's FwoG and IQoJb3JpZ2lu),
  also percent-encoded in a URL;
- AWS secret access keys: a run of exactly 40 base64 characters with upper and lower case
  letters and digits (hex digests, paths and names are not);
- Entra client secrets: three characters, a digit, "Q~", then 31-34 more;
- each `known` value (a Key Vault secret's value, a client secret), as it is and as JSON,
  XML/HTML and URLs escape it.

A hit names the file, the line, the kind and redact.fingerprint of the value, never the value.
ScanResult counts the files and bytes read: a scan that read nothing proves nothing.

Key files are skipped (KEY_FILES, `is_key_file`): files whose whole job is to hold one secret,
written by crossfed into a run's state directory through crossfed.secret_files (0600):
`*.key` (the run CA's TLS keys, crossfed/pki.py; the issuer's signing keys,
crossfed/issuer/keys.py), the projected service-account token files a process workload reads
(`token`, `azure-identity-token`; crossfed/workload/process.py) and kubeconfigs (a client key;
crossfed/cluster/). A hit there is the file doing its job; everything else in the directory
(certificates, CA bundles, owner.json, decision records) is scanned. Files with NUL bytes in
their first 8 KiB are binary and skipped too; both kinds are listed in ScanResult.skipped.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from crossfed.redact import fingerprint

KEY_FILES = ("*.key", "token", "azure-identity-token", "kubeconfig", "*.kubeconfig")
BINARY_PROBE = 8192

_JWT = re.compile(r"(?<![\w.-])([\w-]{8,})\.([\w-]{8,})\.([\w-]*)(?![\w-])")
# A newline as the formats around a PEM block may spell it.
_NL = r"(?:\s|\\r|\\n|&#1[03];|&#x[aAdD];)"
_PEM = re.compile(
    rf"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----{_NL}*(?:[A-Za-z0-9+/=]{{4,}}{_NL}*){{2,}}")
_SESSION_TOKEN = re.compile(
    r"(?:FQoGZXIvYXdzE|FwoGZXIvYXdzE|IQoJb3JpZ2lu)(?:[A-Za-z0-9+/=]|%2[BbFf]|%3[Dd]){80,}")
# Not inside a longer run, nor beside a percent-escape (a piece of a URL-encoded token); KEY=
# before it is fine, base64 padding after it is not.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9+/_%-])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=_%-])")
_ENTRA_SECRET = re.compile(r"(?<![\w.~-])[\w.-]{3}\dQ~[\w.~-]{31,34}(?![\w~-]|\.[\w.~-])")


@dataclass(frozen=True)
class Hit:
    path: Path
    line: int
    kind: str
    fingerprint: str  # crossfed.redact.fingerprint of the value: never the value

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} {self.fingerprint}"


@dataclass
class ScanResult:
    hits: list[Hit] = field(default_factory=list)
    scanned_files: list[Path] = field(default_factory=list)
    scanned_bytes: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)
    missing: list[Path] = field(default_factory=list)  # paths given that did not exist

    @property
    def nothing_scanned(self) -> bool:
        return not self.scanned_files or self.scanned_bytes == 0

    def describe(self) -> str:
        """What was read, and each hit (without its secret)."""
        lines = [f"scanned {len(self.scanned_files)} files, {self.scanned_bytes} bytes; "
                 f"skipped {len(self.skipped)}; {len(self.hits)} hits"]
        lines += [f"  {hit}" for hit in self.hits]
        lines += [f"  missing: {path}" for path in self.missing]
        return "\n".join(lines)


def is_key_file(path: Path) -> bool:
    return any(path.match(pattern) for pattern in KEY_FILES)


def _b64_json_object(part: str) -> bool:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict)


def _aws_secret(value: str) -> bool:
    return (any(c.isupper() for c in value) and any(c.islower() for c in value)
            and any(c.isdigit() for c in value) and sum(c in "/+" for c in value) <= 6)


def _known_forms(value: str) -> set[str]:
    """The value and how JSON, XML/HTML and URL query strings write it."""
    return {value, json.dumps(value)[1:-1], html.escape(value), quote(value, safe=""),
            quote(value, safe="/")}


def _found(text: str, known: list[str]) -> Iterator[tuple[int, str, str]]:
    """(offset, kind, value) of every secret in text."""
    for match in _JWT.finditer(text):
        header, payload = match.group(1), match.group(2)
        if _b64_json_object(header) and _b64_json_object(payload):
            yield match.start(), "jwt", match.group(0)
    for match in _PEM.finditer(text):
        yield match.start(), "private key", match.group(0)
    for match in _SESSION_TOKEN.finditer(text):
        yield match.start(), "aws session token", match.group(0)
    for match in _AWS_SECRET.finditer(text):
        if _aws_secret(match.group(0)):
            yield match.start(), "aws secret key", match.group(0)
    for match in _ENTRA_SECRET.finditer(text):
        yield match.start(), "entra client secret", match.group(0)
    for value in known:
        for form in _known_forms(value):
            start = text.find(form)
            while start >= 0:
                yield start, "known secret", value
                start = text.find(form, start + 1)


def scan_text(text: str, path: Path, known: Iterable[str] = ()) -> list[Hit]:
    """The hits in one text (named `path` in them), one per value and line."""
    values = [v for v in known if v and len(v) >= 8]
    hits, seen = [], set()
    for offset, kind, value in _found(text, values):
        line = text.count("\n", 0, offset) + 1
        key = (line, kind, value)
        if key not in seen:
            seen.add(key)
            hits.append(Hit(path, line, kind, fingerprint(value)))
    return sorted(hits, key=lambda hit: (hit.line, hit.kind))


def _files(paths: Iterable[Path], result: ScanResult) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            result.missing.append(path)


def scan(paths: Iterable[Path], known: Iterable[str] = (),
         skip: Callable[[Path], bool] = is_key_file) -> ScanResult:
    """Scan files and directories (recursively) for secrets; `skip` says which files are key
    files (default KEY_FILES)."""
    known = list(known)
    result = ScanResult()
    for path in _files(paths, result):
        if skip(path):
            result.skipped.append((path, "key file"))
            continue
        raw = path.read_bytes()
        if b"\0" in raw[:BINARY_PROBE]:
            result.skipped.append((path, "binary"))
            continue
        result.scanned_files.append(path)
        result.scanned_bytes += len(raw)
        result.hits += scan_text(raw.decode("utf-8", errors="replace"), path, known)
    return result
