"""What one cycle did (or would do): the result `sync`, `plan`, the daemon and its
metrics read."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from floe_egress.errors import FailureKind

Status = Literal["ok", "noop", "failed", "skipped"]


@dataclass(slots=True)
class CycleResult:
    destination: str
    status: Status
    plan: str | None = None
    from_snapshot: int | None = None
    to_snapshot: int | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    invalid: int = 0
    invalid_sample: list[dict[str, Any]] = field(default_factory=list)
    """Some of the invalid keys: `{"key", "reason" (null_key, duplicate_key), "rows"}`."""
    failed: int = 0
    retried: int = 0
    error: str | None = None
    error_kind: FailureKind | None = None
    """Whether a failed cycle may succeed when retried (see errors.py)."""
    error_type: str | None = None
    retry_after: float | None = None
    """Seconds the destination asked to be left alone (Retry-After), when it said."""
    reason: str = ""
    digest_rebuilt: str | None = None
    """Why the cycle rebuilt the destination's digest (lost, damaged, another
    fingerprint): it sent every row once."""
    duration_seconds: float = 0.0
    rate_limit_wait_seconds: float = 0.0
    http_statuses: dict[int, int] = field(default_factory=dict)
    sample: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    filter_effects: dict[str, int | None] | None = None
    """`plan` of a destination with a filter: rows that entered and left the subset,
    matching rows that changed (daemon/filters.py)."""
    table_pointer: str | None = None
    """The metadata file of the table the cycle read (the daemon's polls compare it)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "destination": self.destination,
            "status": self.status,
            "plan": self.plan,
            "from_snapshot": self.from_snapshot,
            "to_snapshot": self.to_snapshot,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "invalid": self.invalid,
            "invalid_sample": self.invalid_sample,
            "failed": self.failed,
            "retried": self.retried,
            "error": self.error,
            "error_kind": self.error_kind,
            "retry_after_seconds": self.retry_after,
            "reason": self.reason,
            "digest_rebuilt": self.digest_rebuilt,
            "duration_seconds": round(self.duration_seconds, 3),
        }
        if self.sample:
            data["sample"] = self.sample
        if self.filter_effects is not None:
            data["filter"] = self.filter_effects
        return data


def invalid_lines(invalid: int, sample: Sequence[Mapping[str, Any]]) -> list[str]:
    """A run's invalid rows and the sample of their keys as text (none when none)."""
    if not invalid:
        return []
    plural = "s" if invalid != 1 else ""
    lines = [f"invalid: {invalid} row{plural} never sent (null or duplicated key)"]
    for item in sample:
        rows = int(item.get("rows", 1))
        held = f" ({rows} rows)" if rows != 1 else ""
        lines.append(f"  {json.dumps(item['key'], default=str)} {item['reason']}{held}")
    return lines


def filter_line(effects: Mapping[str, int | None]) -> str:
    """A plan's filter effects as text: how many rows entered the subset (inserts of
    rows the table held without matching), left it, and changed within it."""
    entered = effects.get("entered")
    shown = "?" if entered is None else str(entered)
    return (
        f"{shown} entered the subset, {effects.get('left', 0)} left it, "
        f"{effects.get('changed', 0)} changed in it"
    )


__all__ = ["CycleResult", "Status", "filter_line", "invalid_lines"]
