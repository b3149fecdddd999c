"""The sync cycle into a database: Iceberg table -> change set -> dlt -> table, end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from floe_egress.sinks.database.sink import DatabaseSink
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.sinks_db.conftest import Db

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

MAPPING = {"customer_id": "external_id", "email": "email", "plan": "plan_tier"}


@pytest.fixture
async def runtime(
    world: World, server_db: Db, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("APP_DB_URL", server_db.url)
    config = {k: v for k, v in server_db.config.items() if k != "credentials"}
    loaded = world.load(
        [
            {
                "name": "app_db_customers",
                "source_table": "gold.customers",
                "mode": "mirror",
                "sink_type": server_db.kind,
                "sink_config": {"credentials": "${env:APP_DB_URL}", **config},
                "field_mapping": MAPPING,
                "batch_size": 10,
            }
        ]
    )
    built = Runtime(loaded.spec)
    yield built
    await built.close()


def table_rows(world: World) -> list[dict[str, Any]]:
    return [
        {"external_id": k, "email": r["email"], "plan_tier": r["plan"], "_floe_deleted": False}
        for k, r in sorted(world.rows().items())
    ]


async def test_a_mirror_destination_equals_the_table_after_each_cycle(
    world: World, runtime: Runtime, server_db: Db
) -> None:
    dest = runtime.spec.ingestion.destinations[0]
    world.table.append(customers(initial_rows(25)))
    first = await run_cycle(runtime, dest)
    assert (first.status, first.plan, first.inserted) == ("ok", "full", 25)
    assert server_db.rows(order=("external_id",)) == table_rows(world)
    sink = next(iter(runtime._sinks.values()))
    assert isinstance(sink, DatabaseSink)
    # the cycle hands the sink all 25 rows at once; batch_size is rows per dlt run
    assert [(run.disposition, run.rows) for run in sink.runs] == [("append", 10)] * 2 + [
        ("append", 5)
    ]

    world.table.upsert(
        customers([(3, "three@example.com", "team"), (99, "new@example.com", "pro")]),
        join_cols=["customer_id"],
    )
    world.reload().delete("customer_id = 7")
    second = await run_cycle(runtime, dest)
    assert (second.inserted, second.updated, second.deleted, second.failed) == (1, 1, 1, 0)
    assert server_db.rows(order=("external_id",)) == table_rows(world)

    third = await run_cycle(runtime, dest)
    assert third.status == "noop"
