"""A destination's `filter:` the rows it should hold, as pyiceberg's expression syntax.

The sync behaves as if the table held only the rows that match: every read of table
rows (both sides of a diff, the unchanged files, a full read, a comparison with the
digest, the rows sent again) keeps only matching rows, so the plans, which are exact on
the table, are exact on the subset. A row that starts to match is then an insert, one
that stops a delete (dropped by the modes that do not delete), one that matches on both
sides an update when its values changed.

The expression is bound by name to the table's current columns (what the user sees
and writes), with its `not`s pushed into the comparisons; rows read at any snapshot
are matched by field id, so a column renamed since is the same column, and one a
snapshot lacks is null there. A filter naming a column the table no longer has is an
error that says what it was renamed to. Null (and NaN) matches no comparison
(`mrr > 1000` is false for a null mrr, and so is `not (mrr > 1000)`), as in SQL.

Every row is judged by one rule, Arrow's evaluation of that expression: the rows read
from data files directly are filtered with it, and so are the rows of pyiceberg scans,
whose own `row_filter` (which prunes files by their statistics) keeps at least the rows
Arrow keeps but judges a column missing from a file differently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.visitors import (
    _InclusiveMetricsEvaluator,
    bind,
    extract_field_ids,
    rewrite_not,
    translate_column_names,
)
from pyiceberg.io.pyarrow import expression_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
from pyiceberg.types import BinaryType, FixedType, PrimitiveType, UUIDType

from floe_egress.changes.source import schema_of, streamed
from floe_egress.config.filters import parse_filter
from floe_egress.errors import InvalidSourceError

_UNSUPPORTED = (UUIDType, BinaryType, FixedType)
"""Column types a filter refuses: read as text (UUIDs) or bytes, Arrow cannot compare
them with pyiceberg's literals."""


@dataclass(frozen=True)
class RowFilter:
    """A filter bound to B's `schema` (see the module doc)."""

    text: str
    schema: Schema
    bound: BooleanExpression
    """The filter bound to B's schema."""
    columns: tuple[str, ...]
    """B's names of the columns the filter reads."""
    current: BooleanExpression = field(default_factory=AlwaysTrue)
    """The filter by the table's current names (what pyiceberg scans bind)."""
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
        now = table.schema() if table is not None else schema
        try:
            on_now = bind(now, rewrite_not(expression), case_sensitive=True)
        except (ValueError, TypeError) as exc:
            raise InvalidSourceError(_unbound_reason(text, exc, now, table)) from None
        ids = extract_field_ids(on_now)
        for field_id in ids:
            found = now.find_field(field_id)
            if not isinstance(found.field_type, PrimitiveType) or isinstance(
                found.field_type, _UNSUPPORTED
            ):
                raise InvalidSourceError(
                    f"filter {text!r}: column {found.name!r} is {found.field_type}, which a "
                    "filter cannot compare yet (use text, numbers, dates, times or booleans)"
                )
        bound = bind(schema, translate_column_names(on_now, schema, True), True)
        columns = tuple(n for n in (schema.find_column_name(i) for i in sorted(ids)) if n)
        return cls(text, schema, bound, columns, translate_column_names(on_now, now, True))

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

    def scan_filter(self) -> BooleanExpression:
        """For pyiceberg scans (which bind it to the table's current columns): it prunes
        data files by their statistics and keeps at least the matching rows; what they
        read still goes through `apply`."""
        return self.current

    def matching(
        self, table: Table, snapshot_id: int, selected: Sequence[str] | None = None
    ) -> pa.RecordBatchReader:
        """The rows of a snapshot that match (`selected` columns, by that snapshot's
        names; None: all), read by a pruned pyiceberg scan and judged by `apply`."""
        schema = schema_of(table, table.snapshot_by_id(snapshot_id))
        wanted = list(selected) if selected is not None else None
        fields: tuple[str, ...] = ("*",)
        if wanted is not None:
            named = (schema.find_column_name(i) for i in extract_field_ids(self.bound))
            fields = tuple(dict.fromkeys([*wanted, *(n for n in named if n)]))
        scan = table.scan(snapshot_id=snapshot_id, selected_fields=fields, row_filter=self.current)
        reader = streamed(scan)
        expression = self.expression(schema)
        target = reader.schema
        if wanted is not None:
            target = pa.schema([reader.schema.field(n) for n in wanted])

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                rows = pa.Table.from_batches([batch]).filter(expression)
                if wanted is not None:
                    rows = rows.select(wanted)
                yield from rows.to_batches()

        return pa.RecordBatchReader.from_batches(target, batches())

    def may_match(self, task: FileScanTask) -> bool:
        """Whether the data file's column statistics allow a matching row (False: it
        holds none, and is not read)."""
        evaluator = self._cache.get("metrics")
        if evaluator is None:
            unbound = translate_column_names(self.bound, self.schema, True)
            evaluator = _InclusiveMetricsEvaluator(self.schema, unbound)
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
