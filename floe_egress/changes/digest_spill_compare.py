"""Comparing a snapshot with a `Spilled` digest, inside its DuckDB database.

B's data files go into table `b` (key columns, the row hash of the digest's columns,
the file's index and the row's place in it): read by DuckDB itself with `read_parquet`
where it reads exactly what pyarrow would (reading.py), otherwise one file at a time by
Arrow and hashed by DuckDB: the same hash expression as the fast path, so stored hashes
compare equal. B's keys are grouped (null and repeated keys are invalid), joined with
the digest, and the changed places kept in table `changed`; counts are read from it.
The change set's batches then read the changed rows back, a batch of places at a time
in file order, and the deletes, streamed from DuckDB: nothing holds the whole table,
the whole digest or every changed key in Arrow. The classification is the fast path's
and the SQL fallback's (see changes.digest.compare): an insert for a key the digest
lacks or only a reserved write holds, an update for a key whose hash differs, is
unknown or unsure (or every key it holds, for `everything`), a delete for a key B lacks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import FileScanTask
from pyiceberg.table.snapshots import Snapshot

from floe_egress.changes.digest_spill import Spilled
from floe_egress.changes.duck import q
from floe_egress.changes.files import planned_tasks
from floe_egress.changes.full import invalid_profile
from floe_egress.changes.keys import conform
from floe_egress.changes.model import OP_COLUMN, ChangeCounts, ChangeSet, PlanKind
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.reading import NATIVE_FILE, NATIVE_ROW, RowReader, local_path
from floe_egress.errors import SourceError

_H = "__floe_h"
_N = "__floe_n"
_SAMPLE = 100


def compare_spilled(
    span: SnapshotRange,
    snapshot: Snapshot,
    columns: Sequence[str],
    digest: Spilled,
    *,
    hash_column: str,
    unsure_column: str,
    everything: bool,
    reason: str,
) -> ChangeSet:
    """The change set of B (`snapshot`) against `digest` (see changes.digest.compare)."""
    key = span.key
    con = digest.con
    keys = ", ".join(q(k) for k in key)
    tasks = planned_tasks(span.table, snapshot, span.name)
    if span.row_filter is not None:  # files whose statistics rule out a matching row
        tasks = span.row_filter.prune(tasks)
    reader = RowReader(span.table, span.schema, hashed=columns, row_filter=span.row_filter)
    paths = [local_path(t) for t in tasks]
    native = (
        all(p is not None for p in paths)
        and not any(t.delete_files for t in tasks)
        and reader.native_ok(con, [p for p in paths if p is not None])
    )
    for name in ("b", "invalid", "changed", "gone"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    if native:
        rows = _native_side(digest, reader, [p for p in paths if p is not None], key)
        con.execute(f"CREATE TABLE b AS SELECT * FROM {rows}")
        con.unregister("paths")
    else:
        _arrow_side(digest, reader, tasks, key)
    null = " OR ".join(f"b.{q(k)} IS NULL" for k in key)
    # Null keys, and keys B holds more than once: neither sent nor deleted.
    con.execute(
        f"CREATE TABLE invalid AS SELECT {keys}, count(*) AS n, ({null}) AS is_null "
        f"FROM b GROUP BY ALL HAVING count(*) > 1 OR ({null})"
    )
    everything_sql = "true" if everything else "false"
    con.execute(
        f"""
        CREATE TABLE changed AS
        SELECT b.{NATIVE_FILE}, b.{NATIVE_ROW},
            CASE WHEN d.present IS NULL OR (d.{unsure_column} AND d.{hash_column} IS NULL)
                THEN 'insert' ELSE 'update' END AS {OP_COLUMN}
        FROM b ANTI JOIN invalid USING ({keys})
            LEFT JOIN (SELECT *, true AS present FROM digest) d USING ({keys})
        WHERE NOT ({null})
          AND ({everything_sql} OR d.present IS NULL OR d.{unsure_column}
               OR d.{hash_column} IS DISTINCT FROM b.{_H})
        """
    )
    ops = dict(con.execute(f"SELECT {OP_COLUMN}, count(*) FROM changed GROUP BY ALL").fetchall())
    con.execute(f"CREATE TABLE gone AS SELECT {keys} FROM digest ANTI JOIN b USING ({keys})")
    con.execute("DROP TABLE b")
    deleted_row = con.execute("SELECT count(*) FROM gone").fetchone()
    invalid_row = con.execute("SELECT coalesce(sum(n), 0) FROM invalid").fetchone()
    nulls = con.execute(
        f"SELECT {keys}, n FROM invalid WHERE is_null ORDER BY {keys} LIMIT {_SAMPLE}"
    ).to_arrow_table()
    dupes = con.execute(
        f"SELECT {keys}, n FROM invalid WHERE NOT is_null ORDER BY {keys} LIMIT {_SAMPLE}"
    ).to_arrow_table()
    sample, _ = invalid_profile(nulls, dupes)
    counts = ChangeCounts(
        inserted=int(ops.get("insert", 0)),
        updated=int(ops.get("update", 0)),
        deleted=int(deleted_row[0]) if deleted_row else 0,
        invalid=int(invalid_row[0]) if invalid_row else 0,
    )
    plan: PlanKind = "full" if everything else "digest"

    def batches() -> Iterator[pa.RecordBatch]:
        if native:
            yield from _native_rows(digest, reader, [p or "" for p in paths], span)
        else:
            yield from _arrow_rows(digest, reader, tasks, span)
        gone = con.execute(f"SELECT * FROM gone ORDER BY {keys}").to_arrow_reader(span.batch_rows)
        for batch in gone:
            if batch.num_rows:
                ops = pa.array(["delete"] * batch.num_rows, pa.string())
                rows = pa.Table.from_batches([batch]).append_column(OP_COLUMN, ops)
                yield from conform(rows, span.out).to_batches(max_chunksize=span.batch_rows)

    return span.change_set(plan, counts, batches, invalid=sample, reason=reason)


def _native_side(digest: Spilled, reader: RowReader, paths: list[str], key: Sequence[str]) -> str:
    """A relation of B's rows read by DuckDB (registers `paths`: unregister it after)."""
    digest.con.register("paths", pa.table({NATIVE_FILE: paths, _N: np.arange(len(paths))}))
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    return f"""(
        SELECT {", ".join(f"x.{q(k)}" for k in key)}, x.{_H},
            p.{_N} AS {NATIVE_FILE}, x.{NATIVE_ROW}
        FROM (
            SELECT {reader.native_keys(key)}, {reader.hash_sql} AS {_H},
                file_row_number AS {NATIVE_ROW}, {NATIVE_FILE}
            FROM read_parquet([{files}], file_row_number = true,
                filename = '{NATIVE_FILE}', hive_partitioning = false)
        ) x JOIN paths p USING ({NATIVE_FILE})
    )"""


def _arrow_side(
    digest: Spilled, reader: RowReader, tasks: Sequence[FileScanTask], key: Sequence[str]
) -> None:
    con = digest.con
    key_schema = pa.schema([reader.target.field(k).with_nullable(True) for k in key])
    created = False
    for index, task in enumerate(tasks):
        rows = reader.read(task)
        part = rows.select(list(key)).cast(key_schema)
        hashes = pa.array(reader.hash_rows(rows).view(np.uint64))
        part = (
            part.append_column(_H, hashes)
            .append_column(NATIVE_FILE, pa.array(np.full(rows.num_rows, index, np.int64)))
            .append_column(NATIVE_ROW, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        )
        del rows
        con.register("part", part)
        try:
            if created:
                con.execute("INSERT INTO b SELECT * FROM part")
            else:
                con.execute("CREATE TABLE b AS SELECT * FROM part")
                created = True
        finally:
            con.unregister("part")
    if not created:
        empty = key_schema.empty_table()
        empty = empty.append_column(_H, pa.array([], pa.uint64()))
        empty = empty.append_column(NATIVE_FILE, pa.array([], pa.int64()))
        empty = empty.append_column(NATIVE_ROW, pa.array([], pa.int64()))
        con.register("part", empty)
        try:
            con.execute("CREATE TABLE b AS SELECT * FROM part")
        finally:
            con.unregister("part")


def _changed_places(digest: Spilled, rows: int) -> Iterator[pa.RecordBatch]:
    reader = digest.con.execute(
        f"SELECT {NATIVE_FILE}, {NATIVE_ROW}, {OP_COLUMN} FROM changed "
        f"ORDER BY {NATIVE_FILE}, {NATIVE_ROW}"
    ).to_arrow_reader(rows)
    for batch in reader:
        if batch.num_rows:
            yield batch


def _native_rows(
    digest: Spilled, reader: RowReader, paths: list[str], span: SnapshotRange
) -> Iterator[pa.RecordBatch]:
    """The changed rows, read by DuckDB joined on (file, row), a batch at a time."""
    for places in _changed_places(digest, span.batch_rows):
        files = places.column(NATIVE_FILE)
        wanted = pa.table(
            {
                NATIVE_FILE: pa.array(paths).take(files),
                NATIVE_ROW: places.column(NATIVE_ROW),
                OP_COLUMN: places.column(OP_COLUMN),
            }
        )
        group = [paths[i] for i in pc.unique(files).to_pylist()]
        rows = reader.native_rows(group, wanted)
        if rows.num_rows != places.num_rows:
            raise SourceError(
                f"table {span.name}: {places.num_rows} changed rows were found in its data "
                f"files, {rows.num_rows} read again: a file changed while it was compared "
                "with the digest"
            )
        yield from rows.cast(span.out).to_batches(max_chunksize=span.batch_rows)


def _arrow_rows(
    digest: Spilled, reader: RowReader, tasks: Sequence[FileScanTask], span: SnapshotRange
) -> Iterator[pa.RecordBatch]:
    """The changed rows, one data file read by Arrow at a time, in file order."""
    current: tuple[int, pa.Table] | None = None
    for places in _changed_places(digest, span.batch_rows):
        files = np.asarray(places.column(NATIVE_FILE).to_numpy(), dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, files[1:] != files[:-1]])
        ends = np.r_[starts[1:], len(files)]
        for first, last in zip(starts.tolist(), ends.tolist(), strict=True):
            index = int(files[first])
            if current is None or current[0] != index:
                current = (index, reader.read(tasks[index]))
            rows = current[1]
            local = places.column(NATIVE_ROW).slice(first, last - first)
            if pc.max(local).as_py() >= rows.num_rows:
                raise SourceError(
                    f"table {span.name}: data file {tasks[index].file.file_path} read "
                    f"{rows.num_rows} rows, fewer than before: it changed while it was "
                    "compared with the digest"
                )
            ops = places.column(OP_COLUMN).slice(first, last - first)
            taken = rows.take(local).append_column(OP_COLUMN, ops).cast(span.out)
            yield from taken.to_batches(max_chunksize=span.batch_rows)


__all__ = ["compare_spilled"]
