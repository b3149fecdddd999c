"""Reading the data files of a diff: whole rows with B's schema, or only key + row hash.

Rows are always read with pyarrow, projected onto B's schema by field id:
- directly with pyarrow.parquet when that is the same thing: no delete file applies to
  the file, and every column of B is a top-level column of the file (found by field
  id) with the same Arrow type (string/large_string and binary/large_binary alike);
- otherwise with pyiceberg's ArrowScan (renamed, widened or missing columns, identity
  partition values, positional deletes, name mappings).

Row hashes are computed by DuckDB over B's column types, so identical rows hash alike
on both sides of a diff:
- `hash_rows` hashes an Arrow table (each column cast to the DuckDB type of B's column);
- `native_compacts` lets DuckDB read the Parquet files itself (key columns, row hash
  and row position, in C++, without building Arrow rows). It is used only when it
  reads exactly what pyarrow would: local files without delete files whose Parquet
  columns are identical in every file (name, field id, physical and logical type, in
  the same order), hold every column of B with B's name, and that DuckDB types exactly
  like B's Arrow schema. Anything else returns None and the caller reads with Arrow.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
from pyiceberg.types import UUIDType

from floe_egress.changes.duck import cursor, q
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import arrow_schema, uuid_as_text, uuids_as_text

_FIELD_ID = b"PARQUET:field_id"
_GLOB = set("*?[]{}")
_NONE = np.zeros(0, dtype=np.int64)
NATIVE_GROUP_ROWS = 2_000_000
"""Rows per DuckDB query when it reads many files: its Arrow result costs several times
the size of the data while it is built."""
NATIVE_FILE = "__floe_file"
NATIVE_ROW = "__floe_row"
_DUCKDB_NAMES = frozenset(
    {"file_row_number", "filename", NATIVE_FILE, NATIVE_ROW, "__floe_h", "__floe_n"}
)
"""Column names the DuckDB reads add or use: a table with one is read by Arrow."""
_CHUNK_ROWS = 16_384
"""DuckDB scans an Arrow table one chunk per thread: smaller chunks use both cores."""


def _plain(t: pa.DataType) -> pa.DataType:
    """string and large_string (binary and large_binary) read and hash alike."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def _is_nested(t: pa.DataType) -> bool:
    return bool(pa.types.is_nested(t))


@dataclass(frozen=True, slots=True)
class Compact:
    """One side of a diff: per row (files one after another, rows in file order) the
    key columns with B's types and a 64-bit hash of the whole row."""

    keys: pa.Table
    hashes: np.ndarray
    """int64 (the bits of DuckDB's uint64 hash); empty when not computed."""
    offsets: np.ndarray
    """int64, one more than there are files: rows of file i are offsets[i]:offsets[i+1]."""

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])


@functools.lru_cache(maxsize=64)
def _duck_types(target: pa.Schema) -> tuple[str, ...]:
    """The DuckDB type of each column of an Arrow schema (what a scan of it yields)."""
    con = cursor()
    try:
        con.register("t", target.empty_table())
        return tuple(str(row[1]) for row in con.execute("DESCRIBE SELECT * FROM t").fetchall())
    finally:
        con.close()


class RowReader:
    """Reads data files of `table` with B's `schema` and hashes their rows; with a
    `row_filter`, only the rows that match (what the destination should hold), read
    with Arrow (the columns the filter needs as well)."""

    def __init__(
        self,
        table: Table,
        schema: Schema,
        hashed: Sequence[str] | None = None,
        row_filter: RowFilter | None = None,
    ) -> None:
        self.table = table
        self.schema = schema
        self.row_filter = None if row_filter is None or row_filter.everything else row_filter
        self.target = arrow_schema(schema)
        self.names = [f.name for f in schema.fields]
        self.field_ids = [f.field_id for f in schema.fields]
        self.duck_types = _duck_types(self.target)
        # UUID columns are sent as text; DuckDB reads them from Parquet as UUID and
        # casts them to the same canonical text.
        self._uuid = {f.name for f in schema.fields if isinstance(f.field_type, UUIDType)}
        self.native_types = tuple(
            "UUID" if n in self._uuid else t
            for n, t in zip(self.names, self.duck_types, strict=True)
        )
        self._plain_types = [_plain(f.type) for f in self.target]
        self._primitive = not any(_is_nested(f.type) for f in self.target)
        # The row hash covers `hashed` in that order (a digest's columns), else every
        # column of B in B's order.
        types = dict(zip(self.names, self.duck_types, strict=True))
        cast = ", ".join(f"CAST({q(n)} AS {types[n]})" for n in (hashed or self.names))
        self.hash_sql = f"hash({cast})"
        self._wide: RowReader | None = None
        if self.row_filter is not None and (extra := self.row_filter.missing(self.names)):
            self._wide = RowReader(table, self.row_filter.schema.select(*self.names, *extra))

    # -- whole rows ---------------------------------------------------------------

    def read(self, task: FileScanTask) -> pa.Table:
        """The rows of one data file (deletes applied) with B's columns, in file order;
        only those that match the filter."""
        if self.row_filter is None:
            return self._read_all(task)
        rows = (self._wide or self)._read_all(task)
        return self.row_filter.apply(rows).select(self.names)

    def _read_all(self, task: FileScanTask) -> pa.Table:
        plain = not task.delete_files and task.file.file_format == FileFormat.PARQUET
        if self._primitive and plain:
            rows = self._read_direct(task)
            if rows is not None:
                return rows
        return self._scan(task)

    def _scan(self, task: FileScanTask) -> pa.Table:
        scan = ArrowScan(self.table.metadata, self.table.io, self.schema, AlwaysTrue())
        rows = uuids_as_text(scan.to_table([task]))
        return rows if rows.schema.equals(self.target) else rows.cast(self.target)

    def _read_direct(self, task: FileScanTask) -> pa.Table | None:
        with self.table.io.new_input(task.file.file_path).open() as f:
            parquet = pq.ParquetFile(f)
            columns = self._physical_columns(parquet.schema_arrow)
            if columns is None:
                return None
            rows = parquet.read(columns=columns, use_threads=True)
        return uuids_as_text(rows.rename_columns(self.names))

    def _physical_columns(self, physical: pa.Schema) -> list[str] | None:
        """The file's column names for B's columns, or None when a plain read would not
        give B's columns and types."""
        by_id: dict[int, pa.Field] = {}
        for field in physical:
            raw = (field.metadata or {}).get(_FIELD_ID)
            if raw is None:
                return None
            by_id[int(raw)] = field
        if len(set(physical.names)) != len(physical.names):
            return None
        columns = []
        for field_id, wanted in zip(self.field_ids, self._plain_types, strict=True):
            field = by_id.get(field_id)
            if field is None or _plain(uuid_as_text(field.type)) != wanted:
                return None
            columns.append(field.name)
        return columns

    # -- row hashes ---------------------------------------------------------------

    def hash_rows(self, rows: pa.Table) -> np.ndarray:
        """DuckDB's 64-bit hash of each row of `rows` (B's columns), as int64."""
        if rows.num_rows == 0:
            return np.zeros(0, dtype=np.int64)
        if rows.num_rows > _CHUNK_ROWS:
            rows = pa.Table.from_batches(rows.to_batches(max_chunksize=_CHUNK_ROWS), rows.schema)
        con = cursor()
        try:
            result = con.from_arrow(rows).project(f"{self.hash_sql} AS h").to_arrow_table()
        finally:
            con.close()
        return _int64_bits(result.column(0))

    # -- DuckDB reading Parquet itself -------------------------------------------

    def native_compacts(
        self, sides: Sequence[Sequence[FileScanTask]], key: tuple[str, ...]
    ) -> list[Compact] | None:
        """Key columns and row hashes of every file of each side, read by DuckDB; None
        when DuckDB would not read exactly what pyarrow reads (see the module doc)."""
        tasks = [t for side in sides for t in side]
        if not tasks or not self._primitive or self.row_filter is not None:
            return None
        paths = []
        for task in tasks:
            path = local_path(task)
            if path is None or task.delete_files or task.file.file_format != FileFormat.PARQUET:
                return None
            paths.append(path)
        counts = np.array([t.file.record_count for t in tasks], dtype=np.int64)
        key_types = pa.schema([self.target.field(k).with_nullable(True) for k in key])
        hashes = np.empty(int(counts.sum()), dtype=np.int64)
        key_parts: list[pa.Table] = []
        con = cursor()
        try:
            if not self._native_schema_ok(con, paths):
                return None
            keys = self.native_keys(key)
            select = f"SELECT {keys}, {self.hash_sql} AS __floe_h, file_row_number AS __floe_n"
            row = 0
            for first, last in _groups(counts, NATIVE_GROUP_ROWS):
                # A relation, not execute(): its Arrow result is built in parallel (2x
                # faster for millions of rows); paths are literals, as prepared parameters
                # make this much slower still. Groups of files bound its memory.
                files = ", ".join(_literal(p) for p in paths[first:last])
                result = con.sql(
                    f"{select} FROM read_parquet([{files}], file_row_number = true, "
                    "hive_partitioning = false)"
                ).to_arrow_table()
                n = result.num_rows
                if row + n > len(hashes) or not _in_file_order(
                    result.column("__floe_n"), counts[first:last]
                ):
                    return None
                hashes[row : row + n] = _int64_bits(result.column("__floe_h"))
                # Copied: an imported Arrow column keeps its whole result alive.
                key_parts.append(_copy(result.select(list(key)).cast(key_types)))
                row += n
                del result
        finally:
            con.close()
        # One chunk: the key columns are then viewed, not copied, as numpy arrays.
        keys_table = pa.concat_tables(key_parts).combine_chunks()
        del key_parts
        compacts = []
        start = 0
        for side in sides:
            side_counts = counts[start : start + len(side)]
            offsets = np.concatenate([[0], np.cumsum(side_counts)]).astype(np.int64)
            first_row = int(counts[:start].sum())
            last_row = first_row + int(offsets[-1])
            compacts.append(
                Compact(
                    keys=keys_table.slice(first_row, last_row - first_row),
                    hashes=hashes[first_row:last_row],
                    offsets=offsets,
                )
            )
            start += len(side)
        return compacts

    def native_rows(self, paths: Sequence[str], wanted: pa.Table) -> pa.Table:
        """The whole rows (B's columns, UUIDs as text) at the places `wanted` names, with
        its other columns after them. `wanted` has `NATIVE_FILE` (a path of `paths`) and
        `NATIVE_ROW` (a row of that file); call it only for files `native_compacts` read.
        DuckDB reads the files and joins, so no other row becomes an Arrow row."""
        columns = ", ".join(
            f"CAST(x.{q(n)} AS VARCHAR) AS {q(n)}" if n in self._uuid else f"x.{q(n)}"
            for n in self.names
        )
        extra = [c for c in wanted.column_names if c not in (NATIVE_FILE, NATIVE_ROW)]
        files = ", ".join(_literal(p) for p in paths)
        con = cursor()
        try:
            con.register("w", wanted)
            return con.sql(
                f"SELECT {columns}{''.join(f', w.{q(c)}' for c in extra)} "
                f"FROM read_parquet([{files}], file_row_number = true, "
                f"filename = '{NATIVE_FILE}', hive_partitioning = false) x "
                f"JOIN w ON x.{NATIVE_FILE} = w.{NATIVE_FILE} "
                f"AND x.file_row_number = w.{NATIVE_ROW}"
            ).to_arrow_table()
        finally:
            con.close()

    def native_keys(self, key: Sequence[str]) -> str:
        """The key columns as a native read selects them (UUIDs as text, as sent)."""
        return ", ".join(
            f"CAST({q(k)} AS VARCHAR) AS {q(k)}" if k in self._uuid else q(k) for k in key
        )

    def native_ok(self, con: duckdb.DuckDBPyConnection, paths: list[str]) -> bool:
        """Whether DuckDB reads exactly what pyarrow would from `paths` (module doc)."""
        if self.row_filter is not None:
            return False
        return self._primitive and bool(paths) and self._native_schema_ok(con, paths)

    def _native_schema_ok(self, con: duckdb.DuckDBPyConnection, paths: list[str]) -> bool:
        rows = con.execute(
            "SELECT file_name, name, type, converted_type, logical_type, field_id, scale, "
            "precision, num_children FROM parquet_schema(?)",
            [paths],
        ).fetchall()
        columns: dict[str, list[tuple[object, ...]]] = {}
        for file_name, name, *signature in rows:
            columns.setdefault(file_name, []).append((name, *signature))
        if len(columns) != len(set(paths)):
            return False
        layouts = {tuple(cols[1:]) for cols in columns.values()}  # [0] is the root
        if len(layouts) != 1:
            return False
        layout = layouts.pop()
        by_id = {}
        for name, _type, _conv, _logical, field_id, _scale, _prec, children in layout:
            if children or field_id is None:
                return False  # nested, or a column without a field id
            by_id[field_id] = name
        if len(set(by_id.values())) != len(layout):
            return False
        if _DUCKDB_NAMES & {str(name).lower() for name in by_id.values()}:
            return False  # a column named like what read_parquet adds would be shadowed
        for name, field_id in zip(self.names, self.field_ids, strict=True):
            if by_id.get(field_id) != name:
                return False
        # hive_partitioning: DuckDB would otherwise take `name=value` directories of the
        # path for columns (Iceberg's partition directories), over the file's own.
        columns_sql = ", ".join(q(n) for n in self.names)
        described = con.execute(
            f"DESCRIBE SELECT {columns_sql} FROM read_parquet(?, hive_partitioning = false)",
            [paths[:1]],
        ).fetchall()
        return tuple(str(row[1]) for row in described) == self.native_types


def local_path(task: FileScanTask) -> str | None:
    """The local file system path of a data file, when DuckDB can open it as is."""
    location = task.file.file_path
    parsed = urlparse(location)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return None
        path = parsed.path
    elif parsed.scheme == "":
        path = location
    else:
        return None
    if _GLOB & set(path) or not os.path.isfile(path):
        return None
    return path


def _int64_bits(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = np.asarray(array.to_numpy(zero_copy_only=False))
    return values.view(np.int64) if values.dtype.itemsize == 8 else values.astype(np.int64)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy(table: pa.Table) -> pa.Table:
    columns = [
        pa.chunked_array([pa.concat_arrays(c.chunks)] if c.num_chunks else [], c.type)
        for c in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _groups(counts: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Consecutive groups of files of about `rows` rows (at least one file each)."""
    groups = []
    first = 0
    total = 0
    for i, count in enumerate(counts.tolist()):
        if total and total + count > rows:
            groups.append((first, i))
            first, total = i, 0
        total += count
    groups.append((first, len(counts)))
    return groups


def _in_file_order(positions: pa.ChunkedArray, counts: np.ndarray) -> bool:
    """True when `positions` are 0..count-1 of each file in turn (the files in order)."""
    if len(positions) != int(counts.sum()):
        return False
    start = 0
    for count in counts.tolist():
        part = positions.slice(start, count)
        values = np.concatenate([c.to_numpy() for c in part.chunks]) if count else _NONE
        if not np.array_equal(values, np.arange(count)):
            return False
        start += count
    return True
