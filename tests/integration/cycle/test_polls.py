"""Cheap change polling, through the daemon's real `Runner`: a scheduled poll of a table
that did not move loads nothing and runs no cycle, unless something in the state store
asks for one; a commit, a re-created table, a resync or force request, repair keys, an
interrupted delivery and failed rows due for retry all run a full cycle. On the SQL
catalog over SQLite (with a SQLite state store) and over PostgreSQL (with a PostgreSQL
state store)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pyiceberg.table import Table

from floe_egress.changes.keys import key_json
from floe_egress.config import LoadedConfig
from floe_egress.config.models import Destination
from floe_egress.daemon import polls
from floe_egress.daemon.leases import CycleLease, StandaloneLease
from floe_egress.daemon.polls import PollResult
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runner import Runner
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import CUSTOMERS, World, customers, initial_rows, rest_destination

T = TypeVar("T")


@dataclass
class PgWorld(World):
    """The world with its SQL catalog in PostgreSQL."""

    catalog_uri: str = ""

    @property
    def catalog_props(self) -> dict[str, str]:
        return {
            "type": "sql",
            "uri": self.catalog_uri,
            "warehouse": f"file://{self.root / 'warehouse'}",
        }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    if request.param == "sqlite":
        return World(tmp_path / "world", f"sqlite:///{tmp_path / 'state' / 'state.db'}")
    url: str = request.getfixturevalue("pg_database")
    catalog = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    return PgWorld(tmp_path / "world", url, catalog_uri=catalog)


class Host:
    """What a runner needs from the daemon (runner.RunnerHost), holding every lease."""

    accepting = True

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.polls: list[PollResult] = []
        self.cycles: list[CycleResult] = []

    def holds(self, name: str) -> bool:
        return True

    def lease_for(self, name: str) -> CycleLease:
        return StandaloneLease(name)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        return asyncio.create_task(coro, name=name)

    def finished(self, runner: Runner, result: CycleResult, reason: str) -> None:
        self.cycles.append(result)

    def polled(self, runner: Runner, result: PollResult) -> None:
        self.polls.append(result)


class Daemon:
    """One destination's runner on a real runtime; `tick` is one request to run."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.runtime = Runtime(loaded.spec)
        self.dest: Destination = loaded.spec.ingestion.destinations[0]
        self.host = Host(self.runtime)
        self.runner = Runner(self.host, self.dest)
        self.loads: list[str] = []
        catalog = self.runtime.catalog
        load = catalog.load_table

        def counted(identifier: Any) -> Table:
            self.loads.append(str(identifier))
            return load(identifier)

        catalog.load_table = counted

    async def tick(self, reason: str = "schedule") -> tuple[PollResult | None, CycleResult | None]:
        """What the poll found (None: no poll) and the cycle that ran (None: none)."""
        polled, cycled = len(self.host.polls), len(self.host.cycles)
        assert self.runner.request(reason) == "started"
        assert self.runner.task is not None
        await self.runner.task
        poll = self.host.polls[polled:]
        cycle = self.host.cycles[cycled:]
        assert len(poll) <= 1 and len(cycle) <= 1
        return (poll[0] if poll else None), (cycle[0] if cycle else None)

    async def settled(self) -> None:
        """Run until a poll finds nothing to do (at most three ticks)."""
        for _ in range(3):
            poll, _ = await self.tick()
            if poll == "unchanged":
                return
        raise AssertionError(f"never unchanged: polls {self.host.polls}")


@pytest.fixture
async def start(api: FakeRestApi) -> Any:
    made: list[Daemon] = []

    def make(world: World, **overrides: Any) -> Daemon:
        dest = rest_destination(api.url + "/v1/contacts", **overrides)
        daemon = Daemon(world.load([dest]))
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        await daemon.runtime.close()


Start = Callable[..., Daemon]


def expected(world: World) -> dict[str, dict[str, Any]]:
    return {
        str(k): {"external_id": k, "email": r["email"], "plan_tier": r["plan"]}
        for k, r in world.rows().items()
    }


def posts(api: FakeRestApi) -> int:
    return sum(1 for r in api.log if r.method == "POST")


async def test_an_unchanged_table_is_not_loaded_and_no_cycle_runs(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(20)))
    daemon = start(world)
    poll, cycle = await daemon.tick()
    assert (poll, cycle and cycle.status, cycle and cycle.inserted) == ("moved", "ok", 20)
    assert api.records == expected(world)
    store = daemon.runtime.store
    runs, sent, loads = len(store.runs("crm")), posts(api), len(daemon.loads)

    results = [await daemon.tick() for _ in range(5)]
    assert results == [("unchanged", None)] * 5
    assert len(daemon.loads) == loads, "the table was not loaded again"
    assert len(store.runs("crm")) == runs, "a skipped poll writes no run record"
    assert posts(api) == sent
    handle = daemon.runtime.load_table(daemon.dest)
    assert daemon.runtime.load_table(daemon.dest) is handle, "the handle is kept"
    assert len(daemon.loads) == loads


async def test_a_commit_is_seen_on_the_next_poll(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(10)))
    daemon = start(world)
    await daemon.settled()
    handle = daemon.runtime.load_table(daemon.dest)
    world.table.append(customers([(11, "eleven@example.com", "pro")]))

    poll, cycle = await daemon.tick()
    assert poll == "moved"
    assert cycle is not None and (cycle.status, cycle.inserted) == ("ok", 1)
    assert api.records == expected(world)
    assert daemon.runtime.load_table(daemon.dest) is not handle, "a moved table is reloaded"
    assert await daemon.tick() == ("unchanged", None)


async def test_a_table_dropped_and_created_again_is_seen(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(10)))
    daemon = start(world)
    await daemon.settled()
    world.catalog.drop_table("gold.customers")
    table = world.catalog.create_table("gold.customers", schema=CUSTOMERS)
    with table.update_schema() as update:
        update.set_identifier_fields("customer_id")
    rows = initial_rows(9)
    rows[0] = (1, "one@new.example.com", "team")
    world.reload().append(customers(rows))

    poll, cycle = await daemon.tick()
    assert poll == "moved"
    assert cycle is not None and cycle.status == "ok", cycle and cycle.error
    assert (cycle.plan, cycle.updated, cycle.deleted) == ("digest", 1, 1)
    assert api.records == expected(world), "the destination mirrors the new table"
    assert await daemon.tick() == ("unchanged", None)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_a_resync_request_runs_a_full_cycle_while_the_table_does_not_move(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(10)))
    daemon = start(world)
    await daemon.settled()
    api.records.clear()  # the destination lost everything: the operator asks for a resync
    daemon.runtime.store.request_resync("crm", None)

    poll, cycle = await daemon.tick()
    assert poll == "pending"
    assert cycle is not None and (cycle.status, cycle.plan) == ("ok", "full")
    assert api.records == expected(world)
    assert daemon.runtime.store.pending_resync("crm") is None
    assert await daemon.tick() == ("unchanged", None)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_repair_keys_run_a_cycle_while_the_table_does_not_move(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(10)))
    daemon = start(world)
    await daemon.settled()
    del api.records["3"]  # what `verify --repair` found and queued
    daemon.runtime.store.queue_repairs("crm", [(key_json({"customer_id": 3}), "insert")])

    poll, cycle = await daemon.tick()
    assert poll == "pending"
    assert cycle is not None and cycle.retried == 1
    assert api.records == expected(world)
    assert await daemon.tick() == ("unchanged", None)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_an_interrupted_delivery_runs_a_cycle_while_the_table_does_not_move(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(10)))
    daemon = start(world)
    await daemon.settled()
    head = world.reload().current_snapshot()
    assert head is not None
    # Another process started delivering a range and died before its commit.
    daemon.runtime.store.begin_attempt("crm", None, head.snapshot_id)

    poll, cycle = await daemon.tick()
    assert poll == "pending"
    assert cycle is not None and cycle.status in ("ok", "noop")
    assert daemon.runtime.store.pending_attempts("crm") == []
    assert await daemon.tick() == ("unchanged", None)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_failed_rows_are_retried_once_due_while_the_table_does_not_move(
    world: World, api: FakeRestApi, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = initial_rows(10)
    rows[4] = (5, "no-address", "pro")
    world.table.append(customers(rows))
    daemon = start(world)
    poll, cycle = await daemon.tick()
    assert cycle is not None and cycle.failed == 1
    assert await daemon.tick() == ("unchanged", None), "not due yet"

    monkeypatch.setattr(polls, "FAILED_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(api, "invalid", lambda record: None)  # the API takes it now
    poll, cycle = await daemon.tick()
    assert poll == "pending"
    assert cycle is not None and (cycle.retried, cycle.failed) == (1, 0)
    assert api.records == expected(world)
    assert daemon.runtime.store.failed_row_count("crm") == 0
    assert await daemon.tick() == ("unchanged", None)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_a_force_request_overrides_the_delete_guard_on_an_unchanged_table(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(10)))
    daemon = start(world)
    await daemon.settled()
    world.reload().delete("customer_id > 2")
    poll, cycle = await daemon.tick()
    assert poll == "moved"
    assert cycle is not None and cycle.error_type == "DeleteGuardError"
    assert len(api.records) == 10, "nothing was deleted"

    # `sync --force` while the daemon holds the destination, then a nudge.
    daemon.runtime.store.request_force("crm")
    poll, cycle = await daemon.tick("http")
    assert poll is None, "a nudge does not poll: it runs a cycle"
    assert cycle is not None and (cycle.status, cycle.deleted) == ("ok", 8)
    assert api.records == expected(world)
    assert daemon.runtime.store.pending_force("crm") is None
    assert await daemon.tick() == ("unchanged", None)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
async def test_a_pending_force_request_runs_a_cycle_on_the_schedule(
    world: World, api: FakeRestApi, start: Start
) -> None:
    world.table.append(customers(initial_rows(4)))
    daemon = start(world)
    await daemon.settled()
    daemon.runtime.store.request_force("crm")
    poll, cycle = await daemon.tick()
    assert poll == "pending"
    assert cycle is not None and cycle.status == "noop"
    assert daemon.runtime.store.pending_force("crm") is None, "the cycle used it up"
    assert await daemon.tick() == ("unchanged", None)
