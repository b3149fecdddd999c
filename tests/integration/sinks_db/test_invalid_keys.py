"""A key the table holds more than once is never sent, on every plan: an append that
adds such keys, then a full resync, leave the database holding the same rows.

The rule (README, "Invalid rows"): the destination keeps what it last received for the
key (no update, and no delete in mirror mode) until one row holds it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from floe_egress.config.models import SyncMode
from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.sinks_db.conftest import Db

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

MAPPING = {"customer_id": "external_id", "email": "email", "plan": "plan_tier"}


@pytest.fixture(params=["mirror", "upsert"])
async def runtime(
    request: pytest.FixtureRequest, world: World, server_db: Db, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("APP_DB_URL", server_db.url)
    config = {k: v for k, v in server_db.config.items() if k != "credentials"}
    mode: SyncMode = request.param
    loaded = world.load(
        [
            {
                "name": "app_db",
                "source_table": "gold.customers",
                "mode": mode,
                "sink_type": server_db.kind,
                "sink_config": {"credentials": "${env:APP_DB_URL}", **config},
                "field_mapping": MAPPING,
            }
        ]
    )
    built = Runtime(loaded.spec)
    yield built
    await built.close()


def stored(db: Db) -> dict[int, tuple[str, str]]:
    rows = db.rows(order=("external_id",))
    return {r["external_id"]: (r["email"], r["plan_tier"]) for r in rows}


async def test_an_append_of_duplicate_keys_and_a_later_full_resync_agree(
    world: World, runtime: Runtime, server_db: Db
) -> None:
    dest = runtime.spec.ingestion.destinations[0]
    world.table.append(customers(initial_rows(5)))
    assert (await run_cycle(runtime, dest)).inserted == 5
    before = stored(server_db)

    # 3 is already in the table (in the file the first sync read); 7 comes twice
    world.reload().append(
        customers(
            [
                (3, "three-again@example.com", "pro"),
                (6, "six@example.com", "free"),
                (7, "seven-a@example.com", "free"),
                (7, "seven-b@example.com", "team"),
            ]
        )
    )
    appended = await run_cycle(runtime, dest)
    assert (appended.plan, appended.status) == ("append", "ok")
    counts: tuple[Any, ...] = (appended.inserted, appended.updated, appended.deleted)
    assert (*counts, appended.invalid) == (1, 0, 0, 4)
    assert [(s["key"], s["rows"]) for s in appended.invalid_sample] == [
        ({"customer_id": 3}, 2),
        ({"customer_id": 7}, 2),
    ]
    expected = {**before, 6: ("six@example.com", "free")}
    assert stored(server_db) == expected, "3 keeps what it had, 7 is never sent"

    runtime.store.request_resync("app_db", None)
    full = await run_cycle(runtime, dest)
    assert full.plan == "full"
    # Every valid row again; the digest knows the destination holds them: updates.
    assert (full.inserted, full.updated, full.deleted, full.invalid) == (0, 5, 0, 4)
    assert full.invalid_sample == appended.invalid_sample
    assert stored(server_db) == expected, "a full resync neither sends nor deletes them"
    last = runtime.store.last_run("app_db")
    assert last is not None and last.invalid_sample == tuple(full.invalid_sample)
