"""SIGTERM in the middle of a cycle: exit 0 with a consistent checkpoint.

Either the cycle finishes within `server.shutdown_grace_seconds` (the checkpoint moves
and everything was delivered), or it is cancelled (the checkpoint stays where it was,
and the next start sends that range again: nothing is lost).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from floe_egress.state import open_store
from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import StartDaemon, destination, expected_records
from tests.integration.daemon.harness import DaemonProcess, wait_until


def checkpoint_of(world: World) -> int | None:
    store = open_store(world.state_url)
    try:
        checkpoint = store.get_checkpoint("crm")
    finally:
        store.close()
    return None if checkpoint is None else checkpoint.snapshot_id


async def commit(
    world: World, rows: list[tuple[int, str, str]]
) -> tuple[int, dict[str, dict[str, Any]]]:
    await asyncio.to_thread(world.table.append, customers(rows))
    snapshot = world.reload().current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id, await asyncio.to_thread(expected_records, world)


async def sigterm_mid_cycle(
    world: World, api: FakeRestApi, start_daemon: StartDaemon, grace: float, delay: float
) -> tuple[DaemonProcess, int, int, dict[str, dict[str, Any]], float]:
    """Sync 10 rows, commit 10 more, SIGTERM while the API sits on their request.

    Returns the daemon, the snapshots before and after the second commit, what the API
    should hold in the end, and how long the daemon took to exit."""
    daemon = await start_daemon(world, [destination(api.url)], shutdown_grace_seconds=grace)
    first, want = await commit(world, initial_rows(10))
    await wait_until(lambda: api.records == want, 10, "the first 10 rows arrive")
    await daemon.wait_event("cycle_finished", where=lambda e: e["to_snapshot"] == first)

    api.fail(Fault(delay=delay, method="POST"))
    posted = len(api.requests(method="POST"))
    second, want = await commit(world, [(i, f"late{i}@example.com", "pro") for i in range(11, 21)])
    await wait_until(
        lambda: len(api.requests(method="POST")) > posted, 10, "the slow request is in flight"
    )
    asked = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(grace + 10) == 0
    return daemon, first, second, want, time.monotonic() - asked


async def test_a_cycle_that_finishes_within_the_grace_period_moves_the_checkpoint(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon, _, second, want, took = await sigterm_mid_cycle(
        world, api, start_daemon, grace=6, delay=1.5
    )
    assert took < 6
    assert checkpoint_of(world) == second
    assert api.records == want, "everything up to the new checkpoint was delivered"
    assert daemon.events("waiting_for_cycles")
    assert daemon.events("cycle_cancelled") == []


async def test_a_cycle_cancelled_after_the_grace_period_leaves_the_checkpoint_and_resends(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon, first, second, want, took = await sigterm_mid_cycle(
        world, api, start_daemon, grace=1, delay=4
    )
    assert 1 <= took < 4, "cancelled at the end of the grace period, not when the API answered"
    assert daemon.events("cycle_cancelled")
    assert checkpoint_of(world) == first, "the checkpoint did not move"

    restarted = await start_daemon(world, [destination(api.url)], name="restarted")
    resent = await restarted.wait_event("cycle_finished", where=lambda e: e["status"] == "ok")
    assert (resent["from_snapshot"], resent["to_snapshot"]) == (first, second)
    await wait_until(lambda: api.records == want, 10, "every row is at the API")
    assert await restarted.stop() == 0
    assert checkpoint_of(world) == second
