"""Rows holding a value the database cannot store fail alone; the rest is delivered.

A real Iceberg table (tests/fixtures/poison.py) with NUL characters, NaN, infinity and a
timestamp past year 9999, in top-level and nested columns, synced by whole cycles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from floe_egress.sinks.database import failures
from tests.fixtures import poison
from tests.fixtures.world import World
from tests.integration.sinks_db.conftest import (
    Db,
    SinkFactory,
    changes,
    make_db,
    parse_json,
    send,
)

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

NUL = "text holds a NUL byte (0x00), which PostgreSQL cannot store"
# What each database refuses (row id -> the end of its reason), from refusals.py.
REFUSED: dict[str, dict[int, str]] = {
    "postgres": {
        **dict.fromkeys(poison.NUL, NUL),
        **dict.fromkeys(
            poison.NOT_FINITE,
            "NaN or an infinite number inside a nested value, which JSON (PostgreSQL jsonb) "
            "cannot hold",
        ),
        8: "a date or timestamp outside years 1-9999 inside a nested value, which its JSON "
        "text cannot carry",
    },
    "mysql": {
        **dict.fromkeys(
            poison.NOT_FINITE, "NaN or an infinite number, which MariaDB/MySQL cannot store"
        ),
        8: "a date or timestamp outside years 1-9999, which MariaDB/MySQL cannot store",
    },
    "sqlite": {
        8: "a date or timestamp outside years 1-9999, which dlt's SQLite loader cannot convert"
    },
    "duckdb": {},
}


@pytest.fixture
async def runtime(world: World, db: Db, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    poison.create(world.catalog)
    config = dict(db.config)
    if "credentials" in config:
        monkeypatch.setenv("APP_DB_URL", db.url)
        config["credentials"] = "${env:APP_DB_URL}"
    loaded = world.load(
        [
            {
                "name": "app_db",
                "source_table": poison.TABLE,
                "mode": "mirror",
                "sink_type": db.kind,
                "sink_config": config,
                "max_attempts": 2,
            }
        ]
    )
    built = Runtime(loaded.spec)
    yield built
    await built.close()


def failed_reasons(runtime: Runtime) -> dict[int, str]:
    return {json.loads(r.key_json)["id"]: r.reason for r in runtime.store.failed_rows("app_db")}


async def test_rows_a_database_cannot_store_fail_alone_and_the_rest_arrives(
    world: World, runtime: Runtime, db: Db
) -> None:
    dest = runtime.spec.ingestion.destinations[0]
    refused = REFUSED[db.kind]
    delivered = sorted(set(range(1, 11)) - set(refused))

    first = await run_cycle(runtime, dest)
    assert (first.status, first.error) == ("ok", None)
    assert (first.inserted, first.failed) == (len(delivered), len(refused))
    assert failed_reasons(runtime) == {
        i: f"column {poison.POISON[i]}: {why}" for i, why in refused.items()
    }
    stored = {r["id"]: r for r in db.rows()}
    assert sorted(stored) == delivered
    assert stored[1]["notes"] == "note 1"
    if 2 in stored:  # a NUL character the database takes is stored as it is
        assert stored[2]["notes"] == "bad\x00note"
        assert parse_json(stored[4]["tags"]) == ["ok", "bad\x00tag"]
    table = world.catalog.load_table(poison.TABLE)
    checkpoint = runtime.store.get_checkpoint("app_db")
    assert checkpoint is not None
    assert checkpoint.snapshot_id == table.current_snapshot().snapshot_id  # type: ignore[union-attr]

    # Nothing new: only the failed rows are tried again, and fail again.
    second = await run_cycle(runtime, dest)
    assert (second.inserted, second.updated, second.deleted) == (0, 0, 0)
    assert (second.retried, second.failed) == (len(refused), len(refused))
    assert sorted(r["id"] for r in db.rows()) == delivered
    rows = runtime.store.failed_rows("app_db")
    assert all(r.attempts == 2 and r.parked for r in rows)

    # max_attempts reached: parked, no longer tried.
    third = await run_cycle(runtime, dest)
    assert (third.status, third.retried, third.failed) == ("noop", 0, 0)


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        # what the databases answer when a refused value reaches them anyway
        ("postgres", {"name": "a\x00b"}, 'invalid byte sequence for encoding "UTF8": 0x00'),
        ("postgres", {"tags": ["a\x00b"]}, "unsupported Unicode escape sequence"),
        ("postgres", {"scores": [math.nan]}, "invalid input syntax for type json"),
        ("mysql", {"ratio": math.nan}, "nan can not be used with MySQL"),
        ("mysql", {"scores": [math.inf]}, "CONSTRAINT `customers.scores` failed"),
    ],
)
async def test_values_the_database_refuses_anyway_are_isolated_as_row_errors(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_sink: SinkFactory,
    kind: str,
    value: dict[str, Any],
    reason: str,
) -> None:
    """The split-and-retry isolation still catches what the database refuses, should a
    value get past refusals.py (here: with its rules switched off)."""
    db = make_db(request, kind, tmp_path)
    sink = make_sink(db, "upsert")
    sink.target = dataclasses.replace(sink.target, refuses=())
    schema = pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("name", pa.string()),
            pa.field("ratio", pa.float64()),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("scores", pa.list_(pa.float64())),
        ]
    )
    good = {"name": "n", "ratio": 0.5, "tags": ["t"], "scores": [1.0]}
    rows = [{"id": i, **good, "op": "insert"} for i in range(4)]
    rows[2].update(value)
    report = await send(sink, changes(rows, schema), 1)
    assert [(f.key, f.op) for f in report.failed] == [({"id": 2}, "insert")]
    assert reason in report.failed[0].reason
    assert report.delivered == {"insert": 3}
    assert [r["id"] for r in db.rows()] == [0, 1, 3]


@pytest.mark.parametrize(
    "message",
    [
        'invalid byte sequence for encoding "UTF8": 0x00',
        "unsupported Unicode escape sequence",
        'column "nan" does not exist',
        'column "-inf" does not exist',
        "nan can not be used with MySQL",
        "Object of type datetime is not JSON serializable",
        "date value out of range",
    ],
)
def test_the_database_words_for_a_value_it_cannot_store_are_row_errors(message: str) -> None:
    error = RuntimeError(f"Job for customers.insert failed: {message}")
    assert failures.is_row_error(error)
    assert not failures.is_transient(error)


async def test_nan_and_infinity_reach_postgresql_next_to_an_empty_string(
    pg: Db, make_sink: SinkFactory
) -> None:
    """An empty string makes the load an INSERT ... VALUES (dlt's COPY would read "" as
    NULL), where dlt writes a float as Python prints it: `nan` would be a column name."""
    sink = make_sink(pg, "upsert")
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("ratio", pa.float64())])
    rows = [
        {"id": 1, "name": "", "ratio": math.nan, "op": "insert"},
        {"id": 2, "name": "b", "ratio": math.inf, "op": "insert"},
        {"id": 3, "name": "c", "ratio": 0.5, "op": "insert"},
    ]
    report = await send(sink, changes(rows, schema), 1)
    assert (report.delivered, report.failed) == ({"insert": 3}, [])
    stored = pg.rows()
    assert [r["name"] for r in stored] == ["", "b", "c"]
    assert math.isnan(stored[0]["ratio"]) and stored[1]["ratio"] == math.inf
    assert pg.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'activation' "
        "AND table_name = 'customers' AND column_name = 'ratio'"
    ) == [("double precision",)]


async def test_a_reason_names_the_column_of_the_table_when_the_field_is_renamed(
    make_sink: SinkFactory, pg: Db
) -> None:
    sink = make_sink(pg, "upsert", mapping={"id": "id", "notes": "remark"})
    batch = changes(
        [
            {"id": 1, "notes": "a\x00", "op": "insert"},
            {"id": 2, "notes": "fine", "op": "insert"},
        ]
    )
    report = await send(sink, batch, 1)
    assert [(f.key, f.reason) for f in report.failed] == [({"id": 1}, f"column notes: {NUL}")]
    assert pg.rows() == [{"id": 2, "remark": "fine"}]


@pytest.mark.parametrize("kind", ["mysql", "sqlite"])
async def test_dates_timestamps_decimals_and_binary_inside_a_struct_reach_the_json_column(
    request: pytest.FixtureRequest, tmp_path: Path, make_sink: SinkFactory, kind: str
) -> None:
    """dlt's SQLAlchemy loader writes JSON columns with `json`, which knows none of them:
    every such row used to fail the batch ("Object of type datetime is not JSON
    serializable")."""
    db = make_db(request, kind, tmp_path)
    sink = make_sink(db, "upsert")
    inner = pa.struct(
        [
            ("day", pa.date32()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("amount", pa.decimal128(6, 2)),
            ("blob", pa.binary()),
        ]
    )
    schema = pa.schema([("id", pa.int64()), ("detail", inner)])
    value = {
        "day": dt.date(2026, 3, 1),
        "at": dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC),
        "amount": decimal.Decimal("12.50"),
        "blob": b"\x00\x01",
    }
    rows = [{"id": 1, "detail": value, "op": "insert"}, {"id": 2, "detail": None, "op": "insert"}]
    report = await send(sink, changes(rows, schema), 1)
    assert (report.delivered, report.failed) == ({"insert": 2}, [])
    stored = db.rows()
    assert parse_json(stored[0]["detail"]) == {
        "day": "2026-03-01",
        "at": "2026-03-01T12:30:00+00:00",
        "amount": "12.50",
        "blob": "AAE=",
    }
    assert stored[1]["detail"] is None
