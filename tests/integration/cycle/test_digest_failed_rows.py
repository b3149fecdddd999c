"""Rows a destination refuses or skips, and the digest: a refused row is not in the
digest as delivered, so a cycle that compares with the digest (A expired) sends it
again; a row parked after max_attempts stays parked, by a digest comparison too; a row
a database skips (insert mode: a key it holds; update mode: a key it lacks) is noted as
sent, which a later comparison gets right all the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from floe_egress.config.models import SyncMode
from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.digest_dests import PostgresDest, RestDest, record
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cycle.test_digest_modes import expire_all_but_current, upsert

MODES: list[SyncMode] = ["upsert", "insert", "mirror", "update"]
"""The modes whose records the API checks (an append event is taken as it comes)."""
BAD = 5


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


async def sync(
    runtimes: list[Runtime],
    world: World,
    dest: RestDest | PostgresDest,
    mode: SyncMode,
    **overrides: Any,
) -> CycleResult:
    loaded = world.load([dest.config(mode, **overrides)])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    result = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])
    assert result.status in ("ok", "noop"), result.error
    return result


def sent_keys(api: FakeRestApi, since: int) -> list[int]:
    return sorted(
        rec["external_id"]
        for r in api.log[since:]
        if r.method == "POST"
        for rec in r.json()["records"]
    )


def with_a_bad_row(world: World, dest: RestDest, mode: SyncMode) -> None:
    """20 rows, row 5 with an email the API refuses; an update-mode API holds them all
    (with a good email) of its own."""
    rows = initial_rows(20)
    rows[BAD - 1] = (BAD, "no-address", "pro")
    world.table.append(customers(rows))
    if mode == "update":
        own = {k: record(r) for k, r in world.rows().items()}
        own[BAD] = (BAD, "old@example.com", "pro")
        dest.preload(own)


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_row_is_sent_again_by_a_digest_cycle(
    world: World, api: FakeRestApi, runtimes: list[Runtime], mode: SyncMode
) -> None:
    dest = RestDest(api)
    with_a_bad_row(world, dest, mode)
    if mode == "update":  # update mode sends only updates: make row 5 one
        await sync(runtimes, world, dest, mode)
        upsert(world, [(BAD, "still-no-address", "pro")])
    first = await sync(runtimes, world, dest, mode)
    assert first.failed == 1
    assert [f.key_json for f in runtimes[-1].store.failed_rows("crm")] == [
        f'{{"customer_id":{BAD}}}'
    ]
    upsert(world, [(BAD, "fixed@example.com", "pro"), (7, "seven@example.com", "team")])
    expire_all_but_current(world)
    since = len(api.log)

    result = await sync(runtimes, world, dest, mode)

    assert result.plan == "digest", result.reason
    assert result.failed == 0
    assert runtimes[-1].store.failed_rows("crm") == []
    expected = [BAD, 7] if mode != "insert" else [BAD]
    assert sent_keys(api, since) == expected, "the refused row once, and the changed row"
    assert dest.held()[BAD] == (BAD, "fixed@example.com", "pro")


@pytest.mark.parametrize("mode", MODES)
async def test_a_parked_row_stays_parked_through_a_digest_cycle(
    world: World, api: FakeRestApi, runtimes: list[Runtime], mode: SyncMode
) -> None:
    dest = RestDest(api)
    with_a_bad_row(world, dest, mode)
    if mode == "update":
        await sync(runtimes, world, dest, mode, max_attempts=1)
        upsert(world, [(BAD, "still-no-address", "pro")])
    first = await sync(runtimes, world, dest, mode, max_attempts=1)
    assert first.failed == 1
    [parked] = runtimes[-1].store.failed_rows("crm")
    assert parked.parked
    upsert(world, [(7, "seven@example.com", "team")])
    expire_all_but_current(world)
    since = len(api.log)

    result = await sync(runtimes, world, dest, mode, max_attempts=1)

    assert result.plan == "digest", result.reason
    assert sent_keys(api, since) == ([7] if mode != "insert" else [])
    [still] = runtimes[-1].store.failed_rows("crm")
    assert (still.key_json, still.parked, still.attempts) == (
        parked.key_json,
        True,
        parked.attempts,
    )


@pytest.fixture
def pg_dest(pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PostgresDest:
    monkeypatch.setenv("FLOE_EGRESS_WORK_DIR", str(tmp_path / "work"))
    return PostgresDest(pg_database)


async def test_an_insert_the_database_skipped_does_not_mislead_the_digest(
    world: World, pg_dest: PostgresDest, runtimes: list[Runtime]
) -> None:
    """Insert mode: row 3 is deleted and inserted again with other values; the table
    still holds the first version, so the insert is skipped, yet the digest notes it
    as sent. After an expiry that changes row 3 again, the destination still holds the
    first version and only the new row is inserted."""
    world.table.append(customers(initial_rows(10)))
    await sync(runtimes, world, pg_dest, "insert")
    first = pg_dest.held()
    world.reload().delete("customer_id = 3")
    await sync(runtimes, world, pg_dest, "insert")
    world.reload().append(customers([(3, "other3@example.com", "team")]))
    skipped = await sync(runtimes, world, pg_dest, "insert")
    assert (skipped.plan, skipped.inserted) == ("append", 0), "the table holds key 3"
    upsert(world, [(3, "third3@example.com", "free"), (11, "user11@example.com", "pro")])
    expire_all_but_current(world)

    result = await sync(runtimes, world, pg_dest, "insert")

    assert (result.plan, result.inserted, result.updated) == ("digest", 1, 0)
    assert pg_dest.held() == {**first, 11: (11, "user11@example.com", "pro")}


async def test_an_update_the_database_skipped_does_not_mislead_the_digest(
    world: World, pg_dest: PostgresDest, runtimes: list[Runtime]
) -> None:
    """Update mode: key 12 is inserted in the table (never sent) and updated; the
    database lacks it and skips the update, yet the digest notes it. After an expiry
    that changes 12 and 2 again, 2 is updated and 12 is still skipped, not counted."""
    world.table.append(customers(initial_rows(10)))
    await sync(runtimes, world, pg_dest, "upsert")
    world.reload().append(customers([(12, "user12@example.com", "pro")]))
    await sync(runtimes, world, pg_dest, "update")
    upsert(world, [(12, "new12@example.com", "pro")])
    skipped = await sync(runtimes, world, pg_dest, "update")
    assert (skipped.plan, skipped.updated) == ("diff", 0), "the table lacks key 12"
    before = pg_dest.held()
    upsert(world, [(12, "newer12@example.com", "team"), (2, "two@example.com", "team")])
    expire_all_but_current(world)

    result = await sync(runtimes, world, pg_dest, "update")

    assert (result.plan, result.inserted, result.updated) == ("digest", 0, 1)
    assert pg_dest.held() == {**before, 2: (2, "two@example.com", "team")}
