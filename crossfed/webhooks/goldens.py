"""Golden files of webhook mutations: <dir>/<webhook>-<version>/<case>.json, one mutation each.

Written by --record-mutations and checked offline by --compare-mutations; the project keeps
goldens of the reference versions under tests/local/goldens/webhook-mutations/. The JSON is
stable: sorted keys (dicts here are keyed by name, their order means nothing), two-space
indent, a final newline; lists keep their order (env lists are ordered by the webhooks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from crossfed.webhooks.drift import Mutation, drift

# one path segment each: a name must not climb out of the golden directory
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _segment(kind: str, value: str) -> str:
    if not _SEGMENT.fullmatch(value) or ".." in value:
        raise ValueError(f"golden {kind} {value!r}: letters, digits, '.', '_' and '-' only")
    return value


def golden_path(directory: str | Path, webhook: str, version: str, case: str) -> Path:
    folder = f"{_segment('webhook', webhook)}-{_segment('version', version)}"
    return Path(directory) / folder / f"{_segment('case', case)}.json"


def dumps(webhook: str, version: str, case: str, mutation: Mutation) -> str:
    document: dict[str, Any] = {"webhook": webhook, "version": version, "case": case,
                                "mutation": mutation.to_dict()}
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def record(directory: str | Path, webhook: str, version: str, case: str,
           mutation: Mutation) -> Path:
    """Write the golden of one case (replacing any); returns its path."""
    path = golden_path(directory, webhook, version, case)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(webhook, version, case, mutation), encoding="utf-8")
    return path


def load(directory: str | Path, webhook: str, version: str, case: str) -> Mutation | None:
    """The recorded mutation, None when there is no golden."""
    path = golden_path(directory, webhook, version, case)
    if not path.is_file():
        return None
    return Mutation.from_dict(json.loads(path.read_text(encoding="utf-8"))["mutation"])


def compare(directory: str | Path, webhook: str, version: str, case: str,
            mutation: Mutation) -> list[str]:
    """Drift lines of this mutation against the golden; [] = it matches."""
    golden = load(directory, webhook, version, case)
    if golden is None:
        path = golden_path(directory, webhook, version, case)
        return [f"{webhook} {version} {case}: no golden at {path}; record it with "
                f"--record-mutations {directory}"]
    return [f"{webhook} {version} {case}: {line}"
            for line in drift(mutation, golden, actual_label="run", expected_label="golden")]
