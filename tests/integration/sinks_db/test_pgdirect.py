"""PostgreSQL steady-state writes through the driver (pgdirect.py), against dlt's.

Each test writes the same batches through two sinks into two schemas of one database:
one as built (after the initial load, writes go through the driver), one forced through
dlt. The tables must come out the same, value for value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.config.models import SyncMode
from floe_egress.sinks.database.frames import SYNCED_AT_COLUMN
from floe_egress.sinks.database.sink import DatabaseSink
from tests.integration.sinks_db.conftest import TABLE, Db, SinkFactory, changes, send

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("active", pa.bool_()),
        pa.field("seen_at", pa.timestamp("us", tz="UTC")),
        pa.field("born", pa.date32()),
        pa.field("price", pa.decimal128(12, 2)),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("address", pa.struct([("city", pa.string()), ("zip", pa.int32())])),
        pa.field("blob", pa.binary()),
    ]
)
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def row(i: int, op: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": i,
        "name": f"name {i}",
        "score": i * 1.5,
        "active": i % 2 == 0,
        "seen_at": T0 + dt.timedelta(seconds=i),
        "born": dt.date(1990, 1, 1) + dt.timedelta(days=i),
        "price": decimal.Decimal(f"{i}.25"),
        "tags": [f"t{i}", "x"],
        "address": {"city": f"city {i}", "zip": 1000 + i},
        "blob": bytes([i, 0, 255]),
        "op": op,
    }
    return {**base, **values}


INITIAL = [row(i, "insert") for i in range(1, 7)]
STEADY = [
    # values CSV and COPY make hard: empty vs NULL, quotes, commas, newlines, NaN, inf
    row(1, "update", name="", score=math.nan, tags=[], address=None),
    row(2, "update", name='say "hi", then\nleave', score=math.inf, blob=b"", price=None),
    row(3, "delete"),
    row(4, "update", name=None, score=-0.0, active=None, seen_at=None, born=None),
    row(7, "insert", name="ünïcødé ✓", tags=None, address={"city": "", "zip": None}),
    row(8, "delete"),  # a key the table never held
]


def comparable(db: Db, mode: SyncMode) -> list[dict[str, Any]]:
    order = ("id", "_floe_snapshot_id") if mode == "append" else ("id",)
    rows = db.rows(order=order)
    for r in rows:
        r.pop(SYNCED_AT_COLUMN, None)  # the time of the write
        for k, v in list(r.items()):
            if isinstance(v, float) and math.isnan(v):
                r[k] = "NaN"  # NaN != NaN
    return rows


def pair(
    pg: Db, make_sink: SinkFactory, mode: SyncMode, **config: Any
) -> tuple[Db, Db, list[DatabaseSink]]:
    direct_db = Db("postgres", {**pg.config, "dataset": "direct_side"}, url=pg.url)
    dlt_db = Db("postgres", {**pg.config, "dataset": "dlt_side"}, url=pg.url)
    direct = make_sink(direct_db, mode, destination="direct", **config)
    through_dlt = make_sink(dlt_db, mode, destination="viadlt", **config)
    through_dlt.db.direct = None
    return direct_db, dlt_db, [direct, through_dlt]


@pytest.mark.parametrize("mode", ["upsert", "mirror", "update", "insert", "append"])
async def test_a_direct_write_leaves_the_table_dlt_would(
    pg: Db, make_sink: SinkFactory, mode: SyncMode
) -> None:
    direct_db, dlt_db, sinks = pair(pg, make_sink, mode)
    reports = []
    for sink, db in zip(sinks, (direct_db, dlt_db), strict=True):
        # update mode sends no row to a missing table: the rows come from an upsert
        first = make_sink(db, "upsert", destination=f"{sink.name}_0") if mode == "update" else sink
        await send(first, changes(INITIAL, SCHEMA), 1)
        reports.append(await send(sink, changes(STEADY, SCHEMA), 2))
    direct, _ = sinks
    written = [r for r in direct.runs if r.rows]
    assert written[-1].direct, [(r.disposition, r.direct) for r in direct.runs]
    assert not any(r.direct for r in sinks[1].runs)
    assert reports[0].delivered == reports[1].delivered
    assert reports[0].failed == reports[1].failed == []
    got = comparable(direct_db, mode)
    assert got == comparable(dlt_db, mode)
    if mode == "mirror":
        assert [r["id"] for r in got] == [1, 2, 4, 5, 6, 7]
        assert (got[0]["name"], got[0]["tags"], got[0]["address"]) == ("", [], None)
        assert got[1]["name"] == 'say "hi", then\nleave' and got[1]["blob"] == b""
        assert got[2]["name"] is None and got[5]["address"] == {"city": "", "zip": None}


async def test_a_new_column_goes_through_dlt_then_writes_are_direct_again(
    pg: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(pg, "upsert")
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    assert sink.runs[-1].direct
    await send(sink, changes([{"id": 2, "name": "c", "plan": "pro", "op": "insert"}]), 3)
    assert not sink.runs[-1].direct  # dlt adds the column
    await send(sink, changes([{"id": 1, "name": "d", "plan": "free", "op": "update"}]), 4)
    assert sink.runs[-1].direct
    assert pg.rows() == [
        {"id": 1, "name": "d", "plan": "free"},
        {"id": 2, "name": "c", "plan": "pro"},
    ]


async def test_without_the_key_index_merges_go_through_dlt(pg: Db, make_sink: SinkFactory) -> None:
    sink = make_sink(pg, "upsert", key_index=False)
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    assert not sink.runs[-1].direct
    assert pg.key_indexes() == []
    assert pg.rows() == [{"id": 1, "name": "b"}]


async def test_a_connection_the_server_ended_between_writes_is_replaced(
    pg: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(pg, "upsert")
    await send(sink, changes([{"id": 1, "name": "a", "op": "insert"}]), 1)
    await send(sink, changes([{"id": 1, "name": "b", "op": "update"}]), 2)
    direct = sink.db.direct
    assert direct is not None and direct._conn is not None
    pid = direct._conn.get_backend_pid()
    pg.execute(f"SELECT pg_terminate_backend({pid})")
    await send(sink, changes([{"id": 1, "name": "c", "op": "update"}]), 3)
    assert sink.runs[-1].direct and direct._conn.get_backend_pid() != pid
    assert pg.rows() == [{"id": 1, "name": "c"}]


async def test_a_row_the_table_refuses_is_isolated_and_the_rest_land(
    pg: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(pg, "mirror")
    rows = [{"id": i, "score": i, "op": "insert"} for i in range(1, 5)]
    await send(sink, changes(rows), 1)
    pg.execute(f"ALTER TABLE {pg.qualified()} ADD CONSTRAINT positive CHECK (score >= 0)")
    steady = [
        {"id": 1, "score": 10, "op": "update"},
        {"id": 2, "score": -1, "op": "update"},
        {"id": 3, "score": None, "op": "delete"},
        {"id": 5, "score": 50, "op": "insert"},
    ]
    report = await send(sink, changes(steady), 2)
    assert [(f.key, f.op) for f in report.failed] == [({"id": 2}, "update")]
    assert "positive" in report.failed[0].reason
    assert all(r.direct for r in list(sink.runs)[1:])
    scores = {r["id"]: r["score"] for r in pg.rows()}
    assert scores == {1: 10, 2: 2, 4: 4, 5: 50}
    assert TABLE in pg.qualified()
