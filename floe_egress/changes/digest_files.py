"""Comparing the data files of a snapshot with a digest, as a diff compares two sides.

The digest is one side (its keys and hashes, held in Arrow and numpy), B's data files
the other: per row of B its key columns, a hash of the columns the digest hashes, and
its place (file, row), read the way the diff reads files (reading.py: DuckDB reads the
Parquet files itself when that reads exactly what pyarrow would, otherwise Arrow reads
each file and DuckDB hashes it). `diff.classify` then sorts the keys into inserts
(B only), updates (hash differs) and deletes (digest only), with B's null and repeated
keys invalid; keys the digest holds unsure or with an unknown hash (or every key, for
`everything`) are updates wherever B holds them once, inserts when only a reserved write
holds them. Whole rows are read afterwards,
one file at a time and only from the files holding a change, so memory is the keys and
hashes of both sides (about 34 bytes a row for an integer key) plus one file's rows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.conversions import from_bytes
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import DateType, IntegerType, LongType, TimestampType, TimestamptzType

from floe_egress.changes.capture import invalid_sample
from floe_egress.changes.diff import classify
from floe_egress.changes.duck import cursor, q
from floe_egress.changes.files import planned_tasks
from floe_egress.changes.keys import conform
from floe_egress.changes.model import OP_COLUMN, ChangeCounts, ChangeSet, PlanKind
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.reading import NATIVE_FILE, NATIVE_ROW, Compact, RowReader, local_path
from floe_egress.errors import SourceError

READ_THREADS = 2
_ORDERED = (IntegerType, LongType, DateType, TimestampType, TimestamptzType)
_POS = "__floe_pos"
_NO_ROWS = np.zeros(0, dtype=np.int64)


def compare_files(
    span: SnapshotRange,
    snapshot: Snapshot,
    columns: Sequence[str],
    digest: pa.Table,
    *,
    hash_column: str,
    unsure_column: str,
    everything: bool,
    reason: str,
) -> ChangeSet | None:
    """The change set of B (`snapshot`) against the effective `digest` (see
    changes.digest.compare); None when the digest's keys do not take B's key types."""
    table, key = span.table, span.key
    # What loading and folding the digest freed goes back to the system before B is read.
    pa.default_memory_pool().release_unused()
    tasks = planned_tasks(table, snapshot, span.name)
    if span.row_filter is not None:
        tasks = span.row_filter.prune(tasks)
    tasks = _in_key_order(tasks, span.schema, key)
    reader = RowReader(table, span.schema, hashed=columns, row_filter=span.row_filter)
    key_schema = pa.schema([reader.target.field(k).with_nullable(True) for k in key])
    before = _digest_side(digest, key, key_schema, hash_column)
    if before is None:
        return None
    after, native = _side(reader, tasks, key, key_schema)
    classified = classify(before, after, key)
    updates = classified.updates
    force = _force_keys(digest, key, hash_column, unsure_column, everything)
    inserts, deletes = classified.inserts, classified.deletes
    if force is not None:
        duplicates = classified.duplicates.select(list(key))
        forced = _held_once(after, force, duplicates, key)
        updates = np.union1d(updates, np.setdiff1d(forced, inserts))
        fresh = _reserved_only(digest, key, hash_column, unsure_column)
        if fresh is not None:
            # The destination held no row of these before a write that never confirmed:
            # for it they are inserts still (insert mode drops updates).
            again = _held_once(after, fresh, duplicates, key)
            updates = np.setdiff1d(updates, again)
            inserts = np.union1d(inserts, again)
    counts = ChangeCounts(
        inserted=len(inserts),
        updated=len(updates),
        deleted=len(deletes),
        invalid=classified.invalid_rows,
    )
    plan: PlanKind = "full" if everything else "digest"

    def batches() -> Iterator[pa.RecordBatch]:
        changed = _native_changed_rows if native else _changed_rows
        yield from changed(reader, tasks, after.offsets, inserts, updates, span)
        if len(deletes):
            gone = before.keys.take(pa.array(deletes, pa.int64()))
            ops = pa.array(["delete"] * gone.num_rows, pa.string())
            rows = conform(gone.append_column(OP_COLUMN, ops), span.out)
            yield from rows.to_batches(max_chunksize=span.batch_rows)

    return span.change_set(
        plan,
        counts,
        batches,
        invalid=invalid_sample(after, classified, key),
        reason=reason,
    )


def _in_key_order(
    tasks: list[FileScanTask], schema: Schema, key: Sequence[str]
) -> list[FileScanTask]:
    """The data files by the lower bound of an integer-like key (files written in key
    order then give B's keys in order, which classifies fastest); as planned otherwise.
    Only an order to read them in: nothing depends on it."""
    field = schema.find_field(key[0]) if len(key) == 1 else None
    if field is None or not isinstance(field.field_type, _ORDERED):
        return tasks
    bounds = []
    for task in tasks:
        raw = (task.file.lower_bounds or {}).get(field.field_id)
        if raw is None:
            return tasks
        try:
            bounds.append(from_bytes(field.field_type, raw))
        except (ValueError, struct.error):  # written with another type (int, then long)
            return tasks
    return [tasks[i] for i in sorted(range(len(tasks)), key=bounds.__getitem__)]


def _digest_side(
    digest: pa.Table, key: Sequence[str], key_schema: pa.Schema, hash_column: str
) -> Compact | None:
    """The digest as the removed side of a diff (an unknown hash as 0: such keys are
    forced to updates anyway)."""
    n = digest.num_rows
    if not n:
        return Compact(key_schema.empty_table(), _NO_ROWS, np.zeros(1, dtype=np.int64))
    try:
        keys = digest.select(list(key)).cast(key_schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    hashes = digest.column(hash_column)
    if hashes.null_count:
        hashes = pc.fill_null(hashes, 0)
    array = hashes.chunk(0) if hashes.num_chunks == 1 else hashes.combine_chunks()
    bits = np.asarray(array.to_numpy(zero_copy_only=False)).view(np.int64)
    return Compact(keys, bits, np.array([0, n], dtype=np.int64))


def _force_keys(
    digest: pa.Table, key: Sequence[str], hash_column: str, unsure_column: str, every: bool
) -> pa.Table | None:
    """Keys to send wherever B holds them once: every digest key, or those a reserved
    write left unsure or whose hash is unknown; None when there are none."""
    if not digest.num_rows:
        return None
    if every:
        return digest.select(list(key))
    unsure = pc.or_(pc.is_null(digest.column(hash_column)), digest.column(unsure_column))
    if not pc.any(unsure).as_py():
        return None
    return digest.filter(unsure).select(list(key))


def _reserved_only(
    digest: pa.Table, key: Sequence[str], hash_column: str, unsure_column: str
) -> pa.Table | None:
    """Keys only a reserved write holds (unsure, with no confirmed hash); None if none."""
    fresh = pc.and_(pc.is_null(digest.column(hash_column)), digest.column(unsure_column))
    if not pc.any(fresh).as_py():
        return None
    return digest.filter(fresh).select(list(key))


def _held_once(
    after: Compact, force: pa.Table, duplicates: pa.Table, key: Sequence[str]
) -> np.ndarray:
    """Rows of B whose key is in `force` and held by B once (sorted)."""
    keys = ", ".join(q(k) for k in key)
    con = cursor()
    try:
        positions = pa.array(np.arange(after.num_rows, dtype=np.int64))
        con.register("b", after.keys.append_column(_POS, positions))
        con.register("f", force)
        con.register("d", duplicates)
        found = con.execute(
            f"SELECT {_POS} FROM b SEMI JOIN f USING ({keys}) ANTI JOIN d USING ({keys}) "
            f"ORDER BY {_POS}"
        ).fetchnumpy()
    finally:
        con.close()
    return np.asarray(found[_POS], dtype=np.int64)


def _side(
    reader: RowReader, tasks: Sequence[FileScanTask], key: tuple[str, ...], key_schema: pa.Schema
) -> tuple[Compact, bool]:
    """Key and row hash of every row of B's files, in file order; whether DuckDB read
    the files itself."""
    if not tasks:
        return Compact(key_schema.empty_table(), _NO_ROWS, np.zeros(1, dtype=np.int64)), False
    native = reader.native_compacts([tasks], key)
    if native is not None:
        return native[0], True

    def one(task: FileScanTask) -> tuple[pa.Table, np.ndarray]:
        rows = reader.read(task)
        return rows.select(list(key)).cast(key_schema), reader.hash_rows(rows)

    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="floe-read") as pool:
        parts = list(pool.map(one, tasks))
    counts = [p[0].num_rows for p in parts]
    compact = Compact(
        keys=pa.concat_tables([p[0] for p in parts]),
        hashes=np.concatenate([p[1] for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )
    return compact, False


def _in_file_order(
    inserts: np.ndarray, updates: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The insert and update positions of B in order, whether each is an insert, and
    the file (index into `offsets`) each falls in."""
    positions = np.concatenate([inserts, updates])
    is_insert = np.concatenate(
        [np.ones(len(inserts), dtype=bool), np.zeros(len(updates), dtype=bool)]
    )
    order = np.argsort(positions, kind="stable")
    positions, is_insert = positions[order], is_insert[order]
    return positions, is_insert, np.searchsorted(offsets, positions, side="right") - 1


def _native_changed_rows(
    reader: RowReader,
    tasks: Sequence[FileScanTask],
    offsets: np.ndarray,
    inserts: np.ndarray,
    updates: np.ndarray,
    span: SnapshotRange,
) -> Iterator[pa.RecordBatch]:
    """The whole rows at the insert and update positions of B, read by DuckDB from the
    files that hold them (as pass 1 read them), a group of files of about `batch_rows`
    changed rows at a time."""
    positions, is_insert, files = _in_file_order(inserts, updates, offsets)
    ops = np.where(is_insert, "insert", "update")
    paths = [local_path(t) or "" for t in tasks]
    first = 0
    while first < len(positions):
        # Whole files only: up to the last file the next batch_rows positions reach.
        last = min(first + span.batch_rows, len(positions))
        last = int(np.searchsorted(files, files[last - 1], side="right"))
        group = files[first:last]
        wanted = pa.table(
            {
                NATIVE_FILE: pa.array(paths).take(pa.array(group)),
                NATIVE_ROW: pa.array(positions[first:last] - offsets[group]),
                OP_COLUMN: pa.array(ops[first:last], pa.string()),
            }
        )
        rows = reader.native_rows([paths[i] for i in np.unique(group)], wanted)
        if rows.num_rows != last - first:
            raise SourceError(
                f"table {span.name}: {last - first} changed rows were found in its data "
                f"files, {rows.num_rows} read again: a file changed while it was compared "
                "with the digest"
            )
        yield from rows.cast(span.out).to_batches(max_chunksize=span.batch_rows)
        first = last


def _changed_rows(
    reader: RowReader,
    tasks: Sequence[FileScanTask],
    offsets: np.ndarray,
    inserts: np.ndarray,
    updates: np.ndarray,
    span: SnapshotRange,
) -> Iterator[pa.RecordBatch]:
    """The whole rows at the insert and update positions of B, one file at a time (two
    read at once), in file order."""
    if not len(inserts) + len(updates):
        return
    positions, is_insert, files = _in_file_order(inserts, updates, offsets)
    starts = np.flatnonzero(np.r_[True, files[1:] != files[:-1]])
    ends = np.r_[starts[1:], len(positions)]

    def take(part: int) -> pa.Table:
        first, last = int(starts[part]), int(ends[part])
        index = int(files[first])
        rows = reader.read(tasks[index])
        expected = int(offsets[index + 1] - offsets[index])
        if rows.num_rows != expected:
            raise SourceError(
                f"table {span.name}: data file {tasks[index].file.file_path} read "
                f"{rows.num_rows} rows, {expected} before: it changed while it was compared "
                "with the digest"
            )
        local = pa.array(positions[first:last] - offsets[index], pa.int64())
        ops = pa.array(np.where(is_insert[first:last], "insert", "update"), pa.string())
        return rows.take(local).append_column(OP_COLUMN, ops).cast(span.out)

    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="floe-read") as pool:
        pending = [pool.submit(take, 0)]
        for part in range(len(starts)):
            if part + 1 < len(starts):
                pending.append(pool.submit(take, part + 1))
            taken = pending.pop(0).result()
            yield from taken.to_batches(max_chunksize=span.batch_rows)


__all__ = ["compare_files"]
