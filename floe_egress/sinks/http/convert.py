"""Arrow values to what a JSON wire format can carry.

- timestamps: ISO-8601 in UTC with a `Z` suffix, microseconds only when non-zero
  (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.250000Z`); timestamps without a time
  zone are taken as UTC; nanoseconds are truncated to microseconds
- dates `YYYY-MM-DD`, times `HH:MM:SS[.ffffff]`, durations in seconds (a number)
- decimals: strings by default (exact); `decimals="number"` gives JSON numbers
  (integers when the scale is 0, else float64, which rounds past ~15 digits)
- binary: base64 (standard alphabet, padded); UUIDs: their canonical string
- structs: JSON objects; lists: arrays; maps: objects with string keys
- null stays null; NaN and infinities become null (JSON has no literal for them)

A value none of this can carry (a date or timestamp outside years 1-9999, anything whose
conversion fails) refuses its row alone (`convert`): the sink reports it as a failed row
with the column and the reason, and sends the others.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from floe_egress.sinks.values import Rule, beyond_python, screen, without_rows

DecimalMode = Literal["string", "number"]
Convert = Callable[[Any], Any]
JsonRecord = dict[str, Any]


def _identity(value: Any) -> Any:
    return value


def _timestamp(value: Any) -> Any:
    if not isinstance(value, dt.datetime):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def _isoformat(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.time) else value


def _duration(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, dt.timedelta) else value


def _binary(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return base64.b64encode(value).decode("ascii")


def _float(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _decimal_string(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _decimal_number(value: Any) -> Any:
    if not isinstance(value, Decimal):
        return value
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _nullable(convert: Convert) -> Convert:
    if convert is _identity:
        return convert
    return lambda value: None if value is None else convert(value)


def converter(arrow_type: pa.DataType, decimals: DecimalMode = "string") -> Convert:
    """The function that turns a `to_pylist()` value of `arrow_type` into a JSON value."""
    return _nullable(_converter(arrow_type, decimals))


def _converter(t: pa.DataType, decimals: DecimalMode) -> Convert:
    if isinstance(t, pa.BaseExtensionType):
        if str(t.extension_name) == "arrow.uuid":
            return str
        return _converter(t.storage_type, decimals)
    if pa.types.is_timestamp(t):
        return _timestamp
    if pa.types.is_date(t) or pa.types.is_time(t):
        return _isoformat
    if pa.types.is_duration(t):
        return _duration
    if pa.types.is_decimal(t):
        return _decimal_string if decimals == "string" else _decimal_number
    if pa.types.is_floating(t):
        return _float
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return _binary
    if pa.types.is_dictionary(t):
        return _converter(t.value_type, decimals)
    if pa.types.is_map(t):
        return _map(t, decimals)
    if pa.types.is_struct(t):
        return _struct(t, decimals)
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
    ):
        return _list(t, decimals)
    return _identity


def _struct(t: pa.StructType, decimals: DecimalMode) -> Convert:
    fields = [(t.field(i).name, converter(t.field(i).type, decimals)) for i in range(t.num_fields)]
    if all(conv is _identity for _, conv in fields):
        return _identity

    def convert(value: dict[str, Any]) -> dict[str, Any]:
        return {name: conv(value.get(name)) for name, conv in fields}

    return convert


def _list(t: Any, decimals: DecimalMode) -> Convert:
    item = converter(t.value_type, decimals)
    if item is _identity:
        return _identity
    return lambda value: [item(v) for v in value]


def _map(t: pa.MapType, decimals: DecimalMode) -> Convert:
    key = converter(t.key_type, decimals)
    item = converter(t.item_type, decimals)

    def convert(value: list[tuple[Any, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in value:
            ck = key(k)
            out[ck if isinstance(ck, str) else json.dumps(ck)] = item(v)
        return out

    return convert


def _vectorized(column: Any, decimals: DecimalMode) -> Any | None:
    """The column already in its JSON form, computed by Arrow (no Python object per
    value), for the common top-level types; None when the per-value path is needed."""
    t = column.type
    if pa.types.is_timestamp(t):
        utc = column.cast(pa.timestamp("us", tz="UTC"), safe=False)
        text = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S")
        text = pc.replace_substring_regex(text, pattern=r"\.0{6}$", replacement="")
        return pc.binary_join_element_wise(text, "Z", "")
    if pa.types.is_decimal(t) and decimals == "string":
        return column.cast(pa.string())
    if pa.types.is_floating(t) and pc.all(pc.is_finite(column)).as_py() is not False:
        return column
    return None


@dataclass(frozen=True, slots=True)
class Converted:
    """The rows of a table as JSON-ready dicts, but for the rows holding a value JSON
    cannot carry."""

    records: list[JsonRecord | None]
    """One per row, in order; None for a refused row."""
    refused: dict[int, str]
    """Row index -> why it cannot be sent (the column and the value's problem)."""


JSON_RULES = (
    Rule(
        beyond_python,
        "a date or timestamp outside years 1-9999, which ISO-8601 text (and so the JSON "
        "wire format) cannot carry",
    ),
)
"""Values no JSON wire format carries: their rows fail alone, before anything is sent."""


def convert(
    table: pa.Table | pa.RecordBatch,
    decimals: DecimalMode = "string",
    names: Mapping[str, str] | None = None,
) -> Converted:
    """The rows of `table` as JSON-ready dicts, in order; a row with a value that cannot
    be converted is refused alone (`names`: column -> name for the reason).

    Values JSON_RULES names are found with Arrow compute first; any other conversion
    error of a column is pinned to its rows by converting that column value by value."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    refused = screen(table, JSON_RULES, names)
    valid = without_rows(table, list(refused))
    rows = [row for row in range(table.num_rows) if row not in refused]  # valid -> table
    columns: dict[str, list[Any]] = {}
    for f in valid.schema:
        values, errors = _column(valid.column(f.name), converter(f.type, decimals), decimals)
        label = (names or {}).get(f.name, f.name)
        for index, error in errors.items():
            refused.setdefault(rows[index], f"column {label}: cannot be converted ({error})")
        columns[f.name] = values
    fields = list(columns)
    if not refused and fields:
        every: list[JsonRecord | None] = [
            dict(zip(fields, v, strict=True)) for v in zip(*columns.values(), strict=True)
        ]
        return Converted(every, refused)
    records: list[JsonRecord | None] = [None] * table.num_rows
    for index, row in enumerate(rows):
        if row not in refused:
            records[row] = {name: values[index] for name, values in columns.items()}
    return Converted(records, refused)


def _column(
    column: pa.ChunkedArray, conv: Convert, decimals: DecimalMode
) -> tuple[list[Any], dict[int, str]]:
    """The JSON values of a column, and index -> error for those that cannot be converted."""
    ready = None if conv is _identity else _vectorized(column, decimals)
    if ready is not None:
        return list(ready.to_pylist()), {}
    try:
        values = _pylist(column)
        return (values if conv is _identity else [conv(v) for v in values]), {}
    except (ArithmeticError, ValueError, TypeError):
        pass  # one value or more cannot be converted: find which, one by one
    out: list[Any] = []
    errors: dict[int, str] = {}
    for index in range(len(column)):
        try:
            out.append(conv(_pylist(column.slice(index, 1))[0]))
        except (ArithmeticError, ValueError, TypeError) as exc:
            out.append(None)
            errors[index] = f"{type(exc).__name__}: {exc}"
    return out, errors


def to_records(
    table: pa.Table | pa.RecordBatch, decimals: DecimalMode = "string"
) -> list[JsonRecord]:
    """The rows of `table` as JSON-ready dicts, in order; ValueError naming the first
    row that cannot be converted (see `convert`, which refuses such rows alone)."""
    converted = convert(table, decimals)
    if converted.refused:
        row = min(converted.refused)
        raise ValueError(f"row {row}: {converted.refused[row]}")
    return [r for r in converted.records if r is not None]


def _pylist(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    # to_pylist() turns ns timestamps into pandas objects (or fails without pandas).
    t = column.type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        column = column.cast(pa.timestamp("us", tz=t.tz), safe=False)
    elif pa.types.is_time64(t) and t.unit == "ns":
        column = column.cast(pa.time64("us"), safe=False)
    elif pa.types.is_duration(t) and t.unit == "ns":
        column = column.cast(pa.duration("us"), safe=False)
    values: list[Any] = column.to_pylist()
    return values


def dumps(payload: Any) -> bytes:
    """Compact, deterministic JSON bytes (keys keep their insertion order)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def as_text(value: Any) -> str:
    """A JSON value as the plain string form CRM APIs expect for ids and properties."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
