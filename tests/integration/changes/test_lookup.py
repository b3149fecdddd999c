"""Reading the current rows of given keys: exact, for any number of keys and key types."""

from __future__ import annotations

import uuid

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType, UUIDType

from floe_egress.changes.lookup import current_rows


def test_many_keys_some_missing_across_files(any_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "region", StringType(), required=True),
        NestedField(2, "id", LongType(), required=True),
        NestedField(3, "v", StringType(), required=False),
    )
    table = any_catalog.create_table("gold.lookup", schema=schema)
    arrow = pa.schema(
        [
            pa.field("region", pa.string(), nullable=False),
            pa.field("id", pa.int64(), nullable=False),
            pa.field("v", pa.string()),
        ]
    )
    for start in range(0, 1000, 250):  # four data files
        ids = list(range(start, start + 250))
        table.append(
            pa.table(
                {
                    "region": ["eu" if i % 2 else "us" for i in ids],
                    "id": ids,
                    "v": [f"v{i}" for i in ids],
                },
                schema=arrow,
            )
        )
    snapshot = table.current_snapshot()
    assert snapshot is not None

    wanted = [{"id": i} for i in range(0, 1200, 4)]  # 300 keys, 50 of them not in the table
    found = current_rows(table, snapshot.snapshot_id, ("id",), wanted)
    assert sorted(found.column("id").to_pylist()) == list(range(0, 1000, 4))

    few = current_rows(table, snapshot.snapshot_id, ("id",), [{"id": 7}, {"id": 5000}])
    assert few.to_pylist() == [{"region": "eu", "id": 7, "v": "v7"}]

    composite = current_rows(
        table,
        snapshot.snapshot_id,
        ("region", "id"),
        [{"region": "eu", "id": 9}, {"region": "us", "id": 9}, {"region": "us", "id": 10}],
    )
    assert sorted(composite.select(["region", "id"]).to_pylist(), key=str) == [
        {"region": "eu", "id": 9},
        {"region": "us", "id": 10},
    ]
    assert current_rows(table, snapshot.snapshot_id, ("id",), []).num_rows == 0


def test_uuid_keys_are_found_whatever_their_bytes(any_catalog: Catalog) -> None:
    """UUIDs whose first byte is above 0x7f sort differently signed and unsigned: none
    may be missed through file statistics."""
    schema = Schema(
        NestedField(1, "id", UUIDType(), required=True),
        NestedField(2, "v", StringType(), required=False),
    )
    table = any_catalog.create_table("gold.uuids", schema=schema)
    ids = [uuid.UUID(int=(b << 120) | n) for b in (0x01, 0x7F, 0x80, 0xFF) for n in range(3)]
    storage = pa.array([u.bytes for u in ids], pa.binary(16))
    table.append(
        pa.table(
            {"id": pa.ExtensionArray.from_storage(pa.uuid(), storage), "v": [str(u) for u in ids]},
            schema=pa.schema(
                [pa.field("id", pa.uuid(), nullable=False), pa.field("v", pa.string())]
            ),
        )
    )
    snapshot = table.current_snapshot()
    assert snapshot is not None
    wanted = [
        {"id": str(ids[0])},
        {"id": str(ids[7])},
        {"id": str(ids[11])},
        {"id": str(uuid.uuid4())},
    ]
    found = current_rows(table, snapshot.snapshot_id, ("id",), wanted)
    assert found.schema.field("id").type == pa.string()
    assert sorted(found.column("id").to_pylist()) == sorted(str(ids[i]) for i in (0, 7, 11))
