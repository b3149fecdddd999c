"""A snapshot range A→B of a table, resolved once (B, its schema, the key), and the one
place a change set over it is made."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from floe_egress.changes.model import OP_COLUMN, ChangeCounts, ChangeSet, InvalidRow, PlanKind
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import arrow_schema, schema_of, snapshot_of_ref, table_name
from floe_egress.errors import InvalidSourceError


def output_schema(schema: Schema) -> pa.Schema:
    """B's Arrow schema with every column nullable (delete rows carry only what A had)
    plus the op column."""
    base = arrow_schema(schema)
    fields = [f.with_nullable(True) for f in base]
    return pa.schema([*fields, pa.field(OP_COLUMN, pa.string(), nullable=False)])


def _no_batches() -> Iterator[pa.RecordBatch]:
    return iter(())


@dataclass(frozen=True, slots=True)
class SnapshotRange:
    table: Table
    name: str
    """The table's dotted name (for change sets and messages)."""
    ref: str
    key: tuple[str, ...]
    from_snapshot: int | None
    """A; None: everything."""
    to: Snapshot | None
    """B; None when the ref points at no snapshot."""
    schema: Schema
    """B's schema."""
    out: pa.Schema
    """The schema of the change batches (`output_schema(schema)`)."""
    batch_rows: int
    row_filter: RowFilter | None = None
    """The rows the destination holds (its `filter:`, bound to B's schema); None: all."""

    @classmethod
    def of(
        cls,
        table: Table,
        *,
        ref: str,
        from_snapshot: int | None,
        key: Sequence[str],
        to_snapshot: int | None,
        batch_rows: int,
        row_filter: str | None = None,
    ) -> SnapshotRange:
        """The range from `from_snapshot` to `to_snapshot`, or to the snapshot `ref`
        points at when `to_snapshot` is None; only the rows `row_filter` matches."""
        name = table_name(table)
        if to_snapshot is None:
            b = snapshot_of_ref(table, ref)
        else:
            b = table.snapshot_by_id(to_snapshot)
            if b is None:
                raise InvalidSourceError(
                    f"snapshot {to_snapshot} is not in the metadata of table {name}"
                )
        schema = schema_of(table, b)
        bound = RowFilter.of(row_filter, schema, table) if row_filter else None
        return cls(
            table=table,
            name=name,
            ref=ref,
            key=tuple(key),
            from_snapshot=from_snapshot,
            to=b,
            schema=schema,
            out=output_schema(schema),
            batch_rows=batch_rows,
            row_filter=None if bound is None or bound.everything else bound,
        )

    def change_set(
        self,
        plan: PlanKind,
        counts: ChangeCounts,
        batches: Callable[[], Iterator[pa.RecordBatch]] = _no_batches,
        *,
        reason: str = "",
        invalid: tuple[InvalidRow, ...] = (),
    ) -> ChangeSet:
        """The change set of this range; `batches` yields batches of `out` (default: none)."""
        return ChangeSet(
            table=self.name,
            ref=self.ref,
            key=self.key,
            plan=plan,
            from_snapshot=self.from_snapshot,
            to_snapshot=self.to.snapshot_id if self.to is not None else None,
            to_timestamp_ms=self.to.timestamp_ms if self.to is not None else None,
            counts=counts,
            schema=self.out,
            batches=batches,
            invalid_sample=invalid,
            reason=reason,
        )
