"""The digest of what a destination holds: each key with a hash of the row as it was
sent, and the comparison of a table with it.

A digest is kept as segments (the state store keeps their bytes: see
floe_egress/state/digest.py). A segment is a Parquet table of the key columns, `HASH`
(uint64, null when the values are unknown) and `GONE` (the key was deleted):

- a `held` segment says what the destination confirmed; later ones override earlier
  ones key by key;
- a `reserved` segment says what a write that has not committed may have delivered.

`effective` folds segments into one row per key the destination may hold; `compare`
sets the rows of a snapshot against it, and gives the change set that makes the
destination equal to the snapshot: inserts for keys it lacks, updates for keys whose
hash differs (or whose fate a reserved write left unsure: an insert again when the
destination held no row of it before), deletes for keys the snapshot no longer has.
Everything runs in DuckDB and Arrow: no per-row Python.

The hash covers the columns a destination is sent (`hashed_columns`), in their source
types; what else decides the bytes sent (the field mapping, the sink type, the value
conversion) goes into the fingerprint the caller keeps with the digest.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from floe_egress.changes.digest_files import compare_files
from floe_egress.changes.digest_fold import fold_disjoint, fold_sorted
from floe_egress.changes.digest_spill import (
    FALLBACK_SPILL_ROWS,
    SPILL_ROWS,
    Spilled,
    spill_table,
)
from floe_egress.changes.digest_spill_compare import compare_spilled
from floe_egress.changes.duck import cursor, q
from floe_egress.changes.files import check_readable
from floe_egress.changes.full import invalid_profile
from floe_egress.changes.keys import conform
from floe_egress.changes.model import OP_COLUMN, ChangeCounts, ChangeSet, PlanKind
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import key_counts, streamed

HASH = "_floe_hash"
GONE = "_floe_gone"
UNSURE = "_floe_unsure"
"""In the effective digest: a reserved write may have changed the key's row."""
HASH_VERSION = "duckdb-hash-1"
"""Names the hash function; part of every fingerprint (see `fingerprint_parts`)."""
_SEQ = "_floe_seq"
_RESERVED = "_floe_reserved"
_ROW = "_floe_row"
_ONE_CHUNK_ROWS = 100_000


def hashed_columns(
    names: Sequence[str], key: Sequence[str], mapping: Mapping[str, str] | None
) -> list[str]:
    """The source columns a destination is sent, in a stable order: the key, then the
    mapped columns (every column when there is no mapping)."""
    sent = [n for n in names if n in mapping] if mapping is not None else list(names)
    return list(dict.fromkeys([*key, *sent]))


def fingerprint_parts(schema: pa.Schema, columns: Sequence[str]) -> dict[str, object]:
    """What the hashes depend on besides the values: the hash function, DuckDB's
    version and the hashed columns with their types."""
    return {
        "hash": HASH_VERSION,
        "duckdb": duckdb.__version__,
        "columns": [[c, str(schema.field(c).type)] for c in columns],
    }


def row_hashes(rows: pa.Table, columns: Sequence[str]) -> pa.Array:
    """A 64-bit hash of each row over `columns` (uint64), the same for the same values
    of the same types in every process."""
    if not rows.num_rows:
        return pa.array([], pa.uint64())
    con = cursor()
    try:
        con.register("rows", rows.select(list(columns)))
        hashed = con.execute(
            f"SELECT hash({', '.join(q(c) for c in columns)}) AS h FROM rows"
        ).to_arrow_table()
    finally:
        con.close()
    return hashed.column("h").combine_chunks().cast(pa.uint64())


def entries(rows: pa.Table, key: Sequence[str], columns: Sequence[str]) -> pa.Table:
    """Digest entries for rows a destination is sent: their keys and hashes."""
    keys = rows.select(list(key))
    return keys.append_column(HASH, row_hashes(rows, columns)).append_column(
        GONE, pa.array([False] * rows.num_rows, pa.bool_())
    )


def gone_entries(keys: pa.Table, key: Sequence[str]) -> pa.Table:
    """Digest entries for keys a destination deleted."""
    n = keys.num_rows
    return (
        keys.select(list(key))
        .append_column(HASH, pa.nulls(n, pa.uint64()))
        .append_column(GONE, pa.array([True] * n, pa.bool_()))
    )


def unknown_entries(keys: pa.Table, key: Sequence[str]) -> pa.Table:
    """Digest entries for keys a destination holds with values unknown (a ledger of an
    earlier version recorded only that they were sent)."""
    n = keys.num_rows
    return (
        keys.select(list(key))
        .append_column(HASH, pa.nulls(n, pa.uint64()))
        .append_column(GONE, pa.array([False] * n, pa.bool_()))
    )


def encode(segment: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(segment, sink, compression="zstd")
    return sink.getvalue()


def decode(data: bytes) -> pa.Table:
    # One chunk per column: folding and comparing then view the columns, never copy them.
    table = pq.read_table(pa.BufferReader(data))
    if table.num_rows < _ONE_CHUNK_ROWS or all(c.num_chunks <= 1 for c in table.columns):
        return table
    combined = table.combine_chunks()
    del table
    pa.default_memory_pool().release_unused()  # the chunks' memory, for what follows
    return combined


def effective(segments: Sequence[tuple[bool, pa.Table]], key: Sequence[str]) -> pa.Table:
    """One row per key the destination may hold, from `(reserved, entries)` segments in
    the order they were written: the key, `HASH` (null: unknown) and `UNSURE`, in key
    order."""
    columns = {"hash_column": HASH, "gone_column": GONE, "unsure_column": UNSURE}
    sizes = [t.num_rows for _, t in segments]
    if sizes and max(sizes) * 2 < sum(sizes):  # no segment that most keys are in
        disjoint = fold_disjoint(segments, key, **columns)
        if disjoint is not None:
            return disjoint
    folded = fold_sorted(segments, key, _fold, **columns)
    return folded if folded is not None else _fold(segments, key)


def _fold(segments: Sequence[tuple[bool, pa.Table]], key: Sequence[str]) -> pa.Table:
    parts = [
        t.append_column(_SEQ, pa.array(np.full(t.num_rows, i, dtype=np.int64))).append_column(
            _RESERVED, pa.array(np.full(t.num_rows, reserved, dtype=bool))
        )
        for i, (reserved, t) in enumerate(segments)
        if t.num_rows
    ]
    if not parts:
        return pa.table({})
    union = pa.concat_tables(parts, promote_options="permissive")
    keys = ", ".join(q(k) for k in key)
    con = cursor()
    try:
        con.register("entries", union)
        return con.execute(
            f"""
            WITH folded AS (
                SELECT {keys},
                    arg_max({{'h': {HASH}, 'g': {GONE}}}, {_SEQ})
                        FILTER (WHERE NOT {_RESERVED}) AS held,
                    bool_or({_RESERVED}) AS unsure
                FROM entries GROUP BY ALL
            )
            SELECT {keys},
                CASE WHEN coalesce(held.g, true) THEN NULL ELSE held.h END AS {HASH},
                unsure AS {UNSURE}
            FROM folded
            WHERE unsure OR NOT coalesce(held.g, true)
            ORDER BY {keys}
            """
        ).to_arrow_table()
    finally:
        con.close()


def compare(
    span: SnapshotRange,
    columns: Sequence[str],
    digest: pa.Table | Spilled,
    *,
    reason: str,
    everything: bool = False,
    spill_rows: int | None = None,
    spill_dir: str | None = None,
) -> ChangeSet:
    """The change set that makes a destination holding `digest` equal to B (plan
    `digest`): counts are exact; keys B holds more than once, or as null, are invalid
    and neither sent nor deleted. `everything`: every valid row of B is sent, as an
    update where the digest holds its key, as an insert elsewhere (plan `full`): the
    digest's keys are trusted, its hashes are not. A digest in Arrow is spilled to
    DuckDB first when B holds more than `spill_rows` (default SPILL_ROWS) records."""
    plan: PlanKind = "full" if everything else "digest"
    snapshot = span.to
    if snapshot is None:
        return span.change_set(plan, ChangeCounts(), reason=reason)
    table, key = span.table, span.key
    check_readable(table, snapshot, span.name)
    limit = SPILL_ROWS if spill_rows is None else spill_rows
    if not isinstance(digest, Spilled) and _records(snapshot) > limit:
        digest = spill_table(digest, key, spill_dir)
    if not isinstance(digest, Spilled):
        by_files = compare_files(
            span,
            snapshot,
            columns,
            digest,
            hash_column=HASH,
            unsure_column=UNSURE,
            everything=everything,
            reason=reason,
        )
        if by_files is not None:
            return by_files
        # Keys that do not convert to B's key types: the SQL plan below, in memory.
        if max(digest.num_rows, _records(snapshot)) > min(limit, FALLBACK_SPILL_ROWS):
            digest = spill_table(digest, key, spill_dir)
    if isinstance(digest, Spilled):
        return compare_spilled(
            span,
            snapshot,
            columns,
            digest,
            hash_column=HASH,
            unsure_column=UNSURE,
            everything=everything,
            reason=reason,
        )
    keys = ", ".join(q(k) for k in key)
    con = cursor()
    try:
        key_counts(con, table, snapshot.snapshot_id, key, columns, span.row_filter)
        nulls = con.execute(
            f"SELECT {keys}, n FROM counts WHERE is_null ORDER BY {keys}"
        ).to_arrow_table()
        dupes = con.execute(
            f"SELECT {keys}, n FROM counts WHERE n > 1 AND NOT is_null ORDER BY {keys}"
        ).to_arrow_table()
        sent = _digest_relation(con, digest, key)
        wanted = con.execute(
            f"""
            SELECT {", ".join(f"c.{q(k)}" for k in key)},
                CASE WHEN d.present IS NULL OR (d.{UNSURE} AND d.{HASH} IS NULL)
                    THEN 'insert' ELSE 'update' END AS {OP_COLUMN}
            FROM counts c LEFT JOIN {sent} d USING ({keys})
            WHERE NOT c.is_null AND c.n = 1
              AND ({everything} OR d.present IS NULL OR d.{UNSURE}
                   OR d.{HASH} IS DISTINCT FROM c.h)
            ORDER BY {keys}
            """
        ).to_arrow_table()
        gone = con.execute(
            f"SELECT {keys} FROM {sent} d ANTI JOIN counts USING ({keys}) ORDER BY {keys}"
        ).to_arrow_table()
    finally:
        con.close()
    sample, invalid = invalid_profile(nulls, dupes)
    ops = wanted.column(OP_COLUMN)
    inserted = int(pc.sum(pc.equal(ops, "insert")).as_py() or 0)
    deletes = None
    if gone.num_rows:
        ops = pa.array(["delete"] * gone.num_rows, pa.string())
        deletes = conform(gone.append_column(OP_COLUMN, ops), span.out)
    counts = ChangeCounts(
        inserted=inserted,
        updated=wanted.num_rows - inserted,
        deleted=gone.num_rows,
        invalid=invalid,
    )
    snapshot_id = snapshot.snapshot_id

    def batches() -> Iterator[pa.RecordBatch]:
        if wanted.num_rows:
            yield from _rows_of(span, snapshot_id, wanted)
        if deletes is not None:
            yield from deletes.to_batches(max_chunksize=span.batch_rows)

    return span.change_set(plan, counts, batches, invalid=sample, reason=reason)


def _records(snapshot: Snapshot) -> int:
    """B's record count from its summary (0 when it does not say)."""
    summary = snapshot.summary
    try:
        return int((summary.get("total-records") if summary is not None else None) or 0)
    except ValueError:
        return 0


def snapshot_entries(
    table: Table,
    snapshot_id: int,
    key: Sequence[str],
    columns: Sequence[str],
    row_filter: RowFilter | None = None,
) -> pa.Table:
    """Digest entries of every row of a snapshot (what a destination that confirmed
    that snapshot holds): of the rows `row_filter` matches, by field id."""
    keys = ", ".join(q(k) for k in key)
    read = tuple(dict.fromkeys([*key, *columns]))
    if row_filter is not None:
        rows = row_filter.matching(table, snapshot_id, read)
    else:
        rows = streamed(table.scan(snapshot_id=snapshot_id, selected_fields=read))
    con = cursor()
    try:
        con.register("rows", rows)
        return con.execute(
            f"SELECT {keys}, hash({', '.join(q(c) for c in columns)}) AS {HASH}, "
            f"false AS {GONE} FROM rows"
        ).to_arrow_table()
    finally:
        con.close()


def _digest_relation(con: duckdb.DuckDBPyConnection, digest: pa.Table, key: Sequence[str]) -> str:
    """Register the effective digest; the name of a relation with a `present` column."""
    if not digest.num_rows:  # typed like B's keys, and empty
        con.execute(
            f"CREATE TEMP TABLE digest AS SELECT {', '.join(q(k) for k in key)}, "
            f"NULL::UBIGINT AS {HASH}, false AS {UNSURE}, true AS present "
            "FROM counts WHERE false"
        )
    else:
        con.register("digest_rows", digest)
        con.execute("CREATE TEMP VIEW digest AS SELECT *, true AS present FROM digest_rows")
    return "digest"


def _rows_of(span: SnapshotRange, snapshot_id: int, wanted: pa.Table) -> Iterator[pa.RecordBatch]:
    """The rows of B whose key is in `wanted`, with `wanted`'s op, batch by batch."""
    key = span.key
    keys = ", ".join(q(k) for k in key)
    if span.row_filter is not None:
        rows_read = span.row_filter.matching(span.table, snapshot_id)
    else:
        rows_read = streamed(span.table.scan(snapshot_id=snapshot_id))
    con = cursor()
    try:
        con.register("wanted", wanted)
        for batch in rows_read:
            if not batch.num_rows:
                continue
            rows = pa.Table.from_batches([batch])
            positions = pa.array(range(rows.num_rows), pa.int64())
            con.register("r", rows.select(list(key)).append_column(_ROW, positions))
            found = con.execute(
                f"SELECT r.{_ROW}, w.{OP_COLUMN} FROM r JOIN wanted w USING ({keys}) "
                f"ORDER BY r.{_ROW}"
            ).to_arrow_table()
            con.unregister("r")
            if not found.num_rows:
                continue
            taken = rows.take(found.column(_ROW)).append_column(OP_COLUMN, found.column(OP_COLUMN))
            yield from taken.cast(span.out).to_batches(max_chunksize=span.batch_rows)
    finally:
        con.close()


__all__ = [
    "GONE",
    "HASH",
    "HASH_VERSION",
    "UNSURE",
    "compare",
    "decode",
    "effective",
    "encode",
    "entries",
    "fingerprint_parts",
    "gone_entries",
    "hashed_columns",
    "row_hashes",
    "snapshot_entries",
    "unknown_entries",
]
