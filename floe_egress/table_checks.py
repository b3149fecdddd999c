"""`validate`'s checks of what only the tables can tell: that each destination's
`filter:` fits its table's columns and types (and, for the REST sink, that its request
templates render against them).

The tables are read through the catalog, as a cycle would (nothing is written). A
table that cannot be read (the catalog does not answer, no such table yet) is a
warning that the check was skipped, not an error: the file may be validated where the
catalog is out of reach.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyiceberg.schema import Schema

from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import schema_of, snapshot_of_ref
from floe_egress.config import LoadedConfig
from floe_egress.config.models import Destination
from floe_egress.config.problems import KeyPath, Problem
from floe_egress.config.secrets import redact
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import EgressError

SchemaCheck = Callable[[Mapping[str, Any], Schema], list[tuple[KeyPath, str]]]
"""A check of one raw destination item against its table's schema (paths relative to
the item)."""
Applies = Callable[[Mapping[str, Any]], bool]
"""Whether a check has anything to check in a raw destination item (only those tables
are read)."""


_TEMPLATE_KEYS = ("record_template", "body_template")


def templated(item: Mapping[str, Any]) -> bool:
    """A rest_api destination with a request template, at the top or in a route."""
    config = item.get("sink_config")
    if item.get("sink_type") != "rest_api" or not isinstance(config, Mapping):
        return False
    routes = config.get("routes")
    places = [config, *(routes.values() if isinstance(routes, Mapping) else ())]
    return any(isinstance(p, Mapping) and any(p.get(k) for k in _TEMPLATE_KEYS) for p in places)


def _templates(item: Mapping[str, Any], schema: Schema) -> list[tuple[KeyPath, str]]:
    # Imported here: validating a file without templates loads no HTTP sink.
    from floe_egress.sinks.http.template_checks import template_problems

    return template_problems(item, schema)


CHECKS: tuple[tuple[Applies, SchemaCheck], ...] = ((templated, _templates),)


def table_problems(
    loaded: LoadedConfig, checks: Sequence[tuple[Applies, SchemaCheck]] = CHECKS
) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) of the destinations' filters, and of `checks`, against the
    schemas of their tables at their refs."""
    spec = loaded.spec
    prefix: KeyPath = ("spec",) if loaded.format == "compiled" else ()
    items = _raw_items(loaded)
    wanted = [
        (i, d)
        for i, d in enumerate(spec.ingestion.destinations)
        if d.filter or any(applies(items[i]) for applies, _ in checks)
    ]
    if not wanted:
        return [], []
    errors: list[Problem] = []
    warnings: list[Problem] = []
    runtime = Runtime(spec)
    try:
        for index, dest in wanted:
            at: KeyPath = (*prefix, "ingestion", "destinations", index)
            try:
                table = runtime.load_table(dest)
            except Exception as exc:  # any reason the catalog gives: the check is skipped
                message = (
                    f"table {dest.source_table} could not be read ({redact(str(exc))}); "
                    "its filter and templates were not checked against its columns"
                )
                warnings.append(Problem(at, message, loaded.line_of(at)))
                continue
            schema = schema_of(table, snapshot_of_ref(table, dest.ref))
            found = _filter_problems(dest, schema, table)
            for applies, check in checks:
                if applies(items[index]):
                    found += check(items[index], schema)
            for path, message in found:
                full = (*at, *path)
                if not message.startswith("destination "):
                    message = f"destination {dest.name!r}: {message}"
                errors.append(Problem(full, message, loaded.line_of(full)))
    finally:
        asyncio.run(runtime.close())
    return errors, warnings


def _filter_problems(dest: Destination, schema: Schema, table: Any) -> list[tuple[KeyPath, str]]:
    if not dest.filter:
        return []
    try:
        RowFilter.of(dest.filter, schema, table)
    except EgressError as exc:
        return [(("filter",), f"destination {dest.name!r}: {exc}")]
    return []


def _raw_items(loaded: LoadedConfig) -> list[Mapping[str, Any]]:
    """The destinations as the file writes them (what sink checks read)."""
    return [d.model_dump(mode="python") for d in loaded.spec.ingestion.destinations]


__all__ = ["CHECKS", "Applies", "SchemaCheck", "table_problems", "templated"]
