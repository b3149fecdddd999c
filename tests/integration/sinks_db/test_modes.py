"""Each sync mode on each database: a sequence of change batches, then the whole table.

The last batch is sent twice (at-least-once): the table must not change the second time.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from floe_egress.config.models import SyncMode
from tests.integration.sinks_db.conftest import Db, SinkFactory, changes, send

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

BATCHES = [
    # snapshot 1: the initial load
    [
        {"id": 1, "name": "a", "score": 10, "op": "insert"},
        {"id": 2, "name": "b", "score": 20, "op": "insert"},
        {"id": 3, "name": "c", "score": 30, "op": "insert"},
    ],
    # snapshot 2: key 7 is not in the table yet
    [
        {"id": 2, "name": "B", "score": 21, "op": "update"},
        {"id": 3, "name": None, "score": None, "op": "delete"},
        {"id": 4, "name": "d", "score": 40, "op": "insert"},
        {"id": 7, "name": "g", "score": 70, "op": "update"},
    ],
    # snapshot 3: key 1 inserted again (a resend after a lost checkpoint), key 8 never existed
    [
        {"id": 4, "name": "D", "score": 41, "op": "update"},
        {"id": 5, "name": "e", "score": 50, "op": "insert"},
        {"id": 1, "name": "X", "score": 11, "op": "insert"},
        {"id": 2, "name": None, "score": None, "op": "delete"},
        {"id": 8, "name": None, "score": None, "op": "delete"},
    ],
]


REQUIRED = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("score", pa.int64(), nullable=False),
    ]
)
"""Iceberg required columns arrive non-nullable, yet a delete row has nulls in them."""


def row(id_: int, name: str, score: int, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "name": name, "score": score, **extra}


def live(*rows: tuple[int, str, int], mirror: bool = False) -> list[dict[str, Any]]:
    extra = {"_floe_deleted": False} if mirror else {}
    return [row(*r, **extra) for r in rows]


EXPECTED: dict[str, list[dict[str, Any]]] = {
    "upsert": live(
        (1, "X", 11), (2, "B", 21), (3, "c", 30), (4, "D", 41), (5, "e", 50), (7, "g", 70)
    ),
    "insert": live((1, "a", 10), (2, "b", 20), (3, "c", 30), (4, "d", 40), (5, "e", 50)),
    "mirror": live((1, "X", 11), (4, "D", 41), (5, "e", 50), (7, "g", 70), mirror=True),
}
LAST_DELIVERED: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "upsert": ({"update": 1, "insert": 2}, {"update": 1, "insert": 2}),
    "insert": ({"insert": 1}, {}),
    "mirror": ({"update": 1, "insert": 2, "delete": 2}, {"update": 1, "insert": 2, "delete": 2}),
}


@pytest.mark.parametrize("mode", ["upsert", "insert", "mirror"])
async def test_mode_gives_the_expected_table(
    db: Db, make_sink: SinkFactory, mode: SyncMode
) -> None:
    sink = make_sink(db, mode)
    await sink.check()
    batches = [changes(b, REQUIRED) for b in BATCHES]
    reports = [await send(sink, b, snapshot) for snapshot, b in enumerate(batches, 1)]
    assert db.rows() == EXPECTED[mode]
    resent = await send(sink, batches[-1], len(BATCHES))
    assert db.rows() == EXPECTED[mode]
    assert (reports[-1].delivered, resent.delivered) == LAST_DELIVERED[mode]
    assert [r.failed for r in [*reports, resent]] == [[]] * 4
    assert resent.idempotency_keys == reports[-1].idempotency_keys
    assert resent.checksum == reports[-1].checksum != reports[-2].checksum
    assert resent.checksum.startswith("sha256:") and resent.bytes_transmitted > 0
    assert db.key_indexes() == ([] if db.kind == "duckdb" else ["customers__floe_key"])


def create_customers(db: Db) -> None:
    """A table the application owns, with NOT NULL columns, before any sync."""
    if db.kind == "postgres":
        db.execute('CREATE SCHEMA IF NOT EXISTS "activation"')
    key = "BIGINT NOT NULL PRIMARY KEY"
    text = "VARCHAR(50) NOT NULL"
    db.execute(f"CREATE TABLE {db.qualified()} (id {key}, name {text}, score BIGINT NOT NULL)")
    db.execute(
        f"INSERT INTO {db.qualified()} (id, name, score) VALUES (1, 'a', 10), (2, 'b', 20), "
        "(3, 'c', 30)"
    )


async def test_update_mode_changes_only_rows_the_table_has(db: Db, make_sink: SinkFactory) -> None:
    create_customers(db)
    sink = make_sink(db, "update")
    reports = [await send(sink, changes(b), snapshot) for snapshot, b in enumerate(BATCHES, 1)]
    expected = live((1, "a", 10), (2, "B", 21), (3, "c", 30))
    assert db.rows() == expected
    assert [r.delivered for r in reports] == [{}, {"update": 1}, {}]
    await send(sink, changes(BATCHES[1]), 2)
    assert db.rows() == expected


async def test_mirror_deletes_never_write_nulls_into_not_null_columns(
    db: Db, make_sink: SinkFactory
) -> None:
    create_customers(db)
    sink = make_sink(db, "mirror")
    deletes = [
        {"id": 3, "name": None, "score": None, "op": "delete"},
        {"id": 9, "name": None, "score": None, "op": "delete"},
        {"id": 2, "name": "B", "score": 21, "op": "update"},
    ]
    report = await send(sink, changes(deletes), 5)
    assert report.delivered == {"delete": 2, "update": 1}
    # dlt adds its hard-delete column to the application's table: null on untouched rows
    assert db.rows() == [
        row(1, "a", 10, _floe_deleted=None),
        row(2, "B", 21, _floe_deleted=False),
    ]


def events(db: Db) -> list[dict[str, Any]]:
    rows = db.rows(order=("_floe_snapshot_id", "id"))
    for r in rows:
        assert r.pop("_floe_synced_at") is not None
    return rows


def event(snapshot: int, op: str, id_: int, name: str | None, score: int | None) -> dict[str, Any]:
    return {"id": id_, "name": name, "score": score, "_floe_op": op, "_floe_snapshot_id": snapshot}


async def test_append_mode_keeps_every_change_as_an_event(db: Db, make_sink: SinkFactory) -> None:
    sink = make_sink(db, "append")
    for snapshot, batch in enumerate(BATCHES, 1):
        await send(sink, changes(batch), snapshot)
    resent = await send(sink, changes(BATCHES[-1]), 3)
    expected = [
        event(snapshot, r["op"], r["id"], r["name"], r["score"])
        for snapshot, batch in enumerate(BATCHES, 1)
        for r in sorted(batch, key=lambda r: r["id"])
    ]
    assert events(db) == expected
    assert resent.delivered == {"update": 1, "insert": 2, "delete": 2}
