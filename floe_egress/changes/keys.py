"""Row identities: canonical key JSON and row hashes, shared by failed rows and the ledger."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from floe_egress.changes.duck import cursor
from floe_egress.changes.model import OP_COLUMN


def json_default(value: Any) -> Any:
    """JSON for the Arrow values `json` does not know: ISO-8601 times, decimals as
    strings, binary as base64, UUIDs as text, durations in seconds."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def key_json(key: Mapping[str, Any]) -> str:
    """The canonical JSON of a row key: sorted names, compact, stable across runs."""
    return json.dumps(dict(key), sort_keys=True, separators=(",", ":"), default=json_default)


def key_jsons(table: pa.Table | pa.RecordBatch, key: Iterable[str]) -> list[str]:
    names = list(key)
    return [key_json(row) for row in table.select(names).to_pylist()]


def row_hashes(table: pa.Table, columns: Iterable[str]) -> np.ndarray:
    """A 64-bit hash of each row over `columns`, as signed int64 (what SQL stores)."""
    cols = list(columns)
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
    con = cursor()
    try:
        con.register("rows", table.select(cols))
        result = con.execute(f"SELECT hash({quoted}) AS h FROM rows").fetchnumpy()
    finally:
        con.close()
    return np.asarray(result["h"], dtype=np.uint64).view(np.int64)


def keys_table(key_dicts: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows carrying only key values, typed by `schema`; every other column is null.

    Key values may come back from JSON as text (dates, decimals, binary as base64): they
    are converted to the column's type.
    """
    rows = [dict(k) for k in key_dicts]
    columns = []
    for field in schema:
        values = [r.get(field.name) for r in rows]
        if all(v is None for v in values):
            columns.append(pa.nulls(len(rows), field.type))
        elif _is_binary(field.type):
            decoded = [None if v is None else base64.b64decode(v) for v in values]
            columns.append(pa.array(decoded, field.type))
        else:
            columns.append(pa.array(values).cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in order, cast to their types; missing columns
    are null (rows that carry only a key)."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def delete_rows(
    keys: Sequence[Mapping[str, Any]], key: Sequence[str], schema: pa.Schema
) -> pa.Table:
    """Delete rows with `schema` for `keys` (key dicts): the key columns set, every other
    column null."""
    rows = keys_table(keys, pa.schema([schema.field(k) for k in key]))
    rows = rows.append_column(OP_COLUMN, pa.array(["delete"] * len(keys), pa.string()))
    return conform(rows, schema)


def _is_binary(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
    )


def parse_key_json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"not a key object: {text}")
    return value
