"""How a digest is folded and compared at scale, on real tables: the shortcut for a large
segment in key order folds exactly as the general fold does; B's files read by DuckDB
hash exactly as the rows a destination was sent (digests written before still compare
equal, whatever the column types); files DuckDB cannot read as they are (a renamed
column) are read with Arrow and give the same change set."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import In
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
    UUIDType,
)

from floe_egress.changes import OP_COLUMN, capture
from floe_egress.changes import digest as digests
from floe_egress.changes.digest_fold import MIN_ROWS, fold_disjoint, fold_sorted
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.source import uuids_as_text
from tests.fixtures.tables import change_rows

KEY = ("id",)
COLUMNS = ("id", "name")


INT64 = pa.int64()


def rows(ids: list[int] | np.ndarray, name: str = "n", key_type: pa.DataType = INT64) -> pa.Table:
    ids = list(map(int, ids))
    schema = pa.schema([pa.field("id", key_type, nullable=False), pa.field("name", pa.string())])
    keys = pa.array(ids, pa.int64()).cast(key_type)
    return pa.table({"id": keys, "name": [f"{name}{i}" for i in ids]}, schema)


def entries(
    ids: list[int] | np.ndarray, name: str = "n", key_type: pa.DataType = INT64
) -> pa.Table:
    return digests.entries(rows(ids, name, key_type), KEY, COLUMNS)


def span(table: object) -> SnapshotRange:
    return SnapshotRange.of(
        table,  # type: ignore[arg-type]
        ref="main",
        from_snapshot=None,
        key=KEY,
        to_snapshot=None,
        batch_rows=1000,
    )


@pytest.mark.parametrize("key_type", [pa.int64(), pa.int32(), pa.timestamp("us")], ids=str)
def test_a_large_segment_in_key_order_folds_as_the_general_fold_does(
    key_type: pa.DataType,
) -> None:
    even = np.arange(0, 2 * MIN_ROWS + 20, 2)
    base = pa.concat_tables(
        [
            entries(even[10:], key_type=key_type),
            digests.gone_entries(rows(even[:5], key_type=key_type), KEY),
            digests.unknown_entries(rows(even[5:10], key_type=key_type), KEY),
        ]
    ).sort_by("id")
    later = [
        # a gone key back, new keys
        (False, entries([0, 3, 20, 21, 10**9], name="v2", key_type=key_type)),
        (False, digests.gone_entries(rows([22, 24, 21], key_type=key_type), KEY)),
        (True, entries([26, 27, 2], name="v3", key_type=key_type)),  # reserved: unsure
        (False, entries([24], name="v4", key_type=key_type)),  # deleted, then sent again
    ]
    shuffled = base.take(pa.array(np.random.default_rng(1).permutation(base.num_rows)))

    shortcut = fold_sorted(
        [(False, base), *later],
        KEY,
        digests.effective,
        hash_column=digests.HASH,
        gone_column=digests.GONE,
        unsure_column=digests.UNSURE,
    )
    general = digests.effective([(False, shuffled), *later], KEY)

    assert shortcut is not None, "a large held segment in key order takes the shortcut"
    assert shortcut.to_pydict() == general.to_pydict()
    assert shortcut.schema.field("id").type == key_type
    ids = shortcut["id"].cast(pa.int64()).to_pylist()
    held = dict(zip(ids, shortcut[digests.UNSURE].to_pylist(), strict=True))
    assert [k for k in (0, 2, 3, 4, 21, 22, 24, 27, 10**9) if k in held] == [0, 2, 3, 24, 27, 10**9]
    assert [k for k, unsure in held.items() if unsure] == [2, 26, 27]
    assert ids == sorted(held), "in key order"


@pytest.mark.parametrize("key_type", [pa.int64(), pa.int32(), pa.timestamp("us")], ids=str)
def test_the_batches_of_a_full_send_fold_by_one_sort_as_the_general_fold_does(
    key_type: pa.DataType,
) -> None:
    rng = np.random.default_rng(7)
    ids = rng.permutation(40_000)
    parts = [
        (False, entries(ids[i : i + 4_000], name=f"b{i}", key_type=key_type))
        for i in range(0, len(ids), 4_000)
    ]
    gone = digests.gone_entries(rows([40_001, 40_002], key_type=key_type), KEY)
    parts.append((False, gone))
    general = digests._fold(parts, KEY)

    disjoint = fold_disjoint(
        parts,
        KEY,
        hash_column=digests.HASH,
        gone_column=digests.GONE,
        unsure_column=digests.UNSURE,
    )

    assert disjoint is not None
    assert disjoint.to_pydict() == general.to_pydict()
    assert disjoint.num_rows == 40_000 and disjoint.schema.field("id").type == key_type
    assert digests.effective(parts, KEY).to_pydict() == general.to_pydict()
    # a key named twice, or a reservation: the general fold decides
    again = (False, entries([5], name="again", key_type=key_type))
    for extra in (again, (True, entries([40_003], key_type=key_type))):
        assert (
            fold_disjoint(
                [*parts, extra],
                KEY,
                hash_column=digests.HASH,
                gone_column=digests.GONE,
                unsure_column=digests.UNSURE,
            )
            is None
        )
        assert digests.effective([*parts, extra], KEY).num_rows >= 40_000


def test_files_read_by_duckdb_hash_as_the_rows_sent_whatever_the_types(
    sqlite_catalog: Catalog,
) -> None:
    types = [
        IntegerType(),
        DoubleType(),
        DecimalType(10, 2),
        DecimalType(38, 6),
        DateType(),
        TimestampType(),
        TimestamptzType(),
        BooleanType(),
        BinaryType(),
        UUIDType(),
        StringType(),
    ]
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        *(NestedField(i + 2, f"c{i}", t, required=False) for i, t in enumerate(types)),
    )
    table = sqlite_catalog.create_table("gold.typed", schema=schema)
    arrow = table.schema().as_arrow()
    n = 50
    moment = dt.datetime(2026, 3, 1, 12, 30, 15, 123456)
    values = {
        "id": list(range(n)),
        "c0": [i - 25 for i in range(n)],
        "c1": [i / 7 if i % 9 else None for i in range(n)],
        "c2": [decimal.Decimal(i) / 4 for i in range(n)],
        "c3": [decimal.Decimal(i) * 10**20 + decimal.Decimal("0.000001") for i in range(n)],
        "c4": [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(n)],
        "c5": [moment + dt.timedelta(seconds=i) for i in range(n)],
        "c6": [(moment + dt.timedelta(minutes=i)).replace(tzinfo=dt.UTC) for i in range(n)],
        "c7": [i % 2 == 0 for i in range(n)],
        "c8": [bytes([i, 0, 255]) for i in range(n)],
        "c9": [uuid.UUID(int=(0xF0 << 120) | i).bytes for i in range(n)],
        "c10": [f"é{i}" if i % 5 else None for i in range(n)],
    }
    for part in (slice(0, 25), slice(25, n)):  # two data files
        table.append(pa.table({k: v[part] for k, v in values.items()}, schema=arrow))
    columns = digests.hashed_columns(table.schema().column_names, KEY, None)
    # What the cycle keeps: the entries of the rows as they were sent.
    sent_rows = pa.concat_tables(
        pa.Table.from_batches([b]) for b in capture(table, from_snapshot=None, key=KEY).batches()
    ).drop_columns([OP_COLUMN])
    digest = digests.effective([(False, digests.entries(sent_rows, KEY, columns))], KEY)

    unchanged = digests.compare(span(table), columns, digest, reason="")
    table.delete(In("id", [3]))
    edited = pa.table({k: v[7:8] for k, v in values.items()}, schema=arrow)
    c3 = pa.array([decimal.Decimal("-1.5")], arrow.field("c3").type)
    edited = edited.set_column(4, arrow.field("c3"), c3)
    table.upsert(edited, join_cols=["id"])
    table.append(pa.table({**{k: v[20:21] for k, v in values.items()}, "id": [100]}, arrow))

    changed = digests.compare(span(table), columns, digest, reason="")

    assert (unchanged.counts.total, unchanged.counts.invalid) == (0, 0)
    assert (changed.counts.inserted, changed.counts.updated, changed.counts.deleted) == (1, 1, 1)
    # The rows sent are the table's, value for value and type for type.
    out = span(table).out
    sent = pa.concat_tables(pa.Table.from_batches([b], out) for b in changed.batches())
    sent = sent.filter(pc.not_equal(sent[OP_COLUMN], "delete")).drop_columns([OP_COLUMN])
    expected = uuids_as_text(table.scan(row_filter=In("id", [7, 100])).to_arrow())
    assert sent.sort_by("id").to_pylist() == expected.sort_by("id").to_pylist()
    assert sent.schema == pa.schema(list(out)[:-1])


def test_files_duckdb_cannot_read_as_they_are_give_the_same_change_set(
    sqlite_catalog: Catalog,
) -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType(), required=False),
    )
    table = sqlite_catalog.create_table("gold.renamed", schema=schema)
    for start in (0, 50, 100):
        table.append(rows(range(start, start + 50)))
    digest = digests.effective([(False, entries(range(150)))], KEY)
    # Files written before keep the old column name (100-149 are never rewritten).
    with table.update_schema() as update:
        update.rename_column("name", "label")
    renamed = pa.schema(
        [pa.field("id", pa.int64(), nullable=False), pa.field("label", pa.string())]
    )
    table.delete(In("id", [5, 60]))
    table.append(pa.table({"id": [7, 200], "label": ["changed", "new"]}, renamed).slice(1))
    table.upsert(pa.table({"id": [7], "label": ["changed"]}, renamed), join_cols=["id"])

    cs = digests.compare(span(table), ("id", "label"), digest, reason="expired")

    assert (cs.counts.inserted, cs.counts.updated, cs.counts.deleted) == (1, 1, 2)
    assert sorted((r[OP_COLUMN], r["id"], r["label"]) for r in change_rows(cs)) == [
        ("delete", 5, None),
        ("delete", 60, None),
        ("insert", 200, "new"),
        ("update", 7, "changed"),
    ]


def test_a_column_named_like_duckdbs_own_is_read_as_it_is(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "file_row_number", StringType(), required=False),
        NestedField(3, "filename", StringType(), required=False),
    )
    table = sqlite_catalog.create_table("gold.clash", schema=schema)
    arrow = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("file_row_number", pa.string()),
            pa.field("filename", pa.string()),
        ]
    )

    def clash(ids: range, tag: str) -> pa.Table:
        return pa.table(
            {"id": list(ids), "file_row_number": [tag] * len(ids), "filename": [tag] * len(ids)},
            arrow,
        )

    table.append(clash(range(20), "a"))
    table.append(clash(range(20, 40), "a"))
    columns = ("id", "file_row_number", "filename")
    digest = digests.effective([(False, digests.entries(clash(range(40), "a"), KEY, columns))], KEY)
    table.upsert(clash(range(5, 7), "b"), join_cols=["id"])

    cs = digests.compare(span(table), columns, digest, reason="expired")

    assert (cs.counts.inserted, cs.counts.updated, cs.counts.deleted) == (0, 2, 0)
    assert sorted((r["id"], r["file_row_number"], r["filename"]) for r in change_rows(cs)) == [
        (5, "b", "b"),
        (6, "b", "b"),
    ]
