"""The digest of what a destination holds, and a table compared with it, on real tables:
what `effective` keeps of segments, and the change set `compare` makes (counts exact,
only differences, deletes for keys gone, invalid keys spared)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import In
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from floe_egress.changes import OP_COLUMN
from floe_egress.changes import digest as digests
from floe_egress.changes.ranges import SnapshotRange
from tests.fixtures.tables import change_rows

KEY = ("id",)
COLUMNS = ("id", "name")
ARROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


def rows(data: dict[int, str | None]) -> pa.Table:
    return pa.table({"id": list(data), "name": list(data.values())}, ARROW)


@pytest.fixture
def table(sqlite_catalog: Catalog) -> Table:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType(), required=False),
    )
    tbl = sqlite_catalog.create_table("gold.items", schema=schema)
    for start in (1, 6):  # two data files
        tbl.append(rows({i: f"n{i}" for i in range(start, start + 5)}))
    return tbl


def span(table: Table, key: tuple[str, ...] = KEY) -> SnapshotRange:
    return SnapshotRange.of(
        table, ref="main", from_snapshot=None, key=key, to_snapshot=None, batch_rows=3
    )


def held(data: dict[int, str | None]) -> tuple[bool, pa.Table]:
    return False, digests.entries(rows(data), KEY, COLUMNS)


def holding(data: dict[int, str | None]) -> pa.Table:
    return digests.effective([held(data)], KEY)


def sent(change_set: object) -> list[tuple[str, int, str | None]]:
    return sorted((r[OP_COLUMN], r["id"], r["name"]) for r in change_rows(change_set))  # type: ignore[arg-type]


def test_a_destination_equal_to_the_table_is_sent_nothing(table: Table) -> None:
    cs = digests.compare(
        span(table), COLUMNS, holding({i: f"n{i}" for i in range(1, 11)}), reason=""
    )

    assert (cs.plan, cs.counts.total, cs.counts.invalid) == ("digest", 0, 0)
    assert sent(cs) == []


def test_only_the_differences_are_sent_with_exact_counts(table: Table) -> None:
    table.delete(delete_filter=In("id", [3, 4, 7]))
    table.append(rows({20: "new", 21: "newer"}))
    table.upsert(rows({5: "changed"}), join_cols=["id"])
    # The destination holds 1-10 as first sent, and 30, which the table never had now.
    destination = {i: f"n{i}" for i in range(1, 11)} | {30: "gone long ago"}

    cs = digests.compare(span(table), COLUMNS, holding(destination), reason="expired")

    assert (cs.counts.inserted, cs.counts.updated, cs.counts.deleted) == (2, 1, 4)
    assert sent(cs) == [
        ("delete", 3, None),
        ("delete", 4, None),
        ("delete", 7, None),
        ("delete", 30, None),
        ("insert", 20, "new"),
        ("insert", 21, "newer"),
        ("update", 5, "changed"),
    ]
    assert cs.reason == "expired"


def test_segments_fold_later_over_earlier_and_a_reservation_makes_a_key_unsure() -> None:
    segments = [
        held({1: "a", 2: "b", 3: "c"}),
        held({2: "b2"}),
        (False, digests.gone_entries(rows({3: None}), KEY)),
        (True, digests.entries(rows({1: "a?", 4: "d?"}), KEY, COLUMNS)),
    ]

    folded = digests.effective(segments, KEY).to_pylist()

    hashes = {r["id"]: r[digests.HASH] for r in folded}
    assert [(r["id"], r[digests.UNSURE]) for r in folded] == [(1, True), (2, False), (4, True)]
    assert (
        hashes[2] == digests.entries(rows({2: "b2"}), KEY, COLUMNS).column(digests.HASH)[0].as_py()
    )
    assert hashes[4] is None, "a reserved key nothing confirmed: values unknown"


def test_unsure_and_unknown_keys_are_sent_again(table: Table) -> None:
    destination = digests.effective(
        [
            held({i: f"n{i}" for i in range(1, 11)}),
            (True, digests.entries(rows({2: "n2"}), KEY, COLUMNS)),
            (False, digests.unknown_entries(rows({3: None}), KEY)),
        ],
        KEY,
    )

    cs = digests.compare(span(table), COLUMNS, destination, reason="")

    assert sent(cs) == [("update", 2, "n2"), ("update", 3, "n3")]


def test_a_key_only_a_reserved_write_holds_is_an_insert_again(table: Table) -> None:
    """A write reserved key 11 and never confirmed: the destination may hold it or not.
    Sent again as an insert (insert mode drops updates); if B lost it, deleted."""
    destination = digests.effective(
        [
            held({i: f"n{i}" for i in range(1, 10)}),
            (True, digests.entries(rows({10: "n10", 12: "n12"}), KEY, COLUMNS)),
        ],
        KEY,
    )

    cs = digests.compare(span(table), COLUMNS, destination, reason="")

    assert sent(cs) == [("delete", 12, None), ("insert", 10, "n10")]
    assert (cs.counts.inserted, cs.counts.updated, cs.counts.deleted) == (1, 0, 1)


def test_keys_held_twice_or_null_are_neither_sent_nor_deleted(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "name", StringType(), required=False),
    )
    tbl = sqlite_catalog.create_table("gold.messy", schema=schema)
    loose = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
    tbl.append(pa.table({"id": [1, 2, 2, None], "name": ["a", "b", "b2", "x"]}, loose))

    cs = digests.compare(span(tbl), COLUMNS, holding({2: "b", 5: "e"}), reason="")

    assert (cs.counts.inserted, cs.counts.deleted, cs.counts.invalid) == (1, 1, 3)
    assert sent(cs) == [("delete", 5, None), ("insert", 1, "a")]
    assert [(i.reason, i.rows) for i in cs.invalid_sample] == [
        ("null_key", 1),
        ("duplicate_key", 2),
    ]


def test_everything_sends_every_row_as_an_update_where_the_digest_has_its_key(
    table: Table,
) -> None:
    table.delete(delete_filter=In("id", [10]))

    cs = digests.compare(
        span(table), COLUMNS, holding({1: "n1", 10: "n10"}), reason="mapping", everything=True
    )

    assert cs.plan == "full"
    assert (cs.counts.inserted, cs.counts.updated, cs.counts.deleted) == (8, 1, 1)


def test_a_composite_key_is_matched_on_all_its_columns(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "region", StringType(), required=True),
        NestedField(2, "id", LongType(), required=True),
    )
    tbl = sqlite_catalog.create_table("gold.regional", schema=schema)
    arrow = pa.schema(
        [pa.field("region", pa.string(), nullable=False), pa.field("id", pa.int64(), False)]
    )
    tbl.append(pa.table({"region": ["eu", "us"], "id": [1, 1]}, arrow))
    key = ("region", "id")
    held_rows = pa.table({"region": ["eu", "eu", "us"], "id": [1, 2, 1]}, arrow)
    destination = digests.effective([(False, digests.entries(held_rows, key, key))], key)

    cs = digests.compare(span(tbl, key), key, destination, reason="")

    assert [(r["region"], r["id"], r[OP_COLUMN]) for r in change_rows(cs)] == [("eu", 2, "delete")]


def test_snapshot_entries_hash_what_entries_hash(table: Table) -> None:
    snapshot = table.current_snapshot()
    assert snapshot is not None

    built = digests.snapshot_entries(table, snapshot.snapshot_id, KEY, COLUMNS)

    direct = digests.entries(table.scan().to_arrow(), KEY, COLUMNS)
    assert sorted(
        zip(built["id"].to_pylist(), built[digests.HASH].to_pylist(), strict=True)
    ) == sorted(zip(direct["id"].to_pylist(), direct[digests.HASH].to_pylist(), strict=True))


def test_segments_survive_their_encoding() -> None:
    entries = digests.entries(rows({1: "a", 2: None}), KEY, COLUMNS)

    assert digests.decode(digests.encode(entries)) == entries
