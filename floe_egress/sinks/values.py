"""Values a destination cannot take, found per row with Arrow compute.

One value can make a destination refuse a whole batch (PostgreSQL refuses a COPY for a
NUL byte anywhere in it), or make the conversion of a whole column fail (a timestamp
past year 9999 has no Python `datetime`). Sinks look for such values before they send,
so that only the rows holding one fail (as failed rows, with the column and the reason)
and the rest is delivered.

Every value of a column is visited without a Python object per value: nested columns
are flattened to their leaves (struct fields, list items, map keys and values), each
leaf value knowing the row it belongs to. A `Rule` tests leaf values; `screen` gives the
reason for each row that holds a value some rule refuses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Test = Callable[[pa.Array], pa.Array | None]
"""Leaf values -> which of them are refused (a boolean array; None: none can be)."""

_EPOCH = dt.datetime(1970, 1, 1)
_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000}
# The first and last instants a Python datetime holds, in seconds from the epoch.
_FIRST = int((dt.datetime.min - _EPOCH).total_seconds())
_LAST = int((dt.datetime.max.replace(microsecond=0) - _EPOCH).total_seconds())
_FIRST_DAY = (dt.date.min - _EPOCH.date()).days
_LAST_DAY = (dt.date.max - _EPOCH.date()).days


@dataclass(frozen=True, slots=True)
class Leaf:
    """The primitive values at one path of a column, one row index per value."""

    path: str
    """The column name, then `.field` for a struct field, `[]` for list items, `{key}`
    and `{value}` for map keys and values: `address.city`, `tags[]`, `props{value}`."""
    values: pa.Array
    rows: np.ndarray | None
    """The row each value belongs to; None: value i belongs to row i."""
    nested: bool
    """Inside a struct, list or map (not a top-level column)."""


def leaves(column: pa.ChunkedArray | pa.Array, name: str) -> Iterator[Leaf]:
    """The leaves of a column, chunk by chunk (rows numbered across chunks)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    start = 0
    for chunk in chunks:
        for leaf in _walk(chunk, name, None):
            if start:
                rows = (
                    np.arange(start, start + len(leaf.values), dtype=np.int64)
                    if leaf.rows is None
                    else leaf.rows + start
                )
                leaf = Leaf(leaf.path, leaf.values, rows, leaf.nested)
            yield leaf
        start += len(chunk)


def _walk(
    array: pa.Array, path: str, rows: np.ndarray | None, nested: bool = False
) -> Iterator[Leaf]:
    t = array.type
    if isinstance(t, pa.BaseExtensionType):
        yield from _walk(array.storage, path, rows, nested)
    elif pa.types.is_struct(t):
        # flatten() gives each field with the struct's own nulls applied
        for i, child in enumerate(array.flatten()):
            yield from _walk(child, f"{path}.{t.field(i).name}", rows, True)
    elif pa.types.is_map(t):
        entries = pa.struct([t.key_field.with_name("key"), t.item_field.with_name("value")])
        as_list = array.cast(pa.list_(entries))
        items, parents = _items(as_list, rows)
        keys, values = items.flatten()
        yield from _walk(keys, f"{path}{{key}}", parents, True)
        yield from _walk(values, f"{path}{{value}}", parents, True)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        items, parents = _items(array, rows)
        yield from _walk(items, f"{path}[]", parents, True)
    elif pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        yield from _walk(array.cast(pa.list_(t.value_field)), path, rows, nested)
    else:
        yield Leaf(path, array, rows, nested)


def _items(array: pa.Array, rows: np.ndarray | None) -> tuple[pa.Array, np.ndarray]:
    parents = np.asarray(pc.list_parent_indices(array), dtype=np.int64)
    return pc.list_flatten(array), parents if rows is None else rows[parents]


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def nul_bytes(values: pa.Array) -> pa.Array | None:
    """Text holding a NUL character (U+0000)."""
    if not _is_text(values.type) or not len(values):
        return None
    offsets_buffer, data = values.buffers()[1:3]
    if data is None:
        return None
    # Most text holds no zero byte at all: one pass over the bytes says so.
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)
    first, last = offsets[values.offset], offsets[values.offset + len(values)]
    if np.frombuffer(data, dtype=np.uint8)[first:last].all():
        return None
    return pc.match_substring(values, "\x00")


def not_finite(values: pa.Array) -> pa.Array | None:
    """NaN and the infinities."""
    if not pa.types.is_floating(values.type) or not len(values):
        return None
    return pc.invert(pc.is_finite(values))


def beyond_python(values: pa.Array) -> pa.Array | None:
    """Dates and timestamps before year 1 or after year 9999: Python has no value for
    them, nor ISO-8601 a plain form."""
    t = values.type
    if pa.types.is_timestamp(t) and t.unit != "ns":  # int64 nanoseconds span 1677-2262
        per_second = _UNITS[t.unit]
        first, last = _FIRST * per_second, (_LAST + 1) * per_second - 1
    elif pa.types.is_date64(t):
        first, last = _FIRST_DAY * 86_400_000, (_LAST_DAY + 1) * 86_400_000 - 1
    elif pa.types.is_date32(t):
        first, last = _FIRST_DAY, _LAST_DAY
    else:
        return None
    raw = values.view(pa.int32() if pa.types.is_date32(t) else pa.int64())
    return pc.or_(pc.less(raw, first), pc.greater(raw, last))


@dataclass(frozen=True, slots=True)
class Rule:
    """Leaf values a destination refuses, and what to tell the user about them."""

    test: Test
    message: str
    """What is wrong, after `column <path>: ` (e.g. `text holds a NUL byte (0x00),
    which PostgreSQL cannot store`)."""
    nested_only: bool = False
    """Only values inside a struct, list or map (where a JSON document carries them)."""


def screen(
    table: pa.Table, rules: Sequence[Rule], names: Mapping[str, str] | None = None
) -> dict[int, str]:
    """Row index -> why the destination cannot take that row, for every row of `table`
    holding a value a rule refuses (the first refused value of the row is named).

    `names` renames columns in the reasons (a mapped column named as in the table)."""
    refused: dict[int, str] = {}
    if not rules or not table.num_rows:
        return refused
    for name in table.column_names:
        label = (names or {}).get(name, name)
        for leaf in leaves(table.column(name), label):
            for rule in rules:
                if rule.nested_only and not leaf.nested:
                    continue
                mask = rule.test(leaf.values)
                if mask is None:
                    continue
                hits = np.flatnonzero(
                    np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
                )
                if not len(hits):
                    continue
                rows = hits if leaf.rows is None else leaf.rows[hits]
                for row in np.unique(rows).tolist():
                    refused.setdefault(row, f"column {leaf.path}: {rule.message}")
    return refused


def without_rows(table: pa.Table, rows: Sequence[int]) -> pa.Table:
    """`table` without the rows at `rows`."""
    if not rows:
        return table
    keep = np.ones(table.num_rows, dtype=bool)
    keep[list(rows)] = False
    return table.filter(pa.array(keep))


__all__ = [
    "Leaf",
    "Rule",
    "beyond_python",
    "leaves",
    "not_finite",
    "nul_bytes",
    "screen",
    "without_rows",
]
