"""What marks an object in a cloud account as crossfed's: three tags, and on IAM the path
`/crossfed/`. Everything the cloud tier creates carries them; `crossfed sweep --aws/--azure`
deletes only what carries them (it never touches an object without `crossfed-run-id`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

RUN_ID = "crossfed-run-id"
CREATED_AT = "crossfed-created-at"
DELETE_AFTER = "crossfed-delete-after"
IAM_PATH = "/crossfed/"
DEFAULT_TTL_HOURS = 6.0


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> dt.datetime | None:
    """A tag's UTC ISO 8601 time, or None if it is not one (then the object is judged by run id
    only)."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class CloudTags:
    run_id: str
    created_at: str
    delete_after: str

    @classmethod
    def new(cls, run_id: str, ttl_hours: float = DEFAULT_TTL_HOURS,
            now: dt.datetime | None = None) -> CloudTags:
        now = now or dt.datetime.now(dt.timezone.utc)
        return cls(run_id, _stamp(now), _stamp(now + dt.timedelta(hours=ttl_hours)))

    def as_dict(self) -> dict[str, str]:
        return {RUN_ID: self.run_id, CREATED_AT: self.created_at, DELETE_AFTER: self.delete_after}

    def aws(self) -> list[dict[str, str]]:
        """IAM's and S3's shape: [{"Key": ..., "Value": ...}]."""
        return [{"Key": key, "Value": value} for key, value in self.as_dict().items()]


def from_aws(tags: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value")) for t in tags or []}


def is_crossfeds(tags: dict[str, str] | None) -> bool:
    return bool(tags) and bool((tags or {}).get(RUN_ID))
