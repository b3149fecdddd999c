"""What change capture produces: a change set between two snapshots of a table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

Op = Literal["insert", "update", "delete"]
OPS: tuple[Op, ...] = ("insert", "update", "delete")
PlanKind = Literal["noop", "append", "diff", "replace", "full", "digest"]

OP_COLUMN = "_floe_op"
"""Name of the op column added to every change batch (values: insert/update/delete)."""


@dataclass(frozen=True, slots=True)
class ChangeCounts:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    invalid: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


INVALID_SAMPLE = 20
"""Invalid keys listed per change set (all of them are counted)."""


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A key of B whose rows are never sent: it is null, or more than one row holds it."""

    key: dict[str, Any]
    reason: Literal["null_key", "duplicate_key"]
    rows: int = 1
    """How many rows of B hold this key (the rows counted as invalid)."""


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The net row changes of `table` from snapshot A to snapshot B.

    `batches()` yields Arrow record batches with B's schema (by field id) plus the
    `_floe_op` column. Delete rows carry the key and, where known, the old row values.
    It may be called more than once; each call streams the changes again.
    """

    table: str
    ref: str
    key: tuple[str, ...]
    plan: PlanKind
    from_snapshot: int | None
    to_snapshot: int | None
    to_timestamp_ms: int | None
    counts: ChangeCounts
    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]] = field(repr=False)
    invalid_sample: tuple[InvalidRow, ...] = ()
    reason: str = ""
    """Why this plan was chosen when it is not the obvious one (e.g. A expired)."""

    @property
    def is_noop(self) -> bool:
        return self.counts.total == 0

    def as_updates(self) -> ChangeSet:
        """Every insert sent as an update (a full send in update mode: the destination
        updates the keys it holds and skips the others; inserts it would never send)."""
        source = self.batches

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in source():
                at = batch.schema.get_field_index(OP_COLUMN)
                ops = batch.column(at)
                relabeled = pc.if_else(pc.equal(ops, "insert"), "update", ops).cast(ops.type)
                yield batch.set_column(at, batch.schema.field(at), relabeled)

        counts = self.counts
        moved = replace(counts, inserted=0, updated=counts.updated + counts.inserted)
        return replace(self, counts=moved, batches=batches)
