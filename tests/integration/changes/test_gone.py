"""The keys a destination was sent that a snapshot no longer has, on real tables: the
anti-join behind the deletes of a full resync in mirror mode."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import In
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from floe_egress.changes import OP_COLUMN, capture, gone_deletes
from floe_egress.changes.keys import key_json

KEY = ("id",)


def ids(*values: int) -> list[str]:
    return [key_json({"id": v}) for v in values]


@pytest.fixture
def table(sqlite_catalog: Catalog) -> Table:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType(), required=False),
    )
    tbl = sqlite_catalog.create_table("gold.items", schema=schema)
    arrow = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])
    for start in (1, 6):  # two data files
        batch = list(range(start, start + 5))
        tbl.append(pa.table({"id": batch, "name": [f"n{i}" for i in batch]}, arrow))
    return tbl


def head(table: Table) -> int:
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


def test_sent_keys_the_snapshot_lacks_become_key_only_deletes(table: Table) -> None:
    table.delete(delete_filter=In("id", [3, 4, 7]))
    schema = capture(table, from_snapshot=None, key=KEY).schema
    sent = [ids(1, 2, 3, 4, 5, 6), ids(7, 8, 9, 10, 11, 12)]  # two ledger batches

    deletes = gone_deletes(table, head(table), KEY, schema, sent=iter(sent), spare=ids(4))

    assert deletes.schema == schema
    # In key JSON order: {"id":11} < {"id":12} < {"id":3} < {"id":7}.
    assert deletes.to_pylist() == [
        {"id": i, "name": None, OP_COLUMN: "delete"} for i in (11, 12, 3, 7)
    ]


def test_nothing_gone_is_an_empty_table_with_the_schema(table: Table) -> None:
    schema = capture(table, from_snapshot=None, key=KEY).schema

    deletes = gone_deletes(table, head(table), KEY, schema, sent=[ids(1, 5, 10), []])

    assert deletes.num_rows == 0
    assert deletes.schema == schema


def test_without_a_snapshot_every_sent_key_but_the_spared_is_gone(table: Table) -> None:
    schema = capture(table, from_snapshot=None, key=KEY).schema

    deletes = gone_deletes(table, None, KEY, schema, sent=[ids(1, 2, 3)], spare=ids(2))

    assert deletes.column("id").to_pylist() == [1, 3]
    assert set(deletes.column(OP_COLUMN).to_pylist()) == {"delete"}


def test_a_composite_key_is_matched_on_all_its_columns(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "region", StringType(), required=True),
        NestedField(2, "id", LongType(), required=True),
    )
    table = sqlite_catalog.create_table("gold.regional", schema=schema)
    arrow = pa.schema(
        [pa.field("region", pa.string(), nullable=False), pa.field("id", pa.int64(), False)]
    )
    table.append(pa.table({"region": ["eu", "us"], "id": [1, 1]}, arrow))
    key = ("region", "id")
    out = capture(table, from_snapshot=None, key=key).schema
    sent = [[key_json({"region": r, "id": i}) for r, i in (("eu", 1), ("eu", 2), ("us", 1))]]

    deletes = gone_deletes(table, head(table), key, out, sent=sent)

    assert deletes.to_pylist() == [{"region": "eu", "id": 2, OP_COLUMN: "delete"}]
