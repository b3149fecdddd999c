"""Which keys of a batch the destination table already holds (update, insert, deletes).

dlt has no disposition for "update existing keys only" or for deletes of absent keys
(its upsert MERGE inserts a delete row whose key is absent, as a row of nulls flagged
deleted): the batch's keys are looked up first, in chunks of bound parameters.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

MAX_PARAMETERS = 8_000


def _normalized(values: list[Any], data_type: pa.DataType) -> list[Any]:
    """Database values as the batch's Arrow type gives them back (ints from NUMERIC...)."""
    try:
        return pa.array(values).cast(data_type).to_pylist()  # type: ignore[no-any-return]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        return values


def existing_mask(
    client: Any, qualified_table: str, keys: pa.Table, *, missing_table: type[Exception]
) -> pa.Array:
    """A boolean per row of `keys`: does the table hold a row with that key?"""
    names = keys.column_names
    columns = [client.escape_column_name(n) for n in names]
    wanted = list(zip(*(keys.column(n).to_pylist() for n in names), strict=True))
    per_chunk = max(1, MAX_PARAMETERS // len(names))
    found: set[tuple[Any, ...]] = set()
    try:
        for start in range(0, len(wanted), per_chunk):
            chunk = wanted[start : start + per_chunk]
            found.update(_lookup(client, qualified_table, columns, chunk))
    except missing_table:
        return pa.array([False] * len(wanted), pa.bool_())
    if found:
        by_column = list(zip(*found, strict=True))
        normalized = [
            _normalized(list(v), keys.schema.field(i).type) for i, v in enumerate(by_column)
        ]
        found = set(zip(*normalized, strict=True))
    return pa.array([k in found for k in wanted], pa.bool_())


def _lookup(
    client: Any, table: str, columns: list[str], chunk: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    if len(columns) == 1:
        where = f"{columns[0]} IN ({', '.join(['%s'] * len(chunk))})"
    else:
        one = f"({', '.join(['%s'] * len(columns))})"
        where = f"({', '.join(columns)}) IN ({', '.join([one] * len(chunk))})"
    params = [value for key in chunk for value in key]
    rows = client.execute_sql(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}", *params)
    return [tuple(row) for row in rows or []]


__all__ = ["existing_mask"]
