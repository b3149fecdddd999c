"""The full plan: every row of B, streamed, with invalid keys found first.

Pass 1 reads only the key columns and lets DuckDB count rows per key (it spills to
disk if it must), which gives the counts, the null keys and the duplicated keys before
anything is sent. Pass 2 streams B in record batches and drops the invalid rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from floe_egress.changes.duck import cursor, q
from floe_egress.changes.files import check_readable
from floe_egress.changes.model import (
    INVALID_SAMPLE,
    OP_COLUMN,
    ChangeCounts,
    ChangeSet,
    InvalidRow,
)
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.source import text_batches


def _key_profile(
    table: Table, snapshot: Snapshot, key: tuple[str, ...]
) -> tuple[int, pa.Table, pa.Table]:
    """(total rows, the null keys with their counts, the duplicated keys with their
    counts), keys in order."""
    reader = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=key)
    keys = ", ".join(q(k) for k in key)
    null = " OR ".join(f"{q(k)} IS NULL" for k in key)
    con = cursor()
    try:
        con.register("keys", text_batches(reader.to_arrow_batch_reader()))
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
    total, nulls, dupes = _key_profile(table, snapshot, key)
    sample, invalid = invalid_profile(nulls, dupes)
    dupes = dupes.drop_columns(["n"])
    snapshot_id = snapshot.snapshot_id

    def batches() -> Iterator[pa.RecordBatch]:
        scan = table.scan(snapshot_id=snapshot_id)
        for batch in text_batches(scan.to_arrow_batch_reader()):
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
