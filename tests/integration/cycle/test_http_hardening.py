"""Whole cycles against a destination that misbehaves on the wire: what the state store
and the destination end up with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import EchoApi
from tests.fixtures.world import World, customers, initial_rows, rest_destination


@pytest.fixture
async def echo() -> AsyncIterator[EchoApi]:
    server = await EchoApi().start()
    yield server
    await server.stop()


async def test_a_redirected_batch_fails_the_cycle_and_keeps_the_checkpoint(
    world: World, echo: EchoApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(6)))
    sink_config = {"url": f"{echo.url}/redirect?to=/ok", "check_url": f"{echo.url}/ok/"}
    loaded = world.load([rest_destination(echo.url, sink_config=sink_config)])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)

    result = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])

    assert (result.status, result.error_kind, result.inserted) == ("failed", "permanent", 0)
    assert result.error is not None and "HTTP 302" in result.error
    assert f"{echo.url}/ok" in result.error
    assert runtime.store.get_checkpoint("crm") is None
    last = runtime.store.last_run("crm")
    assert last is not None and last.status == "failed"
    sent = [(r.method, r.path, len(r.body) > 0) for r in echo.log if r.method != "HEAD"]
    assert sent == [("POST", "/redirect", True)], "only the POST, never a body-less GET"
