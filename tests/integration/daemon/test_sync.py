"""The daemon syncs on its own: a commit reaches the destination without any command."""

from __future__ import annotations

import asyncio

from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import StartDaemon, destination
from tests.integration.daemon.harness import wait_until


def expected(world: World) -> dict[str, dict[str, object]]:
    return {
        str(k): {"external_id": k, "email": r["email"], "plan_tier": r["plan"]}
        for k, r in world.rows().items()
    }


async def test_a_commit_reaches_the_api_without_any_command(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(world, [destination(api.url)])
    await asyncio.to_thread(world.table.append, customers(initial_rows(10)))
    want = await asyncio.to_thread(expected, world)
    await wait_until(lambda: api.records == want, 10, "the 10 committed rows reach the API")
    assert await daemon.stop() == 0
