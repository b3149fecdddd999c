"""The full plan: every row of B, streamed, with invalid keys found first.

Pass 1 reads only the key columns and lets DuckDB count rows per key (it spills to
disk if it must), which gives the counts, the null keys and the duplicated keys before
anything is sent. Pass 2 streams B in record batches and drops the invalid rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from floe_egress.changes.duck import cursor, q
from floe_egress.changes.files import check_readable
from floe_egress.changes.integers import integer_view
from floe_egress.changes.model import (
    INVALID_SAMPLE,
    OP_COLUMN,
    ChangeCounts,
    ChangeSet,
    InvalidRow,
)
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import streamed, text_batches


def _key_profile(
    table: Table, snapshot: Snapshot, key: tuple[str, ...], row_filter: RowFilter | None
) -> tuple[int, pa.Table, pa.Table]:
    """(total rows, the null keys with their counts, the duplicated keys with their
    counts), keys in order; of the rows `row_filter` matches."""
    if row_filter is not None:
        batches = row_filter.matching(table, snapshot.snapshot_id, key)
    else:
        reader = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=key)
        batches = text_batches(reader.to_arrow_batch_reader())
    if len(key) == 1 and integer_view(pa.chunked_array([], batches.schema.types[0])) is not None:
        return _integer_key_profile(batches, key[0])
    return _duckdb_key_profile(batches, key)


def _duckdb_key_profile(
    batches: pa.RecordBatchReader, key: tuple[str, ...]
) -> tuple[int, pa.Table, pa.Table]:
    keys = ", ".join(q(k) for k in key)
    null = " OR ".join(f"{q(k)} IS NULL" for k in key)
    con = cursor()
    try:
        con.register("keys", batches)
        con.execute(
            f"CREATE TEMP TABLE counts AS SELECT {keys}, count(*) AS n, ({null}) AS is_null "
            f"FROM keys GROUP BY ALL"
        )
        row = con.execute("SELECT coalesce(sum(n), 0) FROM counts").fetchone()
        assert row is not None
        nulls = con.execute(
            f"SELECT {keys}, n FROM counts WHERE is_null ORDER BY {keys}"
        ).to_arrow_table()
        dupes = con.execute(
            f"SELECT {keys}, n FROM counts WHERE n > 1 AND NOT is_null ORDER BY {keys}"
        ).to_arrow_table()
    finally:
        con.close()
    return int(row[0]), nulls, dupes


def _integer_key_profile(
    batches: pa.RecordBatchReader, name: str
) -> tuple[int, pa.Table, pa.Table]:
    """`_key_profile` of one integer-like key column, by one sort of its values: a
    fifth of the memory DuckDB's count per key takes (and keeps) for millions of keys."""
    key_type = batches.schema.field(name).type
    nulls = 0
    parts: list[np.ndarray] = []
    for batch in batches:
        column = pa.chunked_array([batch.column(name)])
        nulls += column.null_count
        view = integer_view(column.drop_null() if column.null_count else column)
        assert view is not None
        parts.append(view)
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    del parts
    values.sort()
    repeated = values[1:] == values[:-1]
    if repeated.any():
        held = np.zeros(len(values), dtype=bool)
        held[1:] |= repeated
        held[:-1] |= repeated
        dupes, counts = np.unique(values[held], return_counts=True)
    else:
        dupes, counts = values[:0], np.zeros(0, dtype=np.int64)
    n_type = pa.int64()
    null_rows = pa.table(
        {
            name: pa.nulls(1 if nulls else 0, key_type),
            "n": pa.array([nulls] if nulls else [], n_type),
        }
    )
    dupe_rows = pa.table({name: _as_key(dupes, key_type), "n": pa.array(counts, n_type)})
    return len(values) + nulls, null_rows, dupe_rows


def _as_key(values: np.ndarray, key_type: pa.DataType) -> pa.Array:
    """int64 values (integer_view's) back as the key column's type."""
    array = pa.array(values, pa.int64())
    if pa.types.is_integer(key_type):
        return array.cast(key_type)
    width = pa.int32() if key_type.bit_width == 32 else pa.int64()
    return array.cast(width).view(key_type)


def _valid_rows(batch: pa.RecordBatch, key: tuple[str, ...], dupes: pa.Table) -> pa.RecordBatch:
    mask = None
    for k in key:
        valid = pc.is_valid(batch.column(k))
        mask = valid if mask is None else pc.and_(mask, valid)
    if dupes.num_rows:
        if len(key) == 1:
            dup = pc.is_in(batch.column(key[0]), value_set=dupes.column(key[0]))
        else:
            dup = _multi_key_member(batch, key, dupes)
        mask = pc.and_(mask, pc.invert(pc.fill_null(dup, False)))
    return batch.filter(mask)


def _multi_key_member(
    batch: pa.RecordBatch, key: tuple[str, ...], dupes: pa.Table
) -> pa.ChunkedArray:
    con = cursor()
    try:
        con.register("batch", pa.Table.from_batches([batch]).select(list(key)))
        con.register("dupes", dupes)
        on = " AND ".join(f"b.{q(k)} = d.{q(k)}" for k in key)
        result = con.execute(
            f"SELECT EXISTS (SELECT 1 FROM dupes d WHERE {on}) AS m FROM batch b"
        ).to_arrow_table()
        # DuckDB keeps the row order of a plain projection over a registered table.
        return result.column("m")
    finally:
        con.close()


def full_change_set(span: SnapshotRange, *, reason: str) -> ChangeSet:
    """Every valid row of B as an insert; no change at all when there is no B."""
    snapshot = span.to
    if snapshot is None:
        return span.change_set("full", ChangeCounts(), reason=reason)
    table, key, out, batch_rows = span.table, span.key, span.out, span.batch_rows
    check_readable(table, snapshot, span.name)
    row_filter = span.row_filter
    total, nulls, dupes = _key_profile(table, snapshot, key, row_filter)
    sample, invalid = invalid_profile(nulls, dupes)
    dupes = dupes.drop_columns(["n"])
    snapshot_id = snapshot.snapshot_id

    def batches() -> Iterator[pa.RecordBatch]:
        if row_filter is not None:
            rows = row_filter.matching(table, snapshot_id)
        else:
            rows = streamed(table.scan(snapshot_id=snapshot_id))
        for batch in rows:
            valid = _valid_rows(batch, key, dupes)
            if not valid.num_rows:
                continue
            ops = pa.array(["insert"] * valid.num_rows, pa.string())
            with_op = pa.Table.from_batches([valid]).append_column(OP_COLUMN, ops).cast(out)
            yield from with_op.to_batches(max_chunksize=batch_rows)

    return span.change_set(
        "full",
        ChangeCounts(inserted=total - invalid, invalid=invalid),
        batches,
        invalid=sample,
        reason=reason,
    )


def invalid_profile(nulls: pa.Table, dupes: pa.Table) -> tuple[tuple[InvalidRow, ...], int]:
    """From the null keys and the duplicated keys with their row counts (`n`): the sample
    of invalid keys and how many rows they hold."""
    sample = [
        InvalidRow(key=row, reason="null_key", rows=row.pop("n"))
        for row in nulls.slice(0, INVALID_SAMPLE).to_pylist()
    ] + [
        InvalidRow(key=row, reason="duplicate_key", rows=row.pop("n"))
        for row in dupes.slice(0, INVALID_SAMPLE).to_pylist()
    ]
    return tuple(sample[:INVALID_SAMPLE]), _rows(nulls) + _rows(dupes)


def _rows(counts: pa.Table) -> int:
    return int(pc.sum(counts.column("n")).as_py() or 0) if counts.num_rows else 0
