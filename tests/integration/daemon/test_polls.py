"""The real daemon on the default schedule (a poll every second): an idle table costs a
poll, not a cycle, and writes no run record; a commit and a request made from the
command line are acted on by the next poll."""

from __future__ import annotations

import asyncio
from typing import Any

from floe_egress.state import open_store
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import StartDaemon, destination, expected_records
from tests.integration.daemon.harness import FLOE_EGRESS, DaemonProcess, wait_until
from tests.integration.daemon.test_backoff import metric


def on_the_default_schedule(api_url: str) -> dict[str, Any]:
    dest = destination(api_url)
    del dest["schedule"]
    return dest


async def counters(daemon: DaemonProcess) -> dict[str, float]:
    _, text = await daemon.get("/metrics")
    found = {
        f"poll_{result}": metric(text, "floe_egress_polls_total", destination="crm", result=result)
        for result in ("unchanged", "moved", "pending")
    }
    found |= {
        f"cycle_{result}": metric(
            text, "floe_egress_cycles_total", destination="crm", result=result
        )
        for result in ("ok", "noop", "failed")
    }
    return {k: v or 0.0 for k, v in found.items()}


async def last_run_id(world: World) -> int | None:
    def read() -> int | None:
        store = open_store(world.state_url)
        try:
            run = store.last_run("crm")
            return None if run is None else run.run_id
        finally:
            store.close()

    return await asyncio.to_thread(read)


async def test_an_idle_table_costs_a_poll_and_a_commit_is_delivered_on_the_next(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(5)))
    daemon = await start_daemon(world, [on_the_default_schedule(api.url)])
    want = await asyncio.to_thread(expected_records, world)
    await wait_until(lambda: api.records == want, 15, "the first cycle delivers")
    await daemon.wait_status(
        "/status",
        200,
        where=lambda b: (
            (b["destinations"][0]["daemon"]["last_poll"] or {}).get("result") == "unchanged"
        ),
    )
    before, run_before = await counters(daemon), await last_run_id(world)
    await asyncio.sleep(3.5)
    after, run_after = await counters(daemon), await last_run_id(world)
    assert after["poll_unchanged"] - before["poll_unchanged"] >= 2, (before, after)
    cycles = ("cycle_ok", "cycle_noop", "cycle_failed")
    assert [after[c] for c in cycles] == [before[c] for c in cycles], "no cycle ran"
    assert run_after == run_before, "an idle poll writes no run record"
    _, status = await daemon.get("/status")
    (crm,) = status["destinations"]
    assert crm["lag_seconds"] == 0.0
    assert crm["last_run"]["inserted"] == 5, "the last run is still the one that sent rows"

    await asyncio.to_thread(world.table.append, customers([(6, "six@example.com", "pro")]))
    want = await asyncio.to_thread(expected_records, world)
    await wait_until(lambda: api.records == want, 10, "the next poll delivers the commit")
    assert (await counters(daemon))["poll_moved"] > after["poll_moved"]


async def test_a_resync_asked_on_the_command_line_runs_on_an_idle_table(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(5)))
    daemon = await start_daemon(world, [on_the_default_schedule(api.url)])
    want = await asyncio.to_thread(expected_records, world)
    await wait_until(lambda: api.records == want, 15, "the first cycle delivers")
    await daemon.wait_status(
        "/status",
        200,
        where=lambda b: (
            (b["destinations"][0]["daemon"]["last_poll"] or {}).get("result") == "unchanged"
        ),
    )
    api.records.clear()  # the destination lost its data

    resync = await asyncio.create_subprocess_exec(
        str(FLOE_EGRESS),
        "resync",
        "crm",
        "--config",
        str(daemon.config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await resync.communicate()
    assert resync.returncode == 0, err.decode()
    assert "the next cycle will be a full resync" in out.decode()

    await wait_until(lambda: api.records == want, 10, "the resync sends every row again")
    assert (await counters(daemon))["poll_pending"] >= 1
