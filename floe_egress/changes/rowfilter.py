"""A destination's `filter:` the rows it should hold, as pyiceberg's expression syntax.

The sync behaves as if the table held only the rows that match: every read of table
rows (both sides of a diff, the unchanged files, a full read, a comparison with the
digest, the rows sent again) keeps only matching rows, so the plans, which are exact on
the table, are exact on the subset. A row that starts to match is then an insert, one
that stops a delete (dropped by the modes that do not delete), one that matches on both
sides an update when its values changed.

The expression is bound by name to B's schema (the columns the destination is synced
with); rows read at another snapshot are matched by field id, so a column renamed
between A and B is the same column, and one missing in a snapshot is null there. A
filter naming a column B no longer has is an error that says what it was renamed to.
Null matches no comparison (`mrr > 1000` is false for a null mrr, and so is
`not (mrr > 1000)`), as in Iceberg and SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.visitors import (
    _InclusiveMetricsEvaluator,
    bind,
    extract_field_ids,
    translate_column_names,
)
from pyiceberg.io.pyarrow import expression_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table

from floe_egress.config.filters import parse_filter
from floe_egress.errors import InvalidSourceError


@dataclass(frozen=True)
class RowFilter:
    """A filter bound to B's `schema` (see the module doc)."""

    text: str
    schema: Schema
    bound: BooleanExpression
    columns: tuple[str, ...]
    """B's names of the columns the filter reads."""
    _cache: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, text: str, schema: Schema, table: Table | None = None) -> RowFilter:
        """Bound to `schema`; InvalidSourceError (permanent) when it does not fit: an unknown or
        renamed column, a literal of another type. `table` lets the error name the
        column's new name when it was renamed."""
        try:
            expression = parse_filter(text)
        except ValueError as exc:
            raise InvalidSourceError(f"filter {text!r}: {exc}") from None
        try:
            bound = bind(schema, expression, case_sensitive=True)
        except (ValueError, TypeError) as exc:
            raise InvalidSourceError(_unbound_reason(text, exc, schema, table)) from None
        ids = extract_field_ids(bound)
        columns = tuple(schema.find_column_name(i) or "" for i in sorted(ids))
        return cls(text, schema, bound, columns)

    @property
    def everything(self) -> bool:
        return isinstance(self.bound, AlwaysTrue)

    def expression(self, schema: Schema | None = None) -> pc.Expression:
        """The filter over rows read with `schema` (default B's), by field id."""
        if schema is not None and schema is not self.schema:
            translated = translate_column_names(self.bound, schema, True)
            return expression_to_pyarrow(bind(schema, translated, True), schema)
        found = self._cache.get("arrow")
        if found is None:
            found = self._cache["arrow"] = expression_to_pyarrow(self.bound, self.schema)
        return cast(pc.Expression, found)

    def apply(self, rows: pa.Table, schema: Schema | None = None) -> pa.Table:
        """The matching rows of `rows` (read with `schema`, default B's)."""
        if self.everything or not rows.num_rows:
            return rows
        return rows.filter(self.expression(schema))

    def scan_filter(self, schema: Schema | None = None) -> BooleanExpression:
        """For a pyiceberg scan of a snapshot with `schema` (default B's): it prunes data
        files by their statistics and keeps the matching rows."""
        return translate_column_names(self.bound, schema or self.schema, True)

    def may_match(self, task: FileScanTask) -> bool:
        """Whether the data file's column statistics allow a matching row (False: it
        holds none, and is not read)."""
        evaluator = self._cache.get("metrics")
        if evaluator is None:
            evaluator = _InclusiveMetricsEvaluator(self.schema, self.scan_filter())
            self._cache["metrics"] = evaluator
        return bool(evaluator.eval(task.file))

    def prune(self, tasks: Sequence[FileScanTask]) -> list[FileScanTask]:
        return [t for t in tasks if self.may_match(t)]

    def missing(self, names: Sequence[str]) -> list[str]:
        """The filter's columns not among `names` (to read as well)."""
        return [c for c in self.columns if c not in names]


def _unbound_reason(text: str, exc: Exception, schema: Schema, table: Table | None) -> str:
    message = str(exc)
    prefix = f"filter {text!r} does not fit the table's columns"
    if "Could not find field with name" in message:
        name = message.split("name ", 1)[1].split(",", 1)[0]
        renamed = _renamed_to(name, schema, table)
        if renamed:
            return (
                f"{prefix}: column {name!r} was renamed to {renamed!r}; "
                "write the new name in the destination's filter"
            )
        columns = ", ".join(f.name for f in schema.fields)
        return f"{prefix}: it names column {name!r}, which the table lacks (columns: {columns})"
    return f"{prefix}: {message}"


def _renamed_to(name: str, schema: Schema, table: Table | None) -> str | None:
    if table is None:
        return None
    for older in table.schemas().values():
        found = older.find_field(name) if name in older.column_names else None
        if found is not None:
            current = schema.find_column_name(found.field_id)
            if current and current != name:
                return current
    return None


__all__ = ["RowFilter"]
