"""Credentials a destination echoes back are masked in the daemon's log and /status too
(the CLI side: tests/integration/cli/test_secret_masking.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.fixtures.fake_apis import EchoApi
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.test_secret_masking import (
    ACCESS_TOKEN,
    AUTHS,
    SECRETS,
    hubspot,
    leaks,
    rest,
)
from tests.integration.daemon.conftest import StartDaemon
from tests.integration.daemon.harness import wait_until

HOURLY = {"interval_seconds": 3600}


@pytest.fixture
def echo() -> Iterator[EchoApi]:
    with EchoApi(access_token=ACCESS_TOKEN).in_thread() as server:
        yield server


async def test_echoed_credentials_are_masked_in_the_daemon_log_and_status(
    world: World, echo: EchoApi, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(3)))
    destinations = [hubspot("oauth_rows", echo, 422), hubspot("oauth_auth", echo, 401)]
    for kind, auth in AUTHS.items():
        destinations += [
            rest(f"{kind}_rows", echo, 422, auth),
            rest(f"{kind}_auth", echo, 401, auth),
        ]
    for dest in destinations:
        dest["schedule"] = HOURLY
    daemon = await start_daemon(world, destinations, env=SECRETS)
    names = {d["name"] for d in destinations}

    def all_ran() -> bool:
        done = {
            e["destination"]
            for e in daemon.events()
            if e["event"] in ("cycle_finished", "cycle_failed")
        }
        return names <= done

    await wait_until(all_ran, 60, "every destination ran its first cycle")
    _, status = await daemon.get("/status")
    shown = {"log": daemon.output, "/status": str(status)}
    assert leaks(shown) == []
    assert shown["/status"].count("refused, you sent") >= 1 + len(AUTHS), "the echoes are there"
    assert "***" in shown["log"]
