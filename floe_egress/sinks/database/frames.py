"""Arrow tables as the database receives them: mapped, shaped per mode, hinted for dlt."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.changes.keys import json_default
from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import SyncMode

DELETED_COLUMN = "_floe_deleted"
SNAPSHOT_COLUMN = "_floe_snapshot_id"
SYNCED_AT_COLUMN = "_floe_synced_at"
EVENT_COLUMNS = (OP_COLUMN, SNAPSHOT_COLUMN, SYNCED_AT_COLUMN)


@dataclass(frozen=True, slots=True)
class Frame:
    """One dlt run's data and its column hints."""

    table: pa.Table
    columns: list[dict[str, Any]] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    empty_strings: bool = False
    """A nullable text column holds "": dlt's PostgreSQL COPY would load it as NULL."""


def unique_keys(table: pa.Table, key: tuple[str, ...]) -> bool:
    if table.num_rows < 2:
        return True
    if len(key) == 1:
        distinct = int(pc.count_distinct(table.column(key[0]), mode="all").as_py())
    else:
        distinct = int(table.select(list(key)).group_by(list(key)).aggregate([]).num_rows)
    return distinct == int(table.num_rows)


def op_counts(table: pa.Table) -> dict[str, int]:
    if not table.num_rows:
        return {}
    counts = pc.value_counts(table.column(OP_COLUMN)).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


def only_ops(table: pa.Table, *ops: str) -> pa.Table:
    mask = pc.is_in(table.column(OP_COLUMN), value_set=pa.array(list(ops), pa.string()))
    return table.filter(mask)


def _is_nested(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(data_type)
        or pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
        or pa.types.is_map(data_type)
    )


def _json_text(column: pa.ChunkedArray, data_type: pa.DataType) -> pa.Array:
    values = column.to_pylist()
    if pa.types.is_map(data_type):
        values = [None if v is None else dict(v) for v in values]
    return pa.array(
        [
            None
            if v is None
            else json.dumps(v, default=json_default, separators=(",", ":"), ensure_ascii=False)
            for v in values
        ],
        pa.string(),
    )


def _is_binary(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    )


def _bytea_text(column: pa.ChunkedArray) -> pa.Array:
    return pa.array(
        [None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string()
    )


def _constant(value: Any, rows: int, data_type: pa.DataType) -> pa.Array:
    if value is None:
        return pa.nulls(rows, data_type)
    if pa.types.is_timestamp(data_type):
        micros = int(value.timestamp() * 1_000_000)
        return pa.array(np.full(rows, micros, dtype=np.int64)).cast(data_type)
    return pa.array(np.full(rows, value, dtype=np.int64), data_type)


def build_frame(
    rows: pa.Table,
    *,
    mode: SyncMode,
    key: tuple[str, ...],
    to_snapshot: int | None,
    synced_at: dt.datetime,
    text_only: bool,
) -> Frame:
    """The dlt input for `rows` (mapped changes with their op column) in `mode`.

    `text_only` (CSV load files): nested values become JSON text and binary values
    PostgreSQL's `\\x...` hex text, the two kinds of value CSV cannot carry.

    Only key columns are NOT NULL: delete rows carry the key alone, and dlt stages a
    merge in a table built from the same schema. (Nullability agrees with the column
    hints, or dlt warns on every run.)
    """
    ops = rows.column(OP_COLUMN)
    data = rows.drop_columns([OP_COLUMN])
    hints: list[dict[str, Any]] = []
    arrays: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for f in data.schema:
        column = data.column(f.name)
        if text_only and _is_nested(f.type):
            arrays.append(_json_text(column, f.type))
            fields.append(pa.field(f.name, pa.string()))
            hints.append({"name": f.name, "data_type": "json", "nullable": True})
            continue
        if text_only and _is_binary(f.type):
            arrays.append(_bytea_text(column))
            fields.append(pa.field(f.name, pa.string()))
            hints.append({"name": f.name, "data_type": "binary", "nullable": True})
            continue
        arrays.append(column)
        keyed = f.name in key and mode != "append"
        fields.append(f.with_nullable(not keyed))
    n = rows.num_rows
    if mode == "mirror":
        arrays.append(pc.equal(ops, "delete"))
        fields.append(pa.field(DELETED_COLUMN, pa.bool_()))
        hints.append({"name": DELETED_COLUMN, "data_type": "bool", "hard_delete": True})
    if mode == "append":
        stamp = pa.timestamp("us", tz="UTC")
        arrays += [
            ops.cast(pa.string()),
            _constant(to_snapshot, n, pa.int64()),
            _constant(synced_at, n, stamp),
        ]
        fields += [
            pa.field(OP_COLUMN, pa.string()),
            pa.field(SNAPSHOT_COLUMN, pa.int64()),
            pa.field(SYNCED_AT_COLUMN, stamp),
        ]
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        return _frame(table, hints, (), text_only)
    for name in key:
        hints.append({"name": name, "primary_key": True, "nullable": False})
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return _frame(table, hints, key, text_only)


def _frame(table: pa.Table, hints: list[dict[str, Any]], key: tuple[str, ...], text: bool) -> Frame:
    if not (text and _has_empty_strings(table, key)):
        return Frame(table, hints, key)
    # Loaded as INSERT ... VALUES (see dlt_db.load), where dlt writes a float as Python
    # prints it: NaN and inf would be read as column names. As text they are literals
    # PostgreSQL casts to the double precision column.
    for i, f in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_floating(f.type) and not pc.all(pc.is_finite(column)).as_py():
            table = table.set_column(i, pa.field(f.name, pa.string()), column.cast(pa.string()))
            hints.append({"name": f.name, "data_type": "double", "nullable": f.nullable})
    return Frame(table, hints, key, empty_strings=True)


def _has_empty_strings(table: pa.Table, key: tuple[str, ...]) -> bool:
    for f in table.schema:
        if f.name in key or not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
            continue
        if pc.any(pc.equal(pc.utf8_length(table.column(f.name)), 0)).as_py():
            return True
    return False


def event_identity(key: tuple[str, ...]) -> tuple[str, ...]:
    """Columns that identify an event row of append mode: one per key and snapshot."""
    return (SNAPSHOT_COLUMN, *key)


def with_snapshot(rows: pa.Table, to_snapshot: int | None) -> pa.Table:
    """`rows` with the snapshot column append mode identifies events by."""
    return rows.append_column(
        pa.field(SNAPSHOT_COLUMN, pa.int64()), _constant(to_snapshot, rows.num_rows, pa.int64())
    )


__all__ = [
    "DELETED_COLUMN",
    "EVENT_COLUMNS",
    "SNAPSHOT_COLUMN",
    "SYNCED_AT_COLUMN",
    "Frame",
    "build_frame",
    "event_identity",
    "only_ops",
    "op_counts",
    "unique_keys",
    "with_snapshot",
]
