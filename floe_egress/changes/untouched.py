"""How many rows of the unchanged data files of B hold given keys.

Iceberg does not enforce unique keys: an append-only commit can add a row whose key a
file written long before already holds. The diff reads only the files that changed, so
for the keys it finds changed it asks here whether the rest of B holds them too (see
diff.py for what follows from it).

Only files that may hold one of the keys are read, and only their key columns: a file
whose key bounds (integer and string key columns) cannot contain them is skipped. The
bounds of each manifest's files are read once per process and kept (manifests never
change), so the daemon opens a manifest once, not on every cycle; a process's first
look at a table with many manifests pays about 4 ms per manifest. Tables with delete
manifests are planned by pyiceberg instead (it matches positional deletes to files).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import DataFileContent, ManifestContent, ManifestFile
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from floe_egress.changes.diff import ROWS
from floe_egress.changes.duck import cursor, q
from floe_egress.changes.lookup import prune_filter
from floe_egress.changes.reading import RowReader
from floe_egress.changes.rowfilter import RowFilter

READ_THREADS = 2
CACHED_FILES = 200_000
"""Data files whose key bounds are kept, over every manifest (about 150 bytes each)."""
_PRUNABLE = (IntegerType, LongType, StringType)

Bounds = tuple[tuple[Any, Any] | None, ...]
"""Per key column, a file's (lower, upper) bound, or None when it cannot prune."""


@dataclass(frozen=True, slots=True)
class _FileBounds:
    path: str
    rows: int
    bounds: Bounds


class _BoundsCache:
    """manifest path and key field ids -> the key bounds of its live data files."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._items: OrderedDict[tuple[str, tuple[int, ...]], tuple[_FileBounds, ...]]
        self._items = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, table: Table, manifest: ManifestFile, fields: Sequence[NestedField]
    ) -> tuple[_FileBounds, ...]:
        ident = (manifest.manifest_path, tuple(f.field_id for f in fields))
        with self._lock:
            found = self._items.get(ident)
            if found is not None:
                self._items.move_to_end(ident)
                return found
        files = tuple(
            _FileBounds(
                e.data_file.file_path, e.data_file.record_count, _bounds(e.data_file, fields)
            )
            for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
            if e.data_file.content == DataFileContent.DATA
        )
        with self._lock:
            if ident not in self._items:
                self._items[ident] = files
                self._size += len(files)
            while self._size > self._limit and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)
        return files


_CACHE = _BoundsCache(CACHED_FILES)


def _bounds(data_file: Any, fields: Sequence[NestedField]) -> Bounds:
    out: list[tuple[Any, Any] | None] = []
    for field in fields:
        lower = (data_file.lower_bounds or {}).get(field.field_id)
        upper = (data_file.upper_bounds or {}).get(field.field_id)
        if not isinstance(field.field_type, _PRUNABLE) or lower is None or upper is None:
            out.append(None)
            continue
        out.append((from_bytes(field.field_type, lower), from_bytes(field.field_type, upper)))
    return tuple(out)


class UntouchedKeys:
    """Counts keys in the data files of snapshot `b` (listed by its `manifests`) that are
    not in `changed` (the files the diff reads); called with distinct keys, as
    diff.Untouched."""

    def __init__(
        self,
        table: Table,
        b: Snapshot,
        manifests: Sequence[ManifestFile],
        changed: Iterable[FileScanTask],
        key: tuple[str, ...],
        schema: Schema,
        row_filter: RowFilter | None = None,
    ) -> None:
        self.table = table
        self.row_filter = row_filter
        self.b = b
        self.manifests = manifests
        """B's manifests."""
        self.key = key
        self.schema = schema
        self._changed = {
            (t.file.file_path, frozenset(d.file_path for d in t.delete_files)) for t in changed
        }
        self._fields = [schema.find_field(k) for k in key]

    def __call__(self, keys: pa.Table) -> pa.Table:
        empty = keys.schema.empty_table().append_column(ROWS, pa.array([], pa.int64()))
        tasks = self._candidates(keys)
        if not tasks:
            return empty
        reader = RowReader(self.table, self.schema.select(*self.key), row_filter=self.row_filter)
        names = ", ".join(q(k) for k in self.key)
        on = " AND ".join(f"r.{q(k)} = w.{q(k)}" for k in self.key)
        con = cursor()
        try:
            con.register("w", keys)
            con.execute(f"CREATE TEMP TABLE found AS SELECT {names} FROM w WHERE false")
            with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="floe-read") as pool:
                for rows in pool.map(reader.read, tasks):
                    con.register("r", rows.cast(keys.schema))
                    con.execute(f"INSERT INTO found SELECT r.* FROM r SEMI JOIN w ON {on}")
                    con.unregister("r")
            counts = con.execute(
                f"SELECT {names}, count(*) AS {ROWS} FROM found GROUP BY ALL ORDER BY {names}"
            ).to_arrow_table()
        finally:
            con.close()
        return counts.cast(empty.schema)

    def _candidates(self, keys: pa.Table) -> list[FileScanTask]:
        manifests = self.manifests
        if any(m.content == ManifestContent.DELETES for m in manifests):
            scan = self.table.scan(
                snapshot_id=self.b.snapshot_id,
                row_filter=prune_filter(self.key, keys, self.schema),
            )
            return [t for t in scan.plan_files() if _identity(t) not in self._changed]
        values = [
            _Values.of(keys.column(k)) if isinstance(f.field_type, _PRUNABLE) else None
            for k, f in zip(self.key, self._fields, strict=True)
        ]
        changed = {path for path, _ in self._changed}
        wanted: dict[str, list[str]] = {}

        def bounds(manifest: ManifestFile) -> tuple[_FileBounds, ...]:
            return _CACHE.get(self.table, manifest, self._fields)

        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="floe-read") as pool:
            listed = list(pool.map(bounds, manifests))
        for manifest, files in zip(manifests, listed, strict=True):
            for f in files:
                if f.rows and f.path not in changed and _overlaps(f.bounds, values):
                    wanted.setdefault(manifest.manifest_path, []).append(f.path)
        tasks = []
        for manifest in manifests:
            paths = set(wanted.get(manifest.manifest_path, ()))
            if paths:
                tasks += [
                    FileScanTask(e.data_file)
                    for e in manifest.fetch_manifest_entry(self.table.io, discard_deleted=True)
                    if e.data_file.file_path in paths
                ]
        return tasks


def _identity(task: FileScanTask) -> tuple[str, frozenset[str]]:
    return task.file.file_path, frozenset(d.file_path for d in task.delete_files)


@dataclass(frozen=True, slots=True)
class _Values:
    """The distinct values of one key column, sorted: does one fall within a file's
    bounds? Asked per value, not of the keys' overall range: the keys a commit changed
    in three places of the table span nearly all of it, though no file between them
    holds one."""

    sorted_values: Any
    """A numpy array (integers) or a list (strings), ascending."""

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> _Values | None:
        present = pc.unique(column.drop_null())
        if not len(present):
            return None
        if pa.types.is_integer(present.type):
            return cls(np.sort(present.to_numpy(zero_copy_only=False)))
        return cls(sorted(present.to_pylist()))

    def any_within(self, lower: Any, upper: Any) -> bool:
        if isinstance(self.sorted_values, np.ndarray):
            first = int(np.searchsorted(self.sorted_values, lower, side="left"))
        else:
            first = bisect.bisect_left(self.sorted_values, lower)
        return first < len(self.sorted_values) and self.sorted_values[first] <= upper


def _overlaps(bounds: Bounds, values: Sequence[_Values | None]) -> bool:
    """Could the file hold one of the keys? Not if some key column has no value within
    the file's bounds of that column."""
    for file_range, wanted in zip(bounds, values, strict=True):
        if file_range is None or wanted is None:
            continue
        if not wanted.any_within(*file_range):
            return False
    return True


__all__ = ["UntouchedKeys"]
