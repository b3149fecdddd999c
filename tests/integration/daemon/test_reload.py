"""SIGHUP reloads floe.yaml: a new destination starts syncing; an invalid file is refused
(the daemon keeps running on the old configuration and logs why)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import (
    API_TOKEN,
    StartDaemon,
    destination,
    expected_records,
    write_config,
)
from tests.integration.daemon.harness import wait_until


@pytest.fixture
async def api2() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token=API_TOKEN).start()
    yield server
    await server.stop()


async def test_sighup_adds_a_destination_and_an_invalid_file_keeps_the_old_one(
    world: World, api: FakeRestApi, api2: FakeRestApi, start_daemon: StartDaemon
) -> None:
    crm = destination(api.url)
    daemon = await start_daemon(world, [crm])
    await asyncio.to_thread(world.table.append, customers(initial_rows(5)))
    want = await asyncio.to_thread(expected_records, world)
    await wait_until(lambda: api.records == want, 10, "crm syncs")

    write_config(
        world, daemon.config, [crm, destination(api2.url, name="billing")], port=daemon.port
    )
    daemon.signal(signal.SIGHUP)
    reloaded = await daemon.wait_event("reload_finished")
    assert reloaded["destinations"] == ["billing", "crm"]
    await wait_until(lambda: api2.records == want, 10, "the added destination syncs")

    broken = destination(api2.url, name="billing", mode="sideways")
    write_config(world, daemon.config, [crm, broken], port=daemon.port)
    daemon.signal(signal.SIGHUP)
    rejected = await daemon.wait_event("reload_rejected")
    assert "mode" in rejected["error"]
    assert "sideways" in rejected["error"]
    assert rejected["detail"] == "keeping the running configuration"

    await asyncio.to_thread(world.table.append, customers([(6, "six@example.com", "team")]))
    want = await asyncio.to_thread(expected_records, world)
    await wait_until(
        lambda: api.records == want and api2.records == want,
        10,
        "both destinations of the old configuration still sync",
    )
    assert (await daemon.get("/healthz"))[0] == 200
    assert await daemon.stop() == 0
