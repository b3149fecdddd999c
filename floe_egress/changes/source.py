"""Opening the Gold table: catalog, table, ref, schema and key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import PrimitiveType

if TYPE_CHECKING:
    from floe_egress.changes.rowfilter import RowFilter

from floe_egress.changes.duck import q
from floe_egress.errors import InvalidSourceError, SourceError


def open_catalog(name: str, properties: Mapping[str, Any]) -> Catalog:
    """Load a pyiceberg catalog from explicit properties (never from ~/.pyiceberg.yaml)."""
    try:
        return load_catalog(name, **{k: v for k, v in properties.items() if v is not None})
    except Exception as exc:  # pyiceberg raises many unrelated types here
        raise SourceError(f"cannot open catalog {name!r}: {type(exc).__name__}: {exc}") from exc


def load_table(catalog: Catalog, identifier: str) -> Table:
    try:
        return catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise InvalidSourceError(
            f"table {identifier} does not exist in catalog {catalog.name!r}"
        ) from exc


def table_name(table: Table) -> str:
    return ".".join(table.name())


def snapshot_of_ref(table: Table, ref: str) -> Snapshot | None:
    """The snapshot the branch or tag `ref` points at; None for a table with no data yet."""
    if ref not in table.metadata.refs:
        if ref == "main" and table.metadata.current_snapshot_id is None:
            return None
        known = ", ".join(sorted(table.metadata.refs)) or "none"
        raise InvalidSourceError(
            f"table {table_name(table)} has no branch or tag {ref!r} (refs: {known})"
        )
    return table.snapshot_by_name(ref)


def schema_of(table: Table, snapshot: Snapshot | None) -> Schema:
    if snapshot is not None and snapshot.schema_id is not None:
        schema = table.metadata.schema_by_id(snapshot.schema_id)
        if schema is not None:
            return schema
    return table.schema()


def arrow_schema(schema: Schema) -> pa.Schema:
    """B's columns as floe reads and sends them: pyiceberg's Arrow schema, with UUIDs as
    their canonical text (lowercase 8-4-4-4-12 hex). Arrow's `arrow.uuid` extension type
    is something neither DuckDB, dlt nor Arrow's own compute kernels can compare or
    store; the text is what every destination takes and what key JSON already holds."""
    physical = schema_to_pyarrow(schema, include_field_ids=False)
    if not any(has_uuid(f.type) for f in physical):
        return physical
    return pa.schema([f.with_type(uuid_as_text(f.type)) for f in physical], physical.metadata)


def _is_uuid(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.uuid"


def _children(t: pa.DataType) -> list[pa.Field]:
    if pa.types.is_struct(t):
        return [t.field(i) for i in range(t.num_fields)]
    if pa.types.is_map(t):
        return [t.key_field, t.item_field]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [t.value_field]
    return []


def has_uuid(t: pa.DataType) -> bool:
    return _is_uuid(t) or any(has_uuid(f.type) for f in _children(t))


def uuid_as_text(t: pa.DataType) -> pa.DataType:
    """`t` with arrow.uuid replaced by string, at any depth."""
    if _is_uuid(t):
        return pa.string()
    if not has_uuid(t):
        return t
    children = [f.with_type(uuid_as_text(f.type)) for f in _children(t)]
    if pa.types.is_struct(t):
        return pa.struct(children)
    if pa.types.is_map(t):
        return pa.map_(children[0], children[1])
    if pa.types.is_large_list(t):
        return pa.large_list(children[0])
    if pa.types.is_fixed_size_list(t):
        return pa.list_(children[0], t.list_size)
    return pa.list_(children[0])


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where the 32 hex digits go in the 36 characters of 8-4-4-4-12.
_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _uuid_text_array(array: pa.Array) -> pa.Array:
    """arrow.uuid values as canonical text, vectorised (16 bytes -> 36 characters)."""
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    n = len(storage)
    data = storage.buffers()[1]
    raw = np.frombuffer(data, dtype=np.uint8, count=16 * n, offset=16 * storage.offset)
    raw = raw.reshape(n, 16)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    text[:, _DIGITS] = digits
    offsets = pa.py_buffer(np.arange(0, 36 * n + 1, 36, dtype=np.int32).tobytes())
    validity = storage.buffers()[0] if storage.null_count else None
    if validity is not None and storage.offset:
        validity = pa.array(storage.is_valid()).buffers()[1]
    return pa.StringArray.from_buffers(
        n, offsets, pa.py_buffer(text.tobytes()), validity, storage.null_count
    )


def _column_as_text(column: pa.Array | pa.ChunkedArray, target: pa.DataType) -> Any:
    if isinstance(column, pa.ChunkedArray):
        chunks = [_column_as_text(c, target) for c in column.chunks]
        return pa.chunked_array(chunks, target)
    if _is_uuid(column.type):
        return _uuid_text_array(column)
    # Nested: rare enough to go through Python, where a UUID becomes its text.
    return pa.array(_texts(column.to_pylist()), target)


def _texts(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_texts(v) for v in value]
    if isinstance(value, dict):
        return {k: _texts(v) for k, v in value.items()}
    if isinstance(value, tuple):  # map entries
        return tuple(_texts(v) for v in value)
    return value


Data = TypeVar("Data", pa.Table, pa.RecordBatch)


def uuids_as_text(data: Data) -> Data:
    """`data` with every arrow.uuid value (top-level or nested) as its canonical text."""
    if not any(has_uuid(t) for t in data.schema.types):
        return data
    columns = [
        _column_as_text(column, uuid_as_text(field.type)) if has_uuid(field.type) else column
        for field, column in zip(data.schema, data.columns, strict=True)
    ]
    fields = [f.with_type(uuid_as_text(f.type)) for f in data.schema]
    schema = pa.schema(fields, data.schema.metadata)
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, schema=schema)
    return pa.Table.from_arrays(columns, schema=schema)


def resolve_key(table: Table, schema: Schema, configured: Sequence[str] | None) -> tuple[str, ...]:
    """The key columns: the configured ones, else the table's identifier fields."""
    name = table_name(table)
    if configured:
        key = tuple(configured)
    else:
        key = tuple(schema.identifier_field_names())
        if not key:
            raise InvalidSourceError(
                f"table {name} has no identifier fields; set primary_key for this "
                "destination (e.g. primary_key: [id])"
            )
    columns = [f.name for f in schema.fields]
    for column in key:
        field = schema.find_field(column) if column in columns else None
        if field is None:
            raise InvalidSourceError(
                f"primary key column {column!r} is not a top-level column of table {name} "
                f"(columns: {', '.join(columns)})"
            )
        if not isinstance(field.field_type, PrimitiveType):
            raise InvalidSourceError(
                f"primary key column {column!r} of table {name} has type "
                f"{field.field_type}; a key column must be a primitive type"
            )
    return key


def streamed(scan: Any) -> pa.RecordBatchReader:
    """`scan.to_arrow_batch_reader()`, one data file at a time, UUIDs as text.

    pyiceberg 0.12 reads every file of a scan at once (`executor.map`) and keeps what it
    read until the reader gets to it: a full read of 5M rows held all of them (1.5 GB).
    Here a file is read when the one before it has been consumed."""
    from pyiceberg.io.pyarrow import ArrowScan

    if scan.limit is not None:
        return text_batches(scan.to_arrow_batch_reader())
    projected = scan.projection()
    target = schema_to_pyarrow(projected)
    reader = ArrowScan(
        scan.table_metadata, scan.io, projected, scan.row_filter, scan.case_sensitive
    )

    def batches() -> Iterator[pa.RecordBatch]:
        for task in scan.plan_files():
            yield from reader.to_record_batches([task])

    return text_batches(pa.RecordBatchReader.from_batches(target, batches()).cast(target))


def text_batches(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """`reader` with UUIDs as text (see `uuids_as_text`)."""
    if not any(has_uuid(t) for t in reader.schema.types):
        return reader
    schema = pa.schema(
        [f.with_type(uuid_as_text(f.type)) for f in reader.schema], reader.schema.metadata
    )
    return pa.RecordBatchReader.from_batches(schema, (uuids_as_text(b) for b in reader))


def key_counts(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    snapshot_id: int,
    key: Sequence[str],
    columns: Sequence[str],
    row_filter: RowFilter | None = None,
) -> None:
    """Temp table `counts` on `con`: per key of the snapshot, how many rows hold it
    (`n`), the hash of one of them over `columns` (`h`) and whether it is null
    (`is_null`); of the rows `row_filter` matches."""
    keys = ", ".join(q(k) for k in key)
    null = " OR ".join(f"{q(k)} IS NULL" for k in key)
    read = tuple(dict.fromkeys([*key, *columns]))
    if row_filter is not None:
        con.register("rows", row_filter.matching(table, snapshot_id, read))
    else:
        con.register("rows", streamed(table.scan(snapshot_id=snapshot_id, selected_fields=read)))
    con.execute(
        f"CREATE TEMP TABLE counts AS SELECT {keys}, count(*) AS n, min(h) AS h, "
        f"({null}) AS is_null FROM (SELECT {keys}, "
        f"hash({', '.join(q(c) for c in columns)}) AS h FROM rows) GROUP BY ALL"
    )
    con.unregister("rows")
