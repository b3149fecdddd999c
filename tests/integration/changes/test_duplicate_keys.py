"""A key B holds more than once is invalid on every plan, with the same counts.

Iceberg does not enforce unique keys, and the append and diff plans read only the files
that changed: a key appended again, whose first row sits in an unchanged file, must
still be found (it was sent as an insert, and a later full resync then called it
invalid).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from floe_egress.changes import ChangeSet, capture, rows_at
from floe_egress.changes.keys import key_json
from floe_egress.changes.model import OP_COLUMN
from tests.fixtures.tables import change_rows, people

KEY = ("id",)


@pytest.fixture
def table(any_catalog: Catalog) -> Table:
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "email", StringType(), required=False),
        NestedField(3, "score", IntegerType(), required=False),
    )
    tbl = any_catalog.create_table("gold.people", schema=schema)
    tbl.append(_rows([1, 2, 3, 4, 5]))
    return tbl


def _rows(ids: list[int], suffix: str = "") -> pa.Table:
    return people(ids, suffix=suffix).cast(
        pa.schema([pa.field("id", pa.int64()), ("email", pa.string()), ("score", pa.int32())])
    )


def head(table: Table) -> int:
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


def ops_of(change_set: ChangeSet) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"insert": [], "update": [], "delete": []}
    for row in change_rows(change_set):
        out[row[OP_COLUMN]].append((row["id"], row["email"]))
    return {op: sorted(rows) for op, rows in out.items()}


def invalid(change_set: ChangeSet) -> list[tuple[str, Any, int]]:
    return [(r.reason, r.key["id"], r.rows) for r in change_set.invalid_sample]


def test_a_key_appended_again_is_invalid_on_the_append_plan_as_on_the_full_plan(
    table: Table,
) -> None:
    a = head(table)
    # 3 is already in the table; 7 comes twice in the same commit
    table.append(_rows([3, 6, 7, 7], suffix="-new"))

    append = capture(table, from_snapshot=a, key=KEY)
    assert append.plan == "append"
    assert ops_of(append) == {"insert": [(6, "u6-new@example.com")], "update": [], "delete": []}
    assert (append.counts.inserted, append.counts.invalid) == (1, 4)
    assert invalid(append) == [("duplicate_key", 3, 2), ("duplicate_key", 7, 2)]

    full = capture(table, from_snapshot=None, key=KEY)
    assert sorted(r["id"] for r in change_rows(full)) == [1, 2, 4, 5, 6]
    assert (full.counts.inserted, full.counts.invalid) == (5, 4)
    assert invalid(full) == invalid(append)


def test_a_key_unique_again_is_sent_as_an_insert_and_one_gone_as_a_delete(
    table: Table,
) -> None:
    """As a full resync would send it: the destination may or may not hold the key."""
    table.append(_rows([3, 6, 7, 7, 8, 8], suffix="-new"))
    b = head(table)
    table.delete("email = 'u3-new@example.com'")  # 3 is held once again: by the old file
    table.delete("id = 7")
    table.overwrite(_rows([8], suffix="-once"), overwrite_filter="id = 8")

    cs = capture(table, from_snapshot=b, key=KEY)
    assert cs.plan == "diff"
    assert ops_of(cs) == {
        "insert": [(3, "u3@example.com"), (8, "u8-once@example.com")],
        "update": [],
        "delete": [(7, "u7-new@example.com")],
    }
    assert (cs.counts.inserted, cs.counts.deleted, cs.counts.invalid) == (2, 1, 0)
    full = capture(table, from_snapshot=None, key=KEY)
    assert sorted(r["id"] for r in change_rows(full)) == [1, 2, 3, 4, 5, 6, 8]


def test_an_overwrite_that_adds_a_key_an_unchanged_file_holds_makes_it_invalid(
    table: Table,
) -> None:
    table.append(_rows([6, 7, 8]))
    a = head(table)
    # rewrites the second file (8 changes) and adds a second row for 2, whose first row
    # sits in the first file, which does not change
    table.overwrite(_rows([8, 2], suffix="-new"), overwrite_filter="id = 8")

    cs = capture(table, from_snapshot=a, key=KEY)
    assert cs.plan == "diff"
    assert ops_of(cs) == {"insert": [], "update": [(8, "u8-new@example.com")], "delete": []}
    assert invalid(cs) == [("duplicate_key", 2, 2)]

    full = capture(table, from_snapshot=None, key=KEY)
    assert full.counts.invalid == 2
    assert invalid(full) == invalid(cs)


def test_rows_to_resend_leave_out_a_key_more_than_one_row_holds(table: Table) -> None:
    table.append(_rows([3], suffix="-new"))
    schema = capture(table, from_snapshot=None, key=KEY).schema
    wanted = {key_json({"id": 3}): "update", key_json({"id": 4}): "update"}
    rows = rows_at(table, head(table), KEY, wanted, schema)
    assert [(r["id"], r[OP_COLUMN]) for r in rows.to_pylist()] == [(4, "update")]


def test_a_row_a_positional_delete_removed_does_not_make_a_duplicate(table: Table) -> None:
    """Merge-on-read: the unchanged file still holds the deleted row's bytes; only the
    rows left after its delete files count."""
    from tests.fixtures.iceberg_writers import delete_positions

    delete_positions(table, lambda row: row["id"] == 2)
    a = head(table)
    table.append(_rows([2, 4], suffix="-new"))  # 2 was deleted, 4 is still there

    cs = capture(table, from_snapshot=a, key=KEY)
    assert ops_of(cs) == {"insert": [(2, "u2-new@example.com")], "update": [], "delete": []}
    assert invalid(cs) == [("duplicate_key", 4, 2)]
    assert invalid(capture(table, from_snapshot=None, key=KEY)) == invalid(cs)
