"""The digest in each sync mode, end to end: real Iceberg tables, a local REST API and a
real PostgreSQL table. When the synced snapshot A cannot be read (expired, the table
replaced), the cycle compares the table with the digest of what the destination holds:
the destination ends as its mode promises, the counts are the net change, and only
that change reaches the destination.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from floe_egress.config.models import SyncMode
from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.digest_dests import (
    MODES,
    Counts,
    Dest,
    PostgresDest,
    RestDest,
    Rows,
    promised,
    record,
)
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows


@pytest.fixture(params=["rest", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A REST destination keeps its state in SQLite, a PostgreSQL one in PostgreSQL."""
    if kind == "rest":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def dest(
    kind: str, state_url: str, api: FakeRestApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Dest:
    monkeypatch.setenv("FLOE_EGRESS_WORK_DIR", str(tmp_path / "work"))
    return RestDest(api) if kind == "rest" else PostgresDest(state_url)


class Syncs:
    """Cycles of one destination, each with a fresh Runtime (as `floe-egress sync`)."""

    def __init__(self, world: World, dest: Dest, runtimes: list[Runtime]) -> None:
        self.world, self.dest, self.runtimes = world, dest, runtimes

    async def __call__(self, mode: SyncMode, **overrides: Any) -> CycleResult:
        loaded = self.world.load([self.dest.config(mode, **overrides)])
        runtime = Runtime(loaded.spec)
        self.runtimes.append(runtime)
        result = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])
        assert result.status in ("ok", "noop"), result.error
        return result


@pytest.fixture
def sync(world: World, dest: Dest, runtimes: list[Runtime]) -> Syncs:
    return Syncs(world, dest, runtimes)


def expire_all_but_current(world: World) -> None:
    table = world.reload()
    current = table.current_snapshot()
    assert current is not None
    older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current.snapshot_id]
    table.maintenance.expire_snapshots().by_ids(older).commit()


def upsert(world: World, rows: list[tuple[int, str, str]]) -> None:
    world.reload().upsert(customers(rows), join_cols=["customer_id"])


def changes_before_expiry(world: World) -> None:
    """Updates 1-20, inserts 101-120, deletes 51-60."""
    upsert(world, [(i, f"first{i}@example.com", "team") for i in range(1, 21)])
    world.reload().append(customers([(i, f"new{i}@example.com", "pro") for i in range(101, 121)]))
    world.reload().delete("customer_id > 50 and customer_id <= 60")


def changes_after_expiry(world: World, at_a: Rows) -> None:
    """Updates 11-30 (11-20 again) and 101-105 (inserted before the expiry); inserts
    121-130, deleted and inserted again with other values; deletes 41-45 and 116-120
    (inserted before the expiry); 51-53 back with other values, 54 back as it was in A."""
    upsert(world, [(i, f"second{i}@example.com", "free") for i in range(11, 31)])
    upsert(world, [(i, f"again{i}@example.com", "team") for i in range(101, 106)])
    world.reload().append(customers([(i, f"late{i}@example.com", "pro") for i in range(121, 131)]))
    world.reload().delete("(customer_id > 40 and customer_id <= 45) or customer_id > 115")
    world.reload().append(customers([(i, f"again{i}@example.com", "pro") for i in range(121, 131)]))
    back = [(i, f"back{i}@example.com", "pro") for i in range(51, 54)]
    back.append((54, at_a[54]["email"], at_a[54]["plan"]))
    world.reload().append(customers(back))


async def first_sync(world: World, dest: Dest, sync: Syncs, mode: SyncMode) -> dict[int, Any]:
    """60 rows synced; an update-mode destination holds them of its own already (a
    PostgreSQL one got them from an upsert-mode cycle)."""
    world.table.append(customers(initial_rows(60)))
    if mode == "update":
        rows = {k: record(r) for k, r in world.rows().items()}
        if isinstance(dest, RestDest):
            dest.preload(rows)
        else:
            await sync("upsert")
    await sync(mode)
    return dest.held()


def mode_params() -> list[Any]:
    return [pytest.param(m, id=m) for m in MODES]


@pytest.mark.parametrize("mode", mode_params())
async def test_expiry_sends_only_the_net_change(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    """Changes on both sides of an expiry of A: the cycle compares with the digest, the
    destination holds what the mode promises, the counts are the net change, and
    exactly those records reach the REST receiver."""
    held = await first_sync(world, dest, sync, mode)
    events = dest.events()
    at_a = world.rows()
    changes_before_expiry(world)
    expire_all_but_current(world)
    changes_after_expiry(world, at_a)
    sent = {k: record(r) for k, r in at_a.items()}  # an append destination keeps events
    promise = promised(mode, sent if mode == "append" else held, world.rows())
    since = len(dest.api.log) if isinstance(dest, RestDest) else 0

    result = await sync(mode)

    assert result.plan == "digest", result.reason
    assert Counts(result.inserted, result.updated, result.deleted) == promise.counts
    if mode == "append":
        assert sorted(dest.events()) == sorted(events + promise.events)
    else:
        assert dest.held() == promise.held
    if isinstance(dest, RestDest):
        assert dest.posted(since) == promise.counts.total, "exactly the changed rows arrive"
    again = await sync(mode)
    assert (again.plan, again.status) == ("noop", "noop")
