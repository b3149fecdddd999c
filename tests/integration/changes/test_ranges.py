"""A snapshot range resolved once, and the change sets made from it."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from floe_egress.changes import OP_COLUMN, ChangeCounts
from floe_egress.changes.full import full_change_set
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.errors import SourceError

ARROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])


@pytest.fixture
def table(sqlite_catalog: Catalog) -> Table:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "v", StringType(), required=False),
    )
    tbl = sqlite_catalog.create_table("gold.things", schema=schema)
    tbl.append(pa.table({"id": [1, 2], "v": ["a", "b"]}, ARROW))
    tbl.append(pa.table({"id": [3], "v": ["c"]}, ARROW))
    return tbl


def test_a_range_to_the_ref_resolves_b_and_labels_its_change_sets(table: Table) -> None:
    first, second = table.snapshots()
    span = SnapshotRange.of(
        table,
        ref="main",
        from_snapshot=first.snapshot_id,
        key=["id"],
        to_snapshot=None,
        batch_rows=10,
    )

    assert span.name == "gold.things"
    assert span.key == ("id",)
    assert span.to is not None and span.to.snapshot_id == second.snapshot_id
    assert span.out.names == ["id", "v", OP_COLUMN]
    assert all(f.nullable for f in span.out if f.name != OP_COLUMN)
    cs = span.change_set("noop", ChangeCounts(), reason="why")
    assert (cs.table, cs.ref, cs.key, cs.plan, cs.reason) == (
        "gold.things",
        "main",
        ("id",),
        "noop",
        "why",
    )
    assert (cs.from_snapshot, cs.to_snapshot, cs.to_timestamp_ms) == (
        first.snapshot_id,
        second.snapshot_id,
        second.timestamp_ms,
    )
    assert cs.schema == span.out
    assert list(cs.batches()) == []


def test_a_range_to_an_older_snapshot_and_to_an_unknown_one(table: Table) -> None:
    first = table.snapshots()[0]
    span = SnapshotRange.of(
        table,
        ref="main",
        from_snapshot=None,
        key=["id"],
        to_snapshot=first.snapshot_id,
        batch_rows=10,
    )
    assert span.to == first

    with pytest.raises(SourceError, match="snapshot 42 is not in the metadata"):
        SnapshotRange.of(
            table, ref="main", from_snapshot=None, key=["id"], to_snapshot=42, batch_rows=10
        )


def test_the_full_change_set_of_a_range_streams_b_in_batches_of_its_size(table: Table) -> None:
    span = SnapshotRange.of(
        table, ref="main", from_snapshot=7, key=["id"], to_snapshot=None, batch_rows=1
    )

    cs = full_change_set(span, reason="first sync")

    assert (cs.plan, cs.from_snapshot, cs.reason) == ("full", 7, "first sync")
    assert cs.counts == ChangeCounts(inserted=3)
    batches = list(cs.batches())
    assert [b.num_rows for b in batches] == [1, 1, 1]
    assert sorted(pa.Table.from_batches(batches).column("id").to_pylist()) == [1, 2, 3]


def test_the_full_change_set_of_a_range_without_b_is_empty(sqlite_catalog: Catalog) -> None:
    table = sqlite_catalog.create_table(
        "gold.empty", schema=Schema(NestedField(1, "id", LongType(), required=True))
    )
    span = SnapshotRange.of(
        table, ref="main", from_snapshot=5, key=["id"], to_snapshot=None, batch_rows=10
    )

    cs = full_change_set(span, reason="gone")

    assert (cs.plan, cs.to_snapshot, cs.counts.total) == ("full", None, 0)
    assert list(cs.batches()) == []
