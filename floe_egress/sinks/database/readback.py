"""Reading a destination table back, as the table's rows were before they were sent.

`floe-egress verify` compares the destination with the table: it asks for the key and
the sent columns under their table names and types, and gets the destination's rows in
batches with the field mapping undone and each value converted back to the table's
Arrow type (BIGINT to the int32 it was sent from, DOUBLE to float32, a bytea's bytes,
a timestamp with time zone to the instant it holds), so equal values hash equal.

Nested values (structs, lists, maps) are not compared: they are stored as JSON, whose
key order and number forms the database may change. A table that does not exist reads
as empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from floe_egress.errors import PermanentSinkError
from floe_egress.sinks.database.dlt_db import DltDb

READ_BATCH_ROWS = 50_000
_CONVERSION = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError)


def _is_nested(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(data_type)
        or pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
        or pa.types.is_map(data_type)
    )


def unreadable(schema: pa.Schema) -> dict[str, str]:
    """Columns that cannot be compared after a round trip, with why."""
    return {
        f.name: "nested values are stored as JSON, which the database may reorder"
        for f in schema
        if _is_nested(f.type)
    }


def read_rows(
    db: DltDb,
    mapping: Mapping[str, str] | None,
    schema: pa.Schema,
    consume: Callable[[pa.Table], None],
    where: str,
) -> int:
    """Hand the table's rows to `consume` batch by batch, as `schema` (table names and
    types); returns how many rows were read. On the pipeline's worker thread."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    names = [(mapping or {}).get(n, n) for n in schema.names]
    read = 0
    try:
        with db.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(db.target.table)
            columns = ", ".join(client.escape_column_name(n) for n in names)
            with client.execute_query(f"SELECT {columns} FROM {table}") as cursor:
                for rows in cursor.iter_fetch(READ_BATCH_ROWS):
                    consume(_as_arrow(rows, schema, names, where))
                    read += len(rows)
    except DatabaseUndefinedRelation:
        return 0
    return read


def _as_arrow(
    rows: Sequence[Sequence[Any]], schema: pa.Schema, names: Sequence[str], where: str
) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [
        _array(list(values), f.type, f"{where}: column {name!r}")
        for values, f, name in zip(columns, schema, names, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema.remove_metadata())


def _array(values: list[Any], data_type: pa.DataType, where: str) -> pa.Array:
    values = [bytes(v) if isinstance(v, memoryview) else v for v in values]
    try:
        return pa.array(values, data_type)
    except _CONVERSION:
        pass
    try:
        return pa.array(values).cast(data_type)
    except _CONVERSION as exc:
        error = exc
    if pa.types.is_timestamp(data_type) and data_type.tz is not None:
        try:  # SQLite keeps UTC instants as text without a zone
            naive = pa.array(values).cast(pa.timestamp(data_type.unit))
            return naive.cast(data_type)
        except _CONVERSION:
            pass
    raise PermanentSinkError(
        f"{where} cannot be read back as {data_type}: {str(error).splitlines()[0][:200]}"
    ) from None


__all__ = ["READ_BATCH_ROWS", "read_rows", "unreadable"]
