"""rest_api request shapes from templates (templates.py), and records refused by value.

- `record_template` renders each record; the text must be JSON. In batch mode the
  envelope carries the rendered records; in single mode the rendered text is the body.
- `body_template` renders a request's body from `records` (the rendered records, or
  the default ones without a record template); the text is sent exactly as rendered.
- A record that fails to render, or renders text that is not JSON, is a failed row on
  its own; a body that fails fails the records of that request.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from floe_egress.sinks.base import FailedRow
from floe_egress.sinks.http.convert import JsonRecord
from floe_egress.sinks.http.rest_config import RejectedValues, RestApiConfig, RouteName
from floe_egress.sinks.http.sink import Row
from floe_egress.sinks.http.templates import (
    MAX_BODY_CHARS,
    MAX_RECORD_CHARS,
    Compiled,
    TemplateError,
    compile_template,
    render_json,
)


@dataclass(frozen=True, slots=True)
class Shape:
    """The templates one route's requests are rendered with (None: the default)."""

    record: Compiled | None = None
    body: Compiled | None = None


def shapes(config: RestApiConfig) -> dict[RouteName, Shape]:
    found: dict[RouteName, Shape] = {}
    for name in get_args(RouteName):
        if config.single and config.route(name).method == "DELETE":
            found[name] = Shape()  # a DELETE of one record has no body to render
            continue
        record = config.template(name, "record_template")
        body = config.template(name, "body_template")
        found[name] = Shape(
            compile_template(*record) if record else None,
            compile_template(*body) if body else None,
        )
    return found


def shape_rows(
    destination: str,
    template: Compiled,
    rows: Iterable[Row],
    record_of: Callable[[Row], JsonRecord],
    op_of: Callable[[Row], str],
    snapshot_id: int | None,
) -> tuple[list[Row], list[FailedRow]]:
    """Each row with its record rendered by `template`, and the rows that failed."""
    shaped: list[Row] = []
    failed: list[FailedRow] = []
    for row in rows:
        try:
            context = {
                "record": record_of(row),
                "op": op_of(row),
                "destination": destination,
                "snapshot_id": snapshot_id,
            }
            text, _ = render_json(template, context, MAX_RECORD_CHARS)
        except Exception as exc:  # a TemplateError, or anything else: this row's failure
            why = str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
            failed.append(FailedRow(row.key, row.op, f"destination {destination!r}: {why}"))
            continue
        shaped.append(dataclasses.replace(row, shaped=text))
    return shaped, failed


def shaped_record(row: Row) -> Any:
    """The rendered record of `row` as a JSON value."""
    return None if row.shaped is None else json.loads(row.shaped)


def render_body(
    destination: str, template: Compiled, records: list[Any], op: str, snapshot_id: int | None
) -> bytes:
    context = {
        "records": records,
        "op": op,
        "destination": destination,
        "snapshot_id": snapshot_id,
    }
    text, _ = render_json(template, context, MAX_BODY_CHARS)
    return text.encode("utf-8")  # render_json checked that it encodes


def body_failures(destination: str, rows: Sequence[Row], error: TemplateError) -> list[FailedRow]:
    reason = f"destination {destination!r}: {error} (every record of this request failed)"
    return [FailedRow(row.key, row.op, reason) for row in rows]


def value_rejections(
    data: Any, rejected: Sequence[RejectedValues], rows: Sequence[Row]
) -> dict[int, str]:
    """{row index: why} for the rows whose field value a response lists as refused."""
    found: dict[int, str] = {}
    for setting in rejected:
        listed = set(extract_ids(data, setting.path))
        if not listed:
            continue
        for index, row in enumerate(rows):
            value = row.record.get(setting.field)
            if value is not None and str(value) in listed and index not in found:
                found[index] = (
                    f"the destination listed this record's {setting.field} {value!r} in "
                    f"{setting.path} of its response"
                )
    return found


def extract_ids(data: Any, path: str) -> list[str]:
    """Follow `path` (`ids`, `results[].id`, `id`) through `data`; ids as strings."""
    values: list[Any] = [data]
    for segment in path.split("."):
        flatten = segment.endswith("[]")
        name = segment[:-2] if flatten else segment
        nxt: list[Any] = []
        for value in values:
            found = value.get(name) if isinstance(value, dict) else None
            if flatten and isinstance(found, list):
                nxt.extend(found)
            elif found is not None:
                nxt.append(found)
        values = nxt
    out: list[str] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        out.extend(str(v) for v in items if v is not None and not isinstance(v, dict | list))
    return out
