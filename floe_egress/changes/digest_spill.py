"""A digest too large for the fast path's memory: kept and folded in DuckDB, on disk.

The fast path (`changes.digest_fold`, `changes.digest_files`) holds the effective digest
and B's keys and hashes in Arrow and numpy, about 55 bytes a row above the process's
idle ~160 MB. Beyond `SPILL_ROWS` rows (of the digest or of B) a digest is `Spilled`:
a DuckDB database of its own in a temporary directory, with `memory_limit` set to
`DUCKDB_MEMORY_LIMIT` and that directory as its `temp_directory`, so its joins,
groupings and sorts spill to disk instead of growing. Its segments go in as Parquet
files (the bytes the store keeps, written as they are: never decoded into Arrow) and are
folded in SQL with `changes.digest.effective`'s semantics: later held segments override
earlier ones key by key, a reserved segment makes a key unsure, a gone entry drops it.

Budget (`MEMORY_BUDGET_MB`, peak RSS of the whole process): idle imports and table
metadata (~190 MB), DuckDB (~300 MB of RSS under its 200 MB limit), and what is outside
it: a 16 MB part of a segment while the store copies it to its file, one data file of B
as Arrow when DuckDB cannot read it itself, and one batch of changed rows. Measured
(bench/RESULTS.md, "Digest (issue 12)"): 519 MB at 10M rows, 523 MB at 20M.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from floe_egress.changes.duck import q
from floe_egress.errors import DigestDamagedError

MEMORY_BUDGET_MB = 600
"""Peak RSS a comparison of a table with its digest may reach, whatever their size."""
_IDLE_MB = 160
"""The process before the comparison: imports, the table's metadata, the store."""
_FAST_BYTES_PER_ROW = 55
"""What the fast path holds a row (bench/RESULTS.md, "Digest (issue 12)")."""
_MARGIN_MB = 100
SPILL_ROWS = (MEMORY_BUDGET_MB - _IDLE_MB - _MARGIN_MB) * 1_000_000 // _FAST_BYTES_PER_ROW
"""Rows (digest entries, or B's records) beyond which a comparison spills (~6.2M)."""
FALLBACK_SPILL_ROWS = 1_000_000
"""Rows beyond which a digest whose keys do not convert to B's key types (no fast path)
spills rather than take changes.digest.compare's in-memory SQL plan (~240 bytes a row:
1.2 GB at 5M)."""
DUCKDB_MEMORY_LIMIT = "200MB"
"""DuckDB's own limit in the spilled path; it spills to its temp directory beyond."""

AROUND_ROWS = 100_000
"""Below this the plain fold is as fast as `_fold_around_largest`."""
_HASH = "_floe_hash"
_GONE = "_floe_gone"
_UNSURE = "_floe_unsure"


def _close(con: duckdb.DuckDBPyConnection, directory: str) -> None:
    try:
        con.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Spilled:
    """An effective digest in a DuckDB database on disk: table `digest` with the key
    columns, `_floe_hash` (UBIGINT, null: unknown) and `_floe_unsure`. The database
    and its directory go when `close` is called or the object is collected."""

    def __init__(self, key: Sequence[str], work_dir: str | None = None) -> None:
        self.key = tuple(key)
        self.directory = tempfile.mkdtemp(prefix="floe-digest-", dir=work_dir)
        spill = os.path.join(self.directory, "spill")
        os.mkdir(spill)
        self.con = duckdb.connect(
            os.path.join(self.directory, "digest.duckdb"),
            config={
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "temp_directory": spill,
                "preserve_insertion_order": False,
            },
        )
        self._segments: list[tuple[bool, str]] = []
        self._finalizer = weakref.finalize(self, _close, self.con, self.directory)
        self.num_rows = 0

    def close(self) -> None:
        self._finalizer()

    @property
    def keys(self) -> str:
        return ", ".join(q(k) for k in self.key)

    def segment_path(self) -> str:
        """Where the next segment's Parquet bytes go (then `add_segment_file`)."""
        return os.path.join(self.directory, f"segment-{len(self._segments)}.parquet")

    def add_segment(self, reserved: bool, data: bytes, *, label: str) -> None:
        """A segment's Parquet bytes, as the store keeps them (see `add_segment_file`)."""
        path = self.segment_path()
        with open(path, "wb") as f:
            f.write(data)
        self.add_segment_file(reserved, path, label=label)

    def add_segment_file(self, reserved: bool, path: str, *, label: str) -> None:
        """The segment at `path` (`segment_path`); DigestDamagedError when it is not a
        readable Parquet file of digest entries (`label` says where)."""
        try:
            names = {
                str(r[0])
                for r in self.con.execute("SELECT name FROM parquet_schema(?)", [path]).fetchall()
            }
        except duckdb.Error as exc:
            raise DigestDamagedError(f"{label} cannot be read ({type(exc).__name__})") from None
        if not {*self.key, _HASH, _GONE} <= names:
            raise DigestDamagedError(f"{label} lacks the digest's columns")
        self._segments.append((reserved, path))

    def add_table(self, reserved: bool, entries: pa.Table) -> None:
        """Entries held in Arrow (a small segment, or a digest already loaded)."""
        path = self.segment_path()
        self.con.register("arrow_entries", entries)
        try:
            self.con.execute(f"COPY arrow_entries TO '{path}' (FORMAT parquet)")
        finally:
            self.con.unregister("arrow_entries")
        self._segments.append((reserved, path))

    def fold(self) -> None:
        """Table `digest` from the segments added (see the module doc)."""
        self.con.execute("DROP TABLE IF EXISTS digest")
        self.num_rows = 0
        if not self._segments:
            self.con.execute(
                f"CREATE TABLE digest AS SELECT {', '.join(f'NULL AS {q(k)}' for k in self.key)}, "
                f"NULL::UBIGINT AS {_HASH}, false AS {_UNSURE} WHERE false"
            )
            self.num_rows = 0
            return
        try:
            if not self._fold_around_largest():
                self._fold_all()
        except duckdb.OutOfMemoryException:
            raise  # not the segments' fault
        except duckdb.Error as exc:
            raise DigestDamagedError(
                f"a segment of the digest cannot be folded ({type(exc).__name__}: {exc})"
            ) from None
        for _, path in self._segments:
            os.remove(path)
        self._segments.clear()
        row = self.con.execute("SELECT count(*) FROM digest").fetchone()
        self.num_rows = int(row[0]) if row else 0

    def _union(self) -> str:
        return " UNION ALL BY NAME ".join(
            f"SELECT {self.keys}, CAST({_HASH} AS UBIGINT) AS h, {_GONE} AS g, {i} AS seq, "
            f"{str(reserved).lower()} AS r FROM read_parquet('{path}')"
            for i, (reserved, path) in enumerate(self._segments)
        )

    def _folded(self, entries: str) -> str:
        """The fold of `entries` (a relation of keys, h, g, seq, r) as a SELECT."""
        keys = self.keys
        return f"""
            SELECT {keys},
                CASE WHEN coalesce(held.g, true) THEN NULL ELSE held.h END AS {_HASH},
                unsure AS {_UNSURE}
            FROM (
                SELECT {keys},
                    arg_max({{'h': h, 'g': g}}, seq) FILTER (WHERE NOT r) AS held,
                    bool_or(r) AS unsure
                FROM {entries} GROUP BY ALL
            )
            WHERE unsure OR NOT coalesce(held.g, true)
            """

    def _fold_all(self) -> None:
        self.con.execute("DROP TABLE IF EXISTS digest")
        self.con.execute(f"CREATE TABLE digest AS {self._folded(f'({self._union()})')}")

    def _fold_around_largest(self) -> bool:
        """The usual case, several times faster: the largest segment is held (a full
        send's or a compaction's, one entry per key) and only the keys the other
        segments name are folded; the rest of it is kept as it is. False (nothing
        kept) when it does not apply or that segment names a key twice."""
        sizes = []
        for _, segment in self._segments:
            row = self.con.execute("SELECT count(*) FROM read_parquet(?)", [segment]).fetchone()
            sizes.append(int(row[0]) if row else 0)
        big = max(range(len(sizes)), key=sizes.__getitem__)
        reserved, path = self._segments[big]
        if reserved or sizes[big] < AROUND_ROWS:
            return False
        keys = self.keys
        self.con.execute(
            f"""
            CREATE TABLE digest AS
            WITH entries AS ({self._union()}),
            named AS (SELECT DISTINCT {keys} FROM entries WHERE seq <> {big})
            SELECT {keys}, CAST({_HASH} AS UBIGINT) AS {_HASH}, false AS {_UNSURE}
            FROM read_parquet('{path}') ANTI JOIN named USING ({keys})
            WHERE NOT coalesce({_GONE}, true)
            UNION ALL BY NAME
            {self._folded(f"(SELECT * FROM entries SEMI JOIN named USING ({keys}))")}
            """
        )
        counted = self.con.execute(
            f"SELECT (SELECT count(*) FROM digest), "
            f"(SELECT count(*) FROM (SELECT DISTINCT {keys} FROM digest))"
        ).fetchone()
        if counted is not None and counted[0] == counted[1]:
            return True
        self.con.execute("DROP TABLE digest")
        return False

    def compacted(self, parts: Sequence[pa.Table]) -> tuple[bytes, int]:
        """The digest as held entries (an unsure key with its hash unknown), overridden
        key by key by the held `parts` in order: one segment's Parquet bytes and its
        rows, in key order, written by DuckDB (what `Tally.update` stores)."""
        base = os.path.join(self.directory, "base.parquet")
        self.con.execute(
            f"COPY (SELECT {self.keys}, CASE WHEN {_UNSURE} THEN NULL ELSE {_HASH} END "
            f"AS {_HASH}, false AS {_GONE} FROM digest) TO '{base}' (FORMAT parquet)"
        )
        self._segments = [(False, base)]
        for part in parts:
            if part.num_rows:
                self.add_table(False, part)
        self.fold()
        out = os.path.join(self.directory, "compacted.parquet")
        self.con.execute(
            f"COPY (SELECT {self.keys}, {_HASH}, false AS {_GONE} FROM digest "
            f"ORDER BY {self.keys}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
        )
        with open(out, "rb") as f:
            data = f.read()
        os.remove(out)
        return data, self.num_rows

    def to_arrow(self) -> pa.Table:
        """The whole digest in Arrow, in key order (small digests only: tests, verify)."""
        return self.con.execute(f"SELECT * FROM digest ORDER BY {self.keys}").to_arrow_table()


def spill_table(digest: pa.Table, key: Sequence[str], work_dir: str | None = None) -> Spilled:
    """An effective digest already in Arrow, spilled (B is too large for the fast path)
    under `work_dir` (None: the system's temporary directory)."""
    spilled = Spilled(key, work_dir)
    spilled.con.register("arrow_digest", digest)
    try:
        spilled.con.execute("CREATE TABLE digest AS SELECT * FROM arrow_digest")
    finally:
        spilled.con.unregister("arrow_digest")
    spilled.num_rows = digest.num_rows
    return spilled


__all__ = [
    "DUCKDB_MEMORY_LIMIT",
    "FALLBACK_SPILL_ROWS",
    "MEMORY_BUDGET_MB",
    "SPILL_ROWS",
    "Spilled",
    "spill_table",
]
