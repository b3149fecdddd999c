"""Choose a plan for the snapshot range A→B and build the change set.

Plans, cheapest first:
- noop: A == B, metadata only.
- replace: every snapshot in (A, B] is a compaction (`replace`): zero changes, no
  data file read.
- append: no data file was removed: only the added files are read.
- diff: only the removed files (as of A) and the added files (as of B) are read.
- full: no usable A (first sync, expired, table replaced, key changed): B is streamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of

from floe_egress.changes.diff import Classified, classify
from floe_egress.changes.files import diff_files
from floe_egress.changes.full import full_change_set
from floe_egress.changes.model import (
    OP_COLUMN,
    ChangeCounts,
    ChangeSet,
    InvalidRow,
    PlanKind,
)
from floe_egress.changes.source import arrow_schema, schema_of, snapshot_of_ref, table_name
from floe_egress.errors import SourceError

INVALID_SAMPLE_SIZE = 20
DEFAULT_BATCH_ROWS = 65_536


def output_schema(schema: Schema) -> pa.Schema:
    """B's Arrow schema with every column nullable (delete rows carry only what A had)
    plus the op column."""
    base = arrow_schema(schema)
    fields = [f.with_nullable(True) for f in base]
    return pa.schema([*fields, pa.field(OP_COLUMN, pa.string(), nullable=False)])


def capture(
    table: Table,
    *,
    ref: str = "main",
    from_snapshot: int | None,
    key: Sequence[str],
    batch_rows: int = DEFAULT_BATCH_ROWS,
    full_reason: str = "",
    to_snapshot: int | None = None,
) -> ChangeSet:
    """The net changes of `table` at `ref` since `from_snapshot` (None: everything).

    `to_snapshot` replaces the ref's current snapshot as B (to look at an older range).
    """
    name = table_name(table)
    key = tuple(key)
    if to_snapshot is None:
        b = snapshot_of_ref(table, ref)
    else:
        b = table.snapshot_by_id(to_snapshot)
        if b is None:
            raise SourceError(f"snapshot {to_snapshot} is not in the metadata of table {name}")
    schema = schema_of(table, b)
    out = output_schema(schema)

    def make(
        plan: PlanKind,
        counts: ChangeCounts,
        changes: pa.Table | None,
        reason: str = "",
        invalid: tuple[InvalidRow, ...] = (),
    ) -> ChangeSet:
        data = changes if changes is not None else out.empty_table()
        return ChangeSet(
            table=name,
            ref=ref,
            key=key,
            plan=plan,
            from_snapshot=from_snapshot,
            to_snapshot=b.snapshot_id if b else None,
            to_timestamp_ms=b.timestamp_ms if b else None,
            counts=counts,
            schema=out,
            batches=lambda: iter(data.to_batches(max_chunksize=batch_rows)),
            invalid_sample=invalid,
            reason=reason,
        )

    if b is None:
        if from_snapshot is None:
            return make("noop", ChangeCounts(), None, f"table {name} has no snapshot yet")
        return full_change_set(
            table,
            name,
            ref,
            None,
            schema,
            out,
            key,
            from_snapshot,
            batch_rows,
            reason=f"ref {ref!r} of table {name} no longer points at a snapshot",
        )
    if from_snapshot == b.snapshot_id:
        return make("noop", ChangeCounts(), None)
    a = table.snapshot_by_id(from_snapshot) if from_snapshot is not None else None
    if a is None:
        if from_snapshot is None:
            reason = full_reason or "first sync of this destination"
        else:
            reason = (
                f"snapshot {from_snapshot} is no longer in the metadata of table {name} "
                "(expired, or the table was replaced)"
            )
        return full_change_set(
            table, name, ref, b, schema, out, key, from_snapshot, batch_rows, reason=reason
        )
    if _only_replaces(table, a, b):
        return make("replace", ChangeCounts(), None, "compaction only: no row changed")

    files = diff_files(table, a, b, name)
    # Both sides at once: reading Parquet releases the GIL.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="floe-read") as pool:
        reading_before = pool.submit(_read, table, schema, files.removed)
        reading_after = pool.submit(_read, table, schema, files.added)
    try:
        before = reading_before.result()
    except FileNotFoundError as exc:
        return full_change_set(
            table,
            name,
            ref,
            b,
            schema,
            out,
            key,
            from_snapshot,
            batch_rows,
            reason=f"data files of snapshot {from_snapshot} are gone ({exc.filename})",
        )
    after = reading_after.result()
    plan: PlanKind = "diff" if files.removed else "append"
    classified = classify(before, after, key)
    changes = _assemble(before, after, classified, out)
    invalid = _invalid_rows(after, classified, key)
    counts = ChangeCounts(
        inserted=len(classified.inserts),
        updated=len(classified.updates),
        deleted=len(classified.deletes),
        invalid=len(classified.null_keys) + len(classified.duplicate_keys),
    )
    return make(plan, counts, changes, invalid=invalid)


def _only_replaces(table: Table, a: Snapshot, b: Snapshot) -> bool:
    for snapshot in ancestors_of(b, table.metadata):
        if snapshot.snapshot_id == a.snapshot_id:
            return True
        if snapshot.summary is None or snapshot.summary.operation != Operation.REPLACE:
            return False
    return False


def _read(table: Table, schema: Schema, tasks: Sequence[FileScanTask]) -> pa.Table:
    target = arrow_schema(schema)
    if not tasks:
        return target.empty_table()
    data = ArrowScan(table.metadata, table.io, schema, AlwaysTrue()).to_table(tasks)
    # Both sides must have one schema; casting costs a copy, so only when they differ.
    return data if data.schema.equals(target) else data.cast(target)


def _with_op(table: pa.Table, op: str, out: pa.Schema) -> pa.Table:
    ops = pa.array([op] * table.num_rows, pa.string())
    return table.append_column(OP_COLUMN, ops).cast(out)


def _assemble(
    before: pa.Table, after: pa.Table, classified: Classified, out: pa.Schema
) -> pa.Table:
    parts = [
        _with_op(after.take(classified.inserts), "insert", out),
        _with_op(after.take(classified.updates), "update", out),
        _with_op(before.take(classified.deletes), "delete", out),
    ]
    return pa.concat_tables(parts).combine_chunks()


def _invalid_rows(
    after: pa.Table, classified: Classified, key: tuple[str, ...]
) -> tuple[InvalidRow, ...]:
    sample: list[InvalidRow] = []
    for positions, reason in (
        (classified.null_keys, "null_key"),
        (classified.duplicate_keys, "duplicate_key"),
    ):
        rows = after.select(list(key)).take(positions[:INVALID_SAMPLE_SIZE]).to_pylist()
        sample.extend(InvalidRow(key=row, reason=reason) for row in rows)  # type: ignore[arg-type]
    return tuple(sample[:INVALID_SAMPLE_SIZE])
