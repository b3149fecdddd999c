"""Rows to send again, on real tables: the op a change set sends per key, the keys a
range touched, and the rows of given keys at B (deleted keys become deletes)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import EqualTo, In
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import DateType, IntegerType, LongType, NestedField, StringType

from floe_egress.changes import OP_COLUMN, capture, keys_touched, ops_by_key, rows_at
from floe_egress.changes.keys import key_json
from tests.fixtures.tables import people

KEY = ("id",)


def ids(*values: int) -> list[str]:
    return [key_json({"id": v}) for v in values]


def head(table: Table) -> int:
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


@pytest.fixture
def table(sqlite_catalog: Catalog) -> Table:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "email", StringType(), required=False),
        NestedField(3, "score", IntegerType(), required=False),
        identifier_field_ids=[1],
    )
    tbl = sqlite_catalog.create_table("gold.people", schema=schema)
    tbl.append(people(list(range(1, 11))))
    return tbl


def test_rows_at_gives_present_rows_as_they_are_and_gone_keys_as_deletes(table: Table) -> None:
    table.upsert(people([5], suffix="-v2"), join_cols=["id"])
    table.delete(delete_filter=EqualTo("id", 3))
    schema = capture(table, from_snapshot=None, key=KEY).schema
    wanted = {
        **dict.fromkeys(ids(5), "insert"),
        **dict.fromkeys(ids(7), "delete"),  # present in B: sent as its row, an update
        **dict.fromkeys(ids(3), "update"),  # deleted from the table
        **dict.fromkeys(ids(99), "insert"),  # never in the table
    }

    rows = rows_at(table, head(table), KEY, wanted, schema)

    assert rows.schema == schema
    by_id = {r["id"]: r for r in rows.to_pylist()}
    assert by_id == {
        5: {"id": 5, "email": "u5-v2@example.com", "score": 50, OP_COLUMN: "insert"},
        7: {"id": 7, "email": "u7@example.com", "score": 70, OP_COLUMN: "update"},
        3: {"id": 3, "email": None, "score": None, OP_COLUMN: "delete"},
        99: {"id": 99, "email": None, "score": None, OP_COLUMN: "delete"},
    }
    # Present rows first, then the deletes in the order the keys were wanted.
    assert rows.column("id").to_pylist()[2:] == [3, 99]


def test_rows_at_reads_an_older_snapshot_with_the_schema_given(table: Table) -> None:
    """The rows are those of the snapshot asked for, shaped like the change set (a
    column added later is null)."""
    before = head(table)
    with table.update_schema() as update:
        update.add_column("plan", StringType())
    table.delete(delete_filter=In("id", [1, 2]))
    schema = capture(table, from_snapshot=None, key=KEY).schema
    assert "plan" in schema.names

    rows = rows_at(table, before, KEY, dict.fromkeys(ids(1, 42), "update"), schema)

    assert rows.to_pylist() == [
        {"id": 1, "email": "u1@example.com", "score": 10, "plan": None, OP_COLUMN: "update"},
        {"id": 42, "email": None, "score": None, "plan": None, OP_COLUMN: "delete"},
    ]


def test_rows_at_with_a_composite_key_of_a_date(sqlite_catalog: Catalog) -> None:
    """Key JSON holds dates as text: they are found, and typed again in delete rows."""
    schema = Schema(
        NestedField(1, "region", StringType(), required=True),
        NestedField(2, "day", DateType(), required=True),
        NestedField(3, "n", LongType(), required=False),
    )
    table = sqlite_catalog.create_table("gold.daily", schema=schema)
    arrow = pa.schema(
        [
            pa.field("region", pa.string(), nullable=False),
            pa.field("day", pa.date32(), nullable=False),
            pa.field("n", pa.int64()),
        ]
    )
    day = dt.date(2024, 2, 29)
    table.append(pa.table({"region": ["eu", "us"], "day": [day, day], "n": [1, 2]}, arrow))
    key = ("region", "day")
    out = capture(table, from_snapshot=None, key=key).schema
    wanted = {
        key_json({"region": "us", "day": day}): "update",
        key_json({"region": "eu", "day": dt.date(2024, 3, 1)}): "update",
    }

    rows = rows_at(table, head(table), key, wanted, out)

    assert rows.to_pylist() == [
        {"region": "us", "day": day, "n": 2, OP_COLUMN: "update"},
        {"region": "eu", "day": dt.date(2024, 3, 1), "n": None, OP_COLUMN: "delete"},
    ]


def test_ops_by_key_gives_each_key_its_op_among_the_rows_kept(table: Table) -> None:
    a = head(table)
    table.upsert(people([2, 20], suffix="-v2"), join_cols=["id"])
    table.delete(delete_filter=EqualTo("id", 9))
    cs = capture(table, from_snapshot=a, key=KEY, old_rows=False)

    assert ops_by_key(cs) == {
        **dict.fromkeys(ids(20), "insert"),
        **dict.fromkeys(ids(2), "update"),
        **dict.fromkeys(ids(9), "delete"),
    }

    def no_deletes(rows: pa.Table) -> pa.Table:
        return rows.filter(pc.not_equal(rows.column(OP_COLUMN), "delete"))

    assert ops_by_key(cs, no_deletes) == {
        **dict.fromkeys(ids(20), "insert"),
        **dict.fromkeys(ids(2), "update"),
    }
    assert ops_by_key(capture(table, from_snapshot=head(table), key=KEY)) == {}


def test_keys_touched_are_the_keys_the_range_changed_deletes_included(table: Table) -> None:
    a = head(table)
    table.overwrite(people([2, 3, 30], suffix="-new"), overwrite_filter=In("id", [1, 2, 3]))
    b = head(table)
    table.delete(delete_filter=EqualTo("id", 8))  # after the range: not touched by it
    table.append(people([40]))

    touched = keys_touched(table, ref="main", from_snapshot=a, to_snapshot=b, key=KEY)

    assert touched == set(ids(1, 2, 3, 30))


def test_keys_touched_without_a_start_are_every_key_of_the_end(table: Table) -> None:
    table.delete(delete_filter=In("id", [4, 5]))
    end = head(table)
    table.append(people([11]))

    touched = keys_touched(table, ref="main", from_snapshot=None, to_snapshot=end, key=KEY)

    assert touched == set(ids(1, 2, 3, 6, 7, 8, 9, 10))


def test_keys_touched_with_a_filter_are_those_of_the_subset(table: Table) -> None:
    a = head(table)
    table.overwrite(people([2, 3, 30], suffix="-new"), overwrite_filter=In("id", [1, 2, 3]))
    b = head(table)
    subset = "id >= 3"

    touched = keys_touched(
        table, ref="main", from_snapshot=a, to_snapshot=b, key=KEY, row_filter=subset
    )
    everything = keys_touched(
        table, ref="main", from_snapshot=None, to_snapshot=b, key=KEY, row_filter=subset
    )

    assert touched == set(ids(3, 30)), "1 and 2 never were in the subset"
    assert everything == set(ids(3, 4, 5, 6, 7, 8, 9, 10, 30))
