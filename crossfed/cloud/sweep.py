"""`crossfed sweep --aws/--azure`: what the two clouds' sweepers share. An object is swept only
if it carries crossfed's run-id tag (crossfed/cloud/tags.py) and is selected: by run id
(whatever its age), or by age (`crossfed-created-at` older than the limit). Leftovers are
deleted in the order found (each cloud lists them in the order its services need), one line
per object, and a final count.

CHOICE: with --older-than, an object whose created-at tag is missing or not a time is left
alone (only --run-id sweeps it): its age is unknown, and it may belong to a run in progress.
`--older-than 0` is "every run" (as the help says), so it takes such objects too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from crossfed.cloud.tags import CREATED_AT, RUN_ID, is_crossfeds, parse_stamp


class SweepUsageError(Exception):
    """Credentials, subscription or access missing: one line naming the fix."""


AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mh]?)\s*$", re.IGNORECASE)


def parse_age(text: str, bare_unit: str) -> dt.timedelta:
    """`90m`, `6h`, or a bare number in bare_unit ("m" or "h"); ValueError otherwise."""
    found = AGE.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not an age: give a number of "
                         f"{'hours' if bare_unit == 'h' else 'minutes'} or a value with a "
                         "unit, e.g. 90m or 6h (0 or more)")
    value, unit = float(found.group(1)), (found.group(2) or bare_unit).lower()
    return dt.timedelta(hours=value) if unit == "h" else dt.timedelta(minutes=value)


@dataclass(frozen=True)
class Selector:
    """Which of crossfed's objects a sweep takes."""

    run_id: str | None
    older_than: dt.timedelta | None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def __post_init__(self) -> None:
        if self.run_id is None and self.older_than is None:
            raise ValueError("a sweep needs a run id or an age")

    def selects(self, tags: dict[str, str] | None) -> bool:
        if not is_crossfeds(tags):
            return False  # never an object without crossfed-run-id
        assert tags is not None
        if self.run_id is not None:
            return tags[RUN_ID] == self.run_id
        if self.older_than is None:
            return False
        if self.older_than <= dt.timedelta(0):
            return True  # every run's, whatever (or whether) its created-at says
        created = parse_stamp(tags.get(CREATED_AT, ""))
        return created is not None and self.now - created >= self.older_than


@dataclass
class Leftover:
    """One object to delete: `kind name (run R, created C)`."""

    kind: str
    name: str
    tags: dict[str, str]
    delete: Callable[[], object] = field(repr=False)
    note: str = ""

    def describe(self) -> str:
        created = self.tags.get(CREATED_AT) or "unknown"
        extra = f"; {self.note}" if self.note else ""
        return (f"{self.kind} {self.name} (run {self.tags.get(RUN_ID)}, created "
                f"{created}{extra})")


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def delete_all(cloud: str, leftovers: list[Leftover], dry_run: bool, out: TextIO,
               err: TextIO) -> int:
    """Print and (unless dry_run) delete; returns the number that could not be deleted."""
    failures = 0
    done = 0
    for leftover in leftovers:
        print(f"{'would delete' if dry_run else 'deleting'} {leftover.describe()}", file=out,
              flush=True)
        if dry_run:
            continue
        try:
            leftover.delete()
            done += 1
        except Exception as exc:  # keep going: one stuck object must not leave the rest
            failures += 1
            print(f"crossfed sweep: could not delete {leftover.kind} {leftover.name}: "
                  f"{one_line(str(exc))}", file=err, flush=True)
    if dry_run:
        print(f"crossfed sweep: {cloud}: would delete {len(leftovers)} object(s)", file=out)
    else:
        print(f"crossfed sweep: {cloud}: deleted {done} of {len(leftovers)} object(s)"
              + (f", {failures} could not be deleted" if failures else ""), file=out)
    return failures
