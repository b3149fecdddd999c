"""What a destination's filter did in a plan: rows that entered the subset (inserts of
keys the table held at A without matching), rows that left it (deletes of keys the
table still holds at B), and matching rows that changed (updates).

Asked only by `plan` (the preview), and only of the keys the plan inserts or deletes:
two key lookups, bounded by the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyiceberg.table import Table

from floe_egress.changes.keys import key_jsons
from floe_egress.changes.lookup import current_rows


def filter_effects(
    table: Table,
    key: tuple[str, ...],
    from_snapshot: int | None,
    to_snapshot: int | None,
    inserted: Sequence[Mapping[str, Any]],
    deleted: Sequence[Mapping[str, Any]],
    updated: int,
) -> dict[str, int | None]:
    """{"entered", "left", "changed"}: entered is None when A cannot be read (a first
    sync, an expired snapshot: every insert may be a new row)."""
    readable = from_snapshot is not None and table.snapshot_by_id(from_snapshot) is not None
    entered = None
    if readable and from_snapshot is not None:
        entered = _held(table, from_snapshot, key, inserted)
    left = _held(table, to_snapshot, key, deleted) if to_snapshot is not None else 0
    return {"entered": entered, "left": left, "changed": updated}


def _held(
    table: Table, snapshot_id: int, key: tuple[str, ...], keys: Sequence[Mapping[str, Any]]
) -> int:
    """How many of `keys` a row of the snapshot holds, matching or not."""
    if not keys:
        return 0
    return len(set(key_jsons(current_rows(table, snapshot_id, key, list(keys)), key)))


__all__ = ["filter_effects"]
