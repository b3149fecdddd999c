"""Rows shaped to a change set's schema: conform, and key-only delete rows."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa

from floe_egress.changes import OP_COLUMN
from floe_egress.changes.keys import conform, delete_rows

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("day", pa.date32()),
        pa.field("amount", pa.decimal128(10, 2)),
        pa.field(OP_COLUMN, pa.string(), nullable=False),
    ]
)


def test_conform_orders_casts_and_fills_missing_columns_with_null() -> None:
    rows = pa.table({OP_COLUMN: ["update"], "extra": [1], "id": pa.array([7], pa.int32())})

    shaped = conform(rows.select([OP_COLUMN, "id"]), SCHEMA)

    assert shaped.schema == SCHEMA
    assert shaped.to_pylist() == [{"id": 7, "day": None, "amount": None, OP_COLUMN: "update"}]


def test_delete_rows_type_key_values_that_json_gave_back_as_text() -> None:
    keys = [{"id": 1, "day": "2024-02-29", "amount": "12.50"}]

    rows = delete_rows(keys, ("id", "day", "amount"), SCHEMA)

    assert rows.schema == SCHEMA
    assert rows.to_pylist() == [
        {
            "id": 1,
            "day": dt.date(2024, 2, 29),
            "amount": decimal.Decimal("12.50"),
            OP_COLUMN: "delete",
        }
    ]


def test_delete_rows_leave_every_other_column_null() -> None:
    rows = delete_rows([{"id": 1}, {"id": 2}], ("id",), SCHEMA)

    assert rows.column("id").to_pylist() == [1, 2]
    assert rows.column("day").null_count == rows.column("amount").null_count == 2
    assert rows.column(OP_COLUMN).to_pylist() == ["delete", "delete"]
