"""Reading the current rows of given keys (to retry failed rows with their latest values).

One pass over the snapshot's files, batch by batch: each batch meets the wanted keys in
DuckDB (a semi-join on the key columns) and only its matching rows are kept, so memory
is bounded by a batch plus the matches, however many keys are wanted.

Files are pruned by their statistics through the integer and string key columns: the
wanted values themselves when there are few (pyiceberg checks up to 200 values of an
IN against each file's bounds), else their range. UUID key columns are left out of the
filter: pyiceberg compares UUID bounds as unsigned bytes where Iceberg's Java writers
order them as signed, so a file that holds the key could be skipped (and the row then
taken for deleted). Other types (dates, decimals, binary) are matched but not pruned on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
)
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import IntegerType, LongType, StringType

from floe_egress.changes.duck import cursor, q
from floe_egress.changes.keys import keys_table
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import arrow_schema, schema_of, text_batches

IN_LIMIT = 200
"""pyiceberg prunes files with an IN of at most this many values (IN_PREDICATE_LIMIT)."""
# pyiceberg's predicates are pydantic models with their own positional __init__, which
# mypy hides behind pydantic's generated keyword-only signature.
_in: Any = In
_at_least: Any = GreaterThanOrEqual
_at_most: Any = LessThanOrEqual
_ROW = "__floe_i"


def prune_filter(key: tuple[str, ...], wanted: pa.Table, schema: Schema) -> BooleanExpression:
    """A filter no row of a wanted key fails, on the key columns pyiceberg prunes well."""
    parts: list[BooleanExpression] = []
    for column in key:
        values = wanted.column(column)
        field_type = schema.find_field(column).field_type
        if values.null_count or not isinstance(field_type, IntegerType | LongType | StringType):
            continue
        distinct = pc.unique(values).to_pylist()
        if len(key) == 1 and len(distinct) <= IN_LIMIT:
            parts.append(_in(column, distinct))
        else:
            parts.append(And(_at_least(column, min(distinct)), _at_most(column, max(distinct))))
    return reduce(And, parts) if parts else AlwaysTrue()


def current_rows(
    table: Table,
    snapshot_id: int,
    key: tuple[str, ...],
    keys: Sequence[Mapping[str, Any]],
    row_filter: RowFilter | None = None,
) -> pa.Table:
    """The rows of snapshot `snapshot_id` whose key is one of `keys`, with UUIDs as text;
    only those `row_filter` matches."""
    schema = schema_of(table, table.snapshot_by_id(snapshot_id))
    target = arrow_schema(schema)
    if not keys:
        return target.empty_table()
    wanted = keys_table(keys, pa.schema([target.field(c).with_nullable(True) for c in key]))
    pruned = prune_filter(key, wanted, schema)
    if row_filter is not None:
        pruned = And(pruned, row_filter.scan_filter())
    scan = table.scan(snapshot_id=snapshot_id, row_filter=pruned)
    on = " AND ".join(f"r.{q(c)} IS NOT DISTINCT FROM w.{q(c)}" for c in key)
    parts: list[pa.Table] = []
    con = cursor()
    try:
        con.register("w", wanted)
        for batch in text_batches(scan.to_arrow_batch_reader()):
            if not batch.num_rows:
                continue
            rows = pa.Table.from_batches([batch])
            positions = pa.array(np.arange(rows.num_rows, dtype=np.int64))
            con.register("r", rows.select(list(key)).append_column(_ROW, positions))
            found = con.execute(
                f"SELECT r.{_ROW} FROM r SEMI JOIN w ON {on} ORDER BY 1"
            ).fetchnumpy()[_ROW]
            con.unregister("r")
            if len(found):
                parts.append(rows.take(pa.array(np.asarray(found, dtype=np.int64))))
    finally:
        con.close()
    if not parts:
        return target.empty_table()
    found = pa.concat_tables(parts, promote_options="permissive")
    return found if row_filter is None else row_filter.apply(found, schema)
