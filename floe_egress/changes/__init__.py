"""Change capture: exact net row changes between two snapshots of an Iceberg table."""

from __future__ import annotations

from floe_egress.changes.capture import capture
from floe_egress.changes.model import (
    OP_COLUMN,
    OPS,
    ChangeCounts,
    ChangeSet,
    InvalidRow,
    Op,
    PlanKind,
)
from floe_egress.changes.ranges import output_schema
from floe_egress.changes.resend import keys_touched, ops_by_key, rows_at
from floe_egress.changes.source import (
    load_table,
    open_catalog,
    resolve_key,
    schema_of,
    snapshot_of_ref,
    table_name,
)

__all__ = [
    "OPS",
    "OP_COLUMN",
    "ChangeCounts",
    "ChangeSet",
    "InvalidRow",
    "Op",
    "PlanKind",
    "capture",
    "keys_touched",
    "load_table",
    "open_catalog",
    "ops_by_key",
    "output_schema",
    "resolve_key",
    "rows_at",
    "schema_of",
    "snapshot_of_ref",
    "table_name",
]
