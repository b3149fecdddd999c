"""What one write sends, per sync mode, given what the destination table holds.

- upsert: merge by key (dlt `merge`: `upsert` on PostgreSQL and DuckDB, `delete-insert`
  on MySQL/MariaDB and SQLite, the only strategy dlt's sqlalchemy destination has).
- update: the keys the table holds are looked up; only their rows are merged (dlt has
  no update-only disposition). The other rows are skipped, not counted as delivered.
- insert: the rows whose key the table does not hold are appended; the others are
  skipped. A resent batch therefore inserts nothing twice.
- mirror: upsert rows merged with `_floe_deleted = false`; delete rows merged with
  `_floe_deleted = true` (dlt's `hard_delete` hint) for the keys the table holds. A
  delete of an absent key is not sent (dlt's upsert would insert it as a row of nulls)
  and counts as delivered: the key is absent, as asked.
- append: every change is an event row (`_floe_op`, `_floe_snapshot_id`,
  `_floe_synced_at`), one per key and snapshot; events the table already holds (a
  resent batch) are not appended again, and count as delivered.

Initial load: while the table is missing or empty, or holds only the earlier batches of
the same change range (whose keys are disjoint from this batch's), merging is pointless:
rows are appended, which skips dlt's staging table and MERGE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.config.models import SyncMode
from floe_egress.sinks.database.frames import (
    event_identity,
    only_ops,
    op_counts,
    unique_keys,
    with_snapshot,
)
from floe_egress.sinks.mapping import filter_for_mode

Fresh = Literal["empty", "continuation"] | None
"""`empty`: the table holds no row. `continuation`: only this range's earlier batches."""
Existing = Callable[[pa.Table], pa.Array]
"""Key table -> boolean array: which keys the destination table holds."""


@dataclass(frozen=True, slots=True)
class ShapedWrite:
    rows: pa.Table
    """Mapped rows to send, with their op column."""
    disposition: Literal["merge", "append"]
    delivered: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


def _merge_counts(*parts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for op, n in part.items():
            total[op] = total.get(op, 0) + n
    return total


def shape_write(
    mode: SyncMode,
    rows: pa.Table,
    key: tuple[str, ...],
    fresh: Fresh,
    existing: Existing,
    to_snapshot: int | None,
) -> ShapedWrite:
    rows = filter_for_mode(rows, mode)
    keys = list(key)
    if mode == "upsert":
        if fresh and unique_keys(rows, key):
            return ShapedWrite(rows, "append", op_counts(rows))
        return ShapedWrite(rows, "merge", op_counts(rows))
    if mode == "update":
        if fresh or not rows.num_rows:
            return ShapedWrite(rows.slice(0, 0), "merge", skipped=rows.num_rows)
        kept = rows.filter(existing(rows.select(keys)))
        return ShapedWrite(kept, "merge", op_counts(kept), rows.num_rows - kept.num_rows)
    if mode == "insert":
        if not fresh and rows.num_rows:
            new = rows.filter(pc.invert(existing(rows.select(keys))))
        else:
            new = rows
        skipped = rows.num_rows - new.num_rows
        if unique_keys(new, key):
            return ShapedWrite(new, "append", op_counts(new), skipped)
        return ShapedWrite(new, "merge", op_counts(new), skipped)
    if mode == "mirror":
        upserts = only_ops(rows, "insert", "update")
        deletes = only_ops(rows, "delete")
        if fresh == "empty" or not deletes.num_rows:
            present = deletes.slice(0, 0)
        else:
            present = deletes.filter(existing(deletes.select(keys)))
        delivered = _merge_counts(op_counts(upserts), op_counts(deletes))
        if fresh and not present.num_rows and unique_keys(upserts, key):
            return ShapedWrite(upserts, "append", delivered)
        return ShapedWrite(pa.concat_tables([upserts, present]), "merge", delivered)
    # append
    if fresh or not rows.num_rows:
        return ShapedWrite(rows, "append", op_counts(rows))
    identity = with_snapshot(rows.select(keys), to_snapshot).select(list(event_identity(key)))
    new = rows.filter(pc.invert(existing(identity)))
    return ShapedWrite(new, "append", op_counts(rows))


__all__ = ["Existing", "Fresh", "ShapedWrite", "shape_write"]
