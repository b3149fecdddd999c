"""Reading the current rows of given keys (to retry failed rows with their latest values)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo, In, IsNull, Or
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import BinaryType, FixedType, IcebergType, UUIDType

from floe_egress.changes.duck import cursor
from floe_egress.changes.keys import keys_table
from floe_egress.changes.source import schema_of, uuids_as_text

_CHUNK = 500
# pyiceberg's predicates are pydantic models with their own positional __init__, which
# mypy hides behind pydantic's generated keyword-only signature.
_in: Any = In
_equal: Any = EqualTo
_is_null: Any = IsNull


def _literal(value: Any, field_type: IcebergType) -> Any:
    """A key value from key JSON as the Python value pyiceberg binds to `field_type`:
    UUIDs and binary travel as text (canonical UUID, base64)."""
    if value is None:
        return None
    if isinstance(field_type, UUIDType):
        return uuid.UUID(str(value))
    if isinstance(field_type, BinaryType | FixedType):
        return base64.b64decode(value)
    return value


def _key_filter(
    key: tuple[str, ...], keys: Sequence[Mapping[str, Any]], schema: Schema
) -> BooleanExpression:
    types = {c: schema.find_field(c).field_type for c in key}
    if len(key) == 1:
        column = key[0]
        values = [_literal(k[column], types[column]) for k in keys if k.get(column) is not None]
        return _in(column, values)  # type: ignore[no-any-return]

    def one(k: Mapping[str, Any]) -> BooleanExpression:
        parts: list[BooleanExpression] = [
            _is_null(c) if k.get(c) is None else _equal(c, _literal(k[c], types[c])) for c in key
        ]
        return reduce(And, parts)

    return reduce(Or, (one(k) for k in keys))


def current_rows(
    table: Table, snapshot_id: int, key: tuple[str, ...], keys: Sequence[Mapping[str, Any]]
) -> pa.Table:
    """The rows of snapshot `snapshot_id` whose key is one of `keys` (pruned by file stats),
    with UUIDs as text."""
    schema = schema_of(table, table.snapshot_by_id(snapshot_id))
    uuid_key = any(isinstance(schema.find_field(c).field_type, UUIDType) for c in key)
    parts: list[pa.Table] = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        scan = table.scan(snapshot_id=snapshot_id, row_filter=_key_filter(key, chunk, schema))
        if uuid_key:
            parts.append(_uuid_key_rows(table, scan, schema, key, chunk))
        else:
            parts.append(uuids_as_text(scan.to_arrow()))
    if not parts:
        return uuids_as_text(table.scan(snapshot_id=snapshot_id).to_arrow().slice(0, 0))
    return pa.concat_tables(parts, promote_options="permissive")


def _uuid_key_rows(
    table: Table, scan: Any, schema: Schema, key: tuple[str, ...], keys: Sequence[Mapping[str, Any]]
) -> pa.Table:
    """Arrow cannot compare arrow.uuid values, so pyiceberg cannot filter rows on a UUID:
    the filter prunes files by their statistics, and the rows of those files are matched
    by DuckDB on the keys as text."""
    tasks = list(scan.plan_files())
    rows = uuids_as_text(ArrowScan(table.metadata, table.io, schema, AlwaysTrue()).to_table(tasks))
    wanted = keys_table(keys, pa.schema([rows.schema.field(c).with_nullable(True) for c in key]))
    on = " AND ".join(f'r."{c}" IS NOT DISTINCT FROM w."{c}"' for c in key)
    con = cursor()
    try:
        con.register(
            "r", rows.append_column("__floe_i", pa.array(range(rows.num_rows), pa.int64()))
        )
        con.register("w", wanted)
        found = con.execute(
            f"SELECT r.__floe_i FROM r SEMI JOIN w ON {on} ORDER BY 1"
        ).fetchnumpy()["__floe_i"]
    finally:
        con.close()
    return rows.take(pa.array(found, pa.int64()))
