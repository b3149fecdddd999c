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

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of

from floe_egress.changes.diff import ROWS, Classified, classify
from floe_egress.changes.files import diff_files
from floe_egress.changes.full import full_change_set
from floe_egress.changes.keys import conform
from floe_egress.changes.lookup import current_rows
from floe_egress.changes.model import (
    INVALID_SAMPLE,
    OP_COLUMN,
    ChangeCounts,
    ChangeSet,
    InvalidRow,
    PlanKind,
)
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.reading import Compact, RowReader
from floe_egress.changes.untouched import UntouchedKeys
from floe_egress.errors import SourceError

DEFAULT_BATCH_ROWS = 65_536
KEEP_BYTES = 256 * 2**20
"""Whole rows of changed files kept in memory while a diff is read with Arrow (beyond
it, files are read again for their changed rows only)."""
READ_THREADS = 2
_NO_HASHES = np.zeros(0, dtype=np.int64)


def capture(
    table: Table,
    *,
    ref: str = "main",
    from_snapshot: int | None,
    key: Sequence[str],
    batch_rows: int = DEFAULT_BATCH_ROWS,
    full_reason: str = "",
    to_snapshot: int | None = None,
    old_rows: bool = True,
    row_filter: str | None = None,
) -> ChangeSet:
    """The net changes of `table` at `ref` since `from_snapshot` (None: everything).

    `to_snapshot` replaces the ref's current snapshot as B (to look at an older range).
    `old_rows=False`: delete rows carry only their key (the other columns null), which
    spares reading A's files a second time for the deleted rows' values. `row_filter`:
    the changes of the rows it matches only (changes/rowfilter.py).
    """
    span = SnapshotRange.of(
        table,
        ref=ref,
        from_snapshot=from_snapshot,
        key=key,
        to_snapshot=to_snapshot,
        batch_rows=batch_rows,
        row_filter=row_filter,
    )
    name, key, b = span.name, span.key, span.to
    if b is None:
        if from_snapshot is None:
            return span.change_set(
                "noop", ChangeCounts(), reason=f"table {name} has no snapshot yet"
            )
        return full_change_set(
            span, reason=f"ref {ref!r} of table {name} no longer points at a snapshot"
        )
    if from_snapshot == b.snapshot_id:
        return span.change_set("noop", ChangeCounts())
    a = table.snapshot_by_id(from_snapshot) if from_snapshot is not None else None
    if a is None:
        if from_snapshot is None:
            reason = full_reason or "first sync of this destination"
        else:
            reason = (
                f"snapshot {from_snapshot} is no longer in the metadata of table {name} "
                "(expired, or the table was replaced)"
            )
        return full_change_set(span, reason=reason)
    if _only_replaces(table, a, b):
        return span.change_set("replace", ChangeCounts(), reason="compaction only: no row changed")

    files = diff_files(table, a, b, name)
    reader = RowReader(table, span.schema, row_filter=span.row_filter)
    removed, added = files.removed, files.added
    if span.row_filter is not None:  # files whose statistics rule out a matching row
        removed = tuple(span.row_filter.prune(removed))
        added = tuple(span.row_filter.prune(added))
    try:
        sides = _compacts(reader, removed, added, key)
    except _BeforeGone as gone:
        return full_change_set(
            span, reason=f"data files of snapshot {from_snapshot} are gone ({gone.filename})"
        )
    before, after = sides
    plan: PlanKind = "diff" if files.removed else "append"
    untouched = UntouchedKeys(
        table, b, files.b_manifests, files.added, key, span.schema, span.row_filter
    )
    classified = classify(before.compact, after.compact, key, untouched)
    changes = _assemble(reader, before, after, classified, span.out, old_rows)
    if classified.revived.num_rows:
        revived = current_rows(
            table, b.snapshot_id, key, classified.revived.to_pylist(), span.row_filter
        )
        changes = pa.concat_tables([changes, _with_op(revived, "insert", span.out)])
    ops = changes.column(OP_COLUMN)
    counts = ChangeCounts(
        inserted=int(pc.sum(pc.equal(ops, "insert")).as_py() or 0),
        updated=len(classified.updates),
        deleted=len(classified.deletes),
        invalid=classified.invalid_rows,
    )
    return span.change_set(
        plan,
        counts,
        lambda: iter(changes.to_batches(max_chunksize=batch_rows)),
        invalid=invalid_sample(after.compact, classified, key),
    )


def _only_replaces(table: Table, a: Snapshot, b: Snapshot) -> bool:
    for snapshot in ancestors_of(b, table.metadata):
        if snapshot.snapshot_id == a.snapshot_id:
            return True
        if snapshot.summary is None or snapshot.summary.operation != Operation.REPLACE:
            return False
    return False


class _BeforeGone(Exception):
    def __init__(self, filename: str | None) -> None:
        super().__init__(filename)
        self.filename = filename


@dataclass(slots=True)
class _Side:
    """The data files of one side of a diff, their compact rows, and the whole rows of
    the files kept in memory (index of the file in `tasks`)."""

    tasks: tuple[FileScanTask, ...]
    compact: Compact
    kept: dict[int, pa.Table] = field(default_factory=dict)


class _Budget:
    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        if self._left is None:
            return True
        with self._lock:
            if nbytes > self._left:
                return False
            self._left -= nbytes
            return True


def _compacts(
    reader: RowReader,
    removed: Sequence[FileScanTask],
    added: Sequence[FileScanTask],
    key: tuple[str, ...],
) -> tuple[_Side, _Side]:
    """Key and row hash of every row of the removed (A) and added (B) files.

    DuckDB reads the files itself when it reads exactly what pyarrow would; otherwise the
    rows are read with Arrow (whole files kept in memory up to KEEP_BYTES, so a small
    change is read once) and hashed by DuckDB. Append only (no removed file): nothing
    can cancel, so B is read whole, kept, and not hashed.
    """
    if removed and added:
        native = reader.native_compacts([removed, added], key)
        if native is not None:
            return _Side(tuple(removed), native[0]), _Side(tuple(added), native[1])
    elif removed:
        native = reader.native_compacts([removed], key)
        if native is not None:
            return _Side(tuple(removed), native[0]), _Side((), _empty_compact(reader, key))
    budget = _Budget(None if not removed else KEEP_BYTES)
    hashed = bool(removed)

    def one(task: FileScanTask) -> tuple[pa.Table, np.ndarray, pa.Table | None]:
        rows = reader.read(task)
        hashes = reader.hash_rows(rows) if hashed else _NO_HASHES
        return rows.select(list(key)), hashes, rows if budget.take(rows.nbytes) else None

    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="floe-read") as pool:
        reading_before = [pool.submit(one, t) for t in removed]
        reading_after = [pool.submit(one, t) for t in added]
        try:
            before = [f.result() for f in reading_before]
        except FileNotFoundError as exc:
            for f in reading_after:
                f.cancel()
            raise _BeforeGone(exc.filename) from exc
        after = [f.result() for f in reading_after]
    return (
        _side_of(reader, key, removed, before, hashed),
        _side_of(reader, key, added, after, hashed),
    )


def _empty_compact(reader: RowReader, key: tuple[str, ...]) -> Compact:
    keys = pa.schema([reader.target.field(k).with_nullable(True) for k in key]).empty_table()
    return Compact(keys=keys, hashes=_NO_HASHES, offsets=np.zeros(1, dtype=np.int64))


def _side_of(
    reader: RowReader,
    key: tuple[str, ...],
    tasks: Sequence[FileScanTask],
    results: list[tuple[pa.Table, np.ndarray, pa.Table | None]],
    hashed: bool,
) -> _Side:
    if not results:
        return _Side(tuple(tasks), _empty_compact(reader, key))
    key_schema = pa.schema([reader.target.field(k).with_nullable(True) for k in key])
    keys = pa.concat_tables([r[0].cast(key_schema) for r in results])
    counts = [r[0].num_rows for r in results]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    hashes = np.concatenate([r[1] for r in results]) if hashed else _NO_HASHES
    kept = {i: r[2] for i, r in enumerate(results) if r[2] is not None}
    return _Side(tuple(tasks), Compact(keys=keys, hashes=hashes, offsets=offsets), kept)


def _rows_at(reader: RowReader, side: _Side, positions: np.ndarray, schema: pa.Schema) -> pa.Table:
    """The whole rows at `positions` (sorted) of one side: from the files kept in memory,
    else read again (only the files that hold one of the positions)."""
    if not len(positions):
        return schema.empty_table()
    offsets = side.compact.offsets
    files = np.searchsorted(offsets, positions, side="right") - 1
    starts = np.flatnonzero(np.r_[True, files[1:] != files[:-1]])
    groups = np.split(positions, starts[1:])
    file_ids = [int(files[s]) for s in starts]

    def take(index: int, local: np.ndarray) -> pa.Table:
        rows = side.kept.get(index)
        if rows is None:
            rows = reader.read(side.tasks[index])
        expected = int(offsets[index + 1] - offsets[index])
        if rows.num_rows != expected:
            raise SourceError(
                f"data file {side.tasks[index].file.file_path} read {rows.num_rows} rows, "
                f"{expected} before: it changed while the diff was read"
            )
        return rows.take(pa.array(local, pa.int64())).cast(schema)

    locals_ = [g - offsets[i] for g, i in zip(groups, file_ids, strict=True)]
    if sum(1 for i in file_ids if i not in side.kept) > 1:
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="floe-read") as pool:
            parts = list(pool.map(take, file_ids, locals_))
    else:
        parts = [take(i, p) for i, p in zip(file_ids, locals_, strict=True)]
    return pa.concat_tables(parts)


def _with_op(table: pa.Table, op: str, out: pa.Schema) -> pa.Table:
    ops = pa.array([op] * table.num_rows, pa.string())
    return table.append_column(OP_COLUMN, ops).cast(out)


def _assemble(
    reader: RowReader,
    before: _Side,
    after: _Side,
    classified: Classified,
    out: pa.Schema,
    old_rows: bool,
) -> pa.Table:
    rows_schema = pa.schema(list(out)[:-1])
    n_inserts = len(classified.inserts)
    wanted = np.concatenate([classified.inserts, classified.updates])
    order = np.argsort(wanted, kind="stable")
    taken = _rows_at(reader, after, wanted[order], rows_schema)
    b_rows = taken.take(pa.array(np.argsort(order, kind="stable"), pa.int64()))
    if old_rows:
        deleted = _rows_at(reader, before, classified.deletes, rows_schema)
    else:
        deleted = _keys_only(before.compact, classified.deletes, rows_schema)
    parts = [
        _with_op(b_rows.slice(0, n_inserts), "insert", out),
        _with_op(b_rows.slice(n_inserts), "update", out),
        _with_op(deleted, "delete", out),
    ]
    return pa.concat_tables(parts).combine_chunks()


def _keys_only(side: Compact, positions: np.ndarray, schema: pa.Schema) -> pa.Table:
    return conform(side.keys.take(pa.array(positions, pa.int64())), schema)


def invalid_sample(
    after: Compact, classified: Classified, key: tuple[str, ...]
) -> tuple[InvalidRow, ...]:
    """The first INVALID_SAMPLE invalid keys: null keys (each distinct one), then keys B
    holds more than once, each with how many rows hold it."""
    sample: list[InvalidRow] = []
    if len(classified.null_keys):
        nulls = after.keys.take(pa.array(classified.null_keys, pa.int64()))
        grouped = nulls.group_by(list(key), use_threads=False).aggregate([([], "count_all")])
        for row in grouped.to_pylist():
            rows = row.pop("count_all")
            sample.append(InvalidRow(key=row, reason="null_key", rows=rows))
    for row in classified.duplicates.slice(0, INVALID_SAMPLE).to_pylist():
        rows = row.pop(ROWS)
        sample.append(InvalidRow(key=row, reason="duplicate_key", rows=rows))
    return tuple(sample[:INVALID_SAMPLE])
