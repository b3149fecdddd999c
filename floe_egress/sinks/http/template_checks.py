"""`validate`'s check of a rest_api destination's templates against its table.

`template_problems` makes sample rows from the table's schema (two with every column
set, one with the optional columns null), maps and converts them as the sink does, and
renders each template for every op it applies to in the destination's mode (and each
body template over a request of the two full samples). A render that fails, stops on
its budget or writes text that is not JSON is a problem at the template's key, with
the template's line.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
from pydantic import ValidationError
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampType,
    TimeType,
    UUIDType,
)

from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import SYNC_MODES
from floe_egress.sinks.http.convert import JsonRecord, convert
from floe_egress.sinks.http.rest_api import route_name
from floe_egress.sinks.http.rest_config import RestApiConfig, RouteName
from floe_egress.sinks.http.shaping import Shape, render_body, shapes
from floe_egress.sinks.http.templates import (
    MAX_RECORD_CHARS,
    Compiled,
    TemplateError,
    render_json,
)
from floe_egress.sinks.http.urls import KeyPath
from floe_egress.sinks.mapping import apply_field_mapping, ops_for_mode

_SAMPLE_SNAPSHOT = 1234567890


def template_problems(dest_item: Mapping[str, Any], schema: Schema) -> list[tuple[KeyPath, str]]:
    """Problems of the templates of a raw rest_api destination mapping rendered against
    `schema` (paths relative to the destination item; [] when it has no templates or
    its sink_config has problems of its own, which `validate` reports elsewhere)."""
    raw = dest_item.get("sink_config")
    if not isinstance(raw, Mapping):
        return []
    try:
        config = RestApiConfig.model_validate(dict(raw))
        routes = shapes(config)
    except (ValidationError, TemplateError):
        return []
    if all(s.record is None and s.body is None for s in routes.values()):
        return []
    mode = dest_item.get("mode", "upsert")
    if mode not in SYNC_MODES:
        return []
    mapping = dest_item.get("field_mapping")
    mapping = dict(mapping) if isinstance(mapping, Mapping) else None
    keys = dest_item.get("primary_key") or sorted(schema.identifier_field_names())
    keys = [str(k) for k in keys]
    try:
        samples, nulls = _samples(schema, mapping, keys, config)
    except (KeyError, ValueError, pa.ArrowException):
        return []
    key_fields = [(mapping or {}).get(k, k) for k in keys]
    checker = _Checker(str(dest_item.get("name", "destination")), mode, key_fields)
    for op in sorted(ops_for_mode(mode)):
        name = route_name(mode, config, op)
        checker.check(name, routes[name], op, samples, nulls)
    return checker.problems


def _samples(
    schema: Schema, mapping: dict[str, str] | None, keys: list[str], config: RestApiConfig
) -> tuple[list[JsonRecord], JsonRecord | None]:
    arrow = schema_to_pyarrow(schema, include_field_ids=False)
    full = [{f.name: _sample(f.field_type, n) for f in schema.fields} for n in (1, 2)]
    nulls = {f.name: _sample(f.field_type, 3) if f.required else None for f in schema.fields}
    table = pa.Table.from_pylist([*full, nulls], schema=arrow)
    table = table.append_column(OP_COLUMN, pa.array(["insert"] * 3, pa.string()))
    mapped = apply_field_mapping(table, mapping, keep=(OP_COLUMN, *keys))
    converted = convert(mapped.drop_columns([OP_COLUMN]), config.decimals)
    records = converted.records
    if records[0] is None or records[1] is None:
        return [], None
    return [records[0], records[1]], records[2]


def _sample(kind: IcebergType, n: int) -> Any:
    """A value of `kind`, the n-th of its samples."""
    if isinstance(kind, BooleanType):
        return n % 2 == 1
    if isinstance(kind, IntegerType | LongType):
        return n
    if isinstance(kind, FloatType | DoubleType):
        return n + 0.5
    if isinstance(kind, DecimalType):
        return Decimal(n).scaleb(-kind.scale) if kind.precision > kind.scale else Decimal(0)
    if isinstance(kind, StringType):
        return f"sample {n}"
    if isinstance(kind, DateType):
        return dt.date(2024, 5, n)
    if isinstance(kind, TimeType):
        return dt.time(12, 0, n)
    if isinstance(kind, TimestampType):
        return dt.datetime(2024, 5, 1, 12, 0, n)
    if isinstance(kind, UUIDType):
        return uuid.UUID(int=n).bytes
    if isinstance(kind, FixedType):
        return bytes([n]) * len(kind)
    if isinstance(kind, BinaryType):
        return bytes([n]) * 3
    if isinstance(kind, StructType):
        return {f.name: _sample(f.field_type, n) for f in kind.fields}
    if isinstance(kind, ListType):
        return [_sample(kind.element_type, n)]
    if isinstance(kind, MapType):
        return [(_sample(kind.key_type, n), _sample(kind.value_type, n))]
    if kind.is_primitive and "timestamp" in str(kind):
        return dt.datetime(2024, 5, 1, 12, 0, n, tzinfo=dt.UTC)
    return None


class _Checker:
    def __init__(self, destination: str, mode: str, key_fields: list[str]) -> None:
        self.destination = destination
        self.mode = mode
        self.key_fields = key_fields
        self.problems: list[tuple[KeyPath, str]] = []
        self._stopped: set[str] = set()
        """Templates that ran over their budget once: not rendered again."""
        self._seen: set[tuple[str, int | None, str]] = set()
        self._failed: set[tuple[str, str]] = set()
        """(template key, op) that failed once: one problem each is enough."""

    def check(
        self,
        name: RouteName,
        shape: Shape,
        op: str,
        samples: list[JsonRecord],
        nulls: JsonRecord | None,
    ) -> None:
        note = ""
        if name == "delete" and self.mode != "append":
            keys = ", ".join(self.key_fields)
            note = f"; a delete's record holds the key fields only: {keys}"
        records: list[Any] = []
        for record in samples:
            records.append(self._record(shape.record, name, op, record, note))
        if nulls is not None and shape.record is not None:
            self._record(shape.record, name, op, nulls, f" with the optional columns null{note}")
        body = shape.body
        records = [r for r in records if r is not None]
        if body is None or not records:
            return
        body_op = "append" if self.mode == "append" else name

        def run() -> Any:
            return render_body(self.destination, body, records, body_op, _SAMPLE_SNAPSHOT)

        self._render(body, op, run, " in a request of two")

    def _record(
        self, template: Compiled | None, name: RouteName, op: str, record: JsonRecord, note: str
    ) -> Any:
        seen = record
        if name == "delete" and self.mode != "append":
            seen = {f: record.get(f) for f in self.key_fields}
        if template is None:
            if self.mode == "append":
                return {"op": op, "snapshot_id": _SAMPLE_SNAPSHOT, "record": record}
            return seen
        context = {
            "record": seen,
            "op": op,
            "destination": self.destination,
            "snapshot_id": _SAMPLE_SNAPSHOT,
        }
        return self._render(
            template, op, lambda: render_json(template, context, MAX_RECORD_CHARS)[1], note
        )

    def _render(self, template: Compiled, op: str, run: Callable[[], Any], note: str = "") -> Any:
        if template.key in self._stopped or (template.key, op) in self._failed:
            return None
        try:
            return run()
        except Exception as exc:  # a TemplateError, or anything else: a problem to report
            if not isinstance(exc, TemplateError):
                exc = TemplateError(template.key, f"{type(exc).__name__}: {exc}")
            self._failed.add((template.key, op))
            if exc.problem.startswith("stopped"):
                self._stopped.add(template.key)
            if (template.key, exc.line, exc.problem) in self._seen:
                return None
            self._seen.add((template.key, exc.line, exc.problem))
            where = f"line {exc.line}: " if exc.line is not None else ""
            message = f"{where}{exc.problem} (rendering sample {op} rows{note})"
            self.problems.append((("sink_config", *template.key.split(".")), message))
            return None
