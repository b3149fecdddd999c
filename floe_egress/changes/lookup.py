"""Reading the current rows of given keys (to retry failed rows with their latest values)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, IsNull, Or
from pyiceberg.table import Table

_CHUNK = 500
# pyiceberg's predicates are pydantic models with their own positional __init__, which
# mypy hides behind pydantic's generated keyword-only signature.
_in: Any = In
_equal: Any = EqualTo
_is_null: Any = IsNull


def _key_filter(key: tuple[str, ...], keys: Sequence[Mapping[str, Any]]) -> BooleanExpression:
    if len(key) == 1:
        column = key[0]
        values = [k[column] for k in keys if k.get(column) is not None]
        return _in(column, values)  # type: ignore[no-any-return]

    def one(k: Mapping[str, Any]) -> BooleanExpression:
        parts: list[BooleanExpression] = [
            _is_null(c) if k.get(c) is None else _equal(c, k[c]) for c in key
        ]
        return reduce(And, parts)

    return reduce(Or, (one(k) for k in keys))


def current_rows(
    table: Table, snapshot_id: int, key: tuple[str, ...], keys: Sequence[Mapping[str, Any]]
) -> pa.Table:
    """The rows of snapshot `snapshot_id` whose key is one of `keys` (pruned by file stats)."""
    parts: list[pa.Table] = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        scan = table.scan(snapshot_id=snapshot_id, row_filter=_key_filter(key, chunk))
        parts.append(scan.to_arrow())
    if not parts:
        return table.scan(snapshot_id=snapshot_id).to_arrow().slice(0, 0)
    return pa.concat_tables(parts, promote_options="permissive")
