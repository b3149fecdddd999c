"""Rows to send again, computed from the table: the op a change set sends for each key,
the keys a snapshot range touched, and the rows of given keys as they are in B.

What to send again (failed rows, an interrupted delivery) is the daemon's decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import pyarrow as pa
from pyiceberg.table import Table

from floe_egress.changes.capture import capture
from floe_egress.changes.keys import conform, delete_rows, key_jsons, parse_key_json
from floe_egress.changes.lookup import current_rows
from floe_egress.changes.model import OP_COLUMN, ChangeSet
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import schema_of


def _every_row(rows: pa.Table) -> pa.Table:
    return rows


def ops_by_key(
    change_set: ChangeSet, keep: Callable[[pa.Table], pa.Table] = _every_row
) -> dict[str, str]:
    """key_json → op of the change set's rows that `keep` leaves (e.g. the rows a sync
    mode delivers); one pass over its batches."""
    ops: dict[str, str] = {}
    for batch in change_set.batches():
        rows = keep(pa.Table.from_batches([batch]))
        ops.update(
            zip(key_jsons(rows, change_set.key), rows.column(OP_COLUMN).to_pylist(), strict=True)
        )
    return ops


def keys_touched(
    table: Table,
    *,
    ref: str,
    from_snapshot: int | None,
    to_snapshot: int,
    key: tuple[str, ...],
    row_filter: str | None = None,
) -> set[str]:
    """The key_json of every key a delivery of from_snapshot→to_snapshot may have touched
    at a destination: all keys of `to_snapshot` when there is no A, else the keys the
    range changed (deleted keys included); of the rows `row_filter` matches."""
    if from_snapshot is None:
        if row_filter:
            schema = schema_of(table, table.snapshot_by_id(to_snapshot))
            bound = RowFilter.of(row_filter, schema, table)
            rows = bound.matching(table, to_snapshot, key)
            return {k for b in rows for k in key_jsons(b, key)}
        scan = table.scan(snapshot_id=to_snapshot, selected_fields=key)
        return {k for b in scan.to_arrow_batch_reader() for k in key_jsons(b, key)}
    touched = capture(
        table,
        ref=ref,
        from_snapshot=from_snapshot,
        key=key,
        to_snapshot=to_snapshot,
        old_rows=False,
        row_filter=row_filter,
    )
    return {k for b in touched.batches() for k in key_jsons(b, key)}


def rows_at(
    table: Table,
    snapshot_id: int,
    key: tuple[str, ...],
    wanted: Mapping[str, str],
    schema: pa.Schema,
    row_filter: RowFilter | None = None,
) -> pa.Table:
    """The rows of the `wanted` keys (key_json → op) as they are in `snapshot_id`, with
    `schema` (a change set's): a present row keeps its wanted op when that is insert or
    update (else update), a key that is gone becomes a delete. A key more than one row
    holds is invalid: it is left out (neither sent nor deleted). A row `row_filter` does
    not match is gone too (the destination should not hold it)."""
    found = current_rows(table, snapshot_id, key, [parse_key_json(k) for k in wanted], row_filter)
    found_keys = key_jsons(found, key)
    held = Counter(found_keys)
    if len(held) < len(found_keys):
        unique = [held[k] == 1 for k in found_keys]
        found = found.filter(pa.array(unique, pa.bool_()))
        found_keys = [k for k, keep in zip(found_keys, unique, strict=True) if keep]
    ops = [wanted[k] if wanted[k] in ("insert", "update") else "update" for k in found_keys]
    found = found.append_column(OP_COLUMN, pa.array(ops, pa.string()))
    parts = [conform(found.select([n for n in schema.names if n in found.column_names]), schema)]
    present = set(held)
    gone = [parse_key_json(k) for k in wanted if k not in present]
    if gone:
        parts.append(delete_rows(gone, key, schema))
    return pa.concat_tables(parts)
