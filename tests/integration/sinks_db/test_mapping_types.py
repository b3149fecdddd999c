"""Field mapping, column types and schema evolution on each database."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pytest

from tests.integration.sinks_db.conftest import Db, SinkFactory, changes, parse_json, send

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

UTC = dt.UTC


async def test_field_mapping_renames_selects_and_merges_on_the_renamed_key(
    db: Db, make_sink: SinkFactory
) -> None:
    mapping = {"id": "external_id", "email": "contact_email", "plan": "plan_tier"}
    sink = make_sink(db, "upsert", mapping=mapping)
    first = [
        {"id": 1, "email": "a@x.io", "plan": "free", "ssn": "123", "op": "insert"},
        {"id": 2, "email": "b@x.io", "plan": "pro", "ssn": "456", "op": "insert"},
    ]
    second = [{"id": 2, "email": "b@y.io", "plan": "team", "ssn": "789", "op": "update"}]
    await send(sink, changes(first), 1)
    await send(sink, changes(second), 2)
    assert sorted(db.columns()) == ["contact_email", "external_id", "plan_tier"]
    assert db.rows(order=("external_id",)) == [
        {"external_id": 1, "contact_email": "a@x.io", "plan_tier": "free"},
        {"external_id": 2, "contact_email": "b@y.io", "plan_tier": "team"},
    ]


async def test_a_key_left_out_of_the_mapping_is_kept_under_its_own_name(
    db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(db, "mirror", mapping={"email": "mail"})
    await send(sink, changes([{"id": 1, "email": "a@x.io", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "email": None, "op": "delete"}]), 2)
    assert sorted(db.columns()) == ["_floe_deleted", "id", "mail"]
    assert db.rows() == []


TYPED = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("small", pa.int32()),
        pa.field("ratio", pa.float64()),
        pa.field("amount", pa.decimal128(12, 2)),
        pa.field("active", pa.bool_()),
        pa.field("born", pa.date32()),
        pa.field("seen_at", pa.timestamp("us", tz="UTC")),
        pa.field("name", pa.string()),
        pa.field("blob", pa.binary()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("address", pa.struct([("city", pa.string()), ("zip", pa.int64())])),
    ]
)
SEEN = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
TYPED_ROW: dict[str, Any] = {
    "id": 1,
    "small": -7,
    "ratio": 0.25,
    "amount": decimal.Decimal("1234567890.12"),
    "active": True,
    "born": dt.date(1990, 12, 31),
    "seen_at": SEEN,
    "name": "Zoë ☃",
    "blob": b"\x00\x01\xff",
    "tags": ["vip", "beta"],
    "address": {"city": "Helsinki", "zip": 100},
    "op": "insert",
}
NULL_ROW = {**{f.name: None for f in TYPED}, "id": 2, "op": "insert"}

# What each database gives back for TYPED_ROW, where it differs from the Python value.
READ_BACK: dict[str, dict[str, Any]] = {
    "postgres": {},
    "duckdb": {},
    "mysql": {"active": 1, "seen_at": SEEN.replace(tzinfo=None)},
    "sqlite": {
        "amount": 1234567890.12,
        "active": 1,
        "born": "1990-12-31",
        "seen_at": "2026-03-01 12:30:15.123456",
    },
}
COLUMN_TYPES: dict[str, dict[str, str]] = {
    "postgres": {
        "small": "integer",
        "ratio": "double precision",
        "amount": "numeric(12,2)",
        "active": "boolean",
        "born": "date",
        "seen_at": "timestamp with time zone",
        "name": "character varying",
        "blob": "bytea",
        "tags": "jsonb",
        "address": "jsonb",
    },
    "mysql": {
        "amount": "decimal(12,2)",
        "born": "date",
        "seen_at": "datetime(6)",
        "tags": "longtext",
    },
    "duckdb": {
        "amount": "DECIMAL(12,2)",
        "active": "BOOLEAN",
        "born": "DATE",
        "seen_at": "TIMESTAMP WITH TIME ZONE",
        "tags": "JSON",
    },
    "sqlite": {"born": "DATE", "seen_at": "DATETIME", "tags": "JSON"},
}


def column_types(db: Db) -> dict[str, str]:
    if db.kind == "postgres":
        rows = db.execute(
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns "
            "JOIN pg_attribute ON attrelid = 'activation.customers'::regclass "
            "AND attname = column_name WHERE table_schema = 'activation' "
            "AND table_name = 'customers'"
        )
    elif db.kind == "mysql":
        rows = db.execute(
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = 'customers'"
        )
    elif db.kind == "duckdb":
        rows = db.execute("SELECT column_name, column_type FROM (DESCRIBE main.customers)")
    else:
        rows = [(r[1], r[2]) for r in db.execute("PRAGMA table_info(customers)")]
    return {str(name): str(kind) for name, kind in rows}


async def test_arrow_types_become_proper_columns_and_round_trip(
    db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(db, "upsert")
    await send(sink, changes([TYPED_ROW, NULL_ROW], TYPED), 1)
    types = column_types(db)
    assert {c: types[c] for c in COLUMN_TYPES[db.kind]} == COLUMN_TYPES[db.kind]
    stored, nulls = db.rows()
    stored["tags"], stored["address"] = parse_json(stored["tags"]), parse_json(stored["address"])
    expected = {k: v for k, v in TYPED_ROW.items() if k != "op"} | READ_BACK[db.kind]
    assert stored == expected
    assert nulls == dict.fromkeys(expected) | {"id": 2}


async def test_a_column_added_at_the_source_is_added_to_the_table(
    db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(db, "upsert")
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(
        sink,
        changes(
            [
                {"id": 2, "name": "b", "tier": "gold", "op": "insert"},
                {"id": 1, "name": "A", "tier": "free", "op": "update"},
            ]
        ),
        2,
    )
    await send(sink, changes([{"id": 3, "name": "c", "tier": None, "op": "insert"}]), 3)
    assert db.rows() == [
        {"id": 1, "name": "A", "tier": "free"},
        {"id": 2, "name": "b", "tier": "gold"},
        {"id": 3, "name": "c", "tier": None},
    ]


async def test_empty_strings_stay_empty_and_nulls_stay_null(db: Db, make_sink: SinkFactory) -> None:
    sink = make_sink(db, "upsert")
    first = [
        {"id": 1, "name": "", "note": None, "op": "insert"},
        {"id": 2, "name": 'a,"b"\nc', "note": "n", "op": "insert"},
    ]
    await send(sink, changes(first), 1)
    await send(sink, changes([{"id": 2, "name": "", "note": None, "op": "update"}]), 2)
    assert db.rows() == [
        {"id": 1, "name": "", "note": None},
        {"id": 2, "name": "", "note": None},
    ]
