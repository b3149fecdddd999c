"""Several daemons on one PostgreSQL state store: each destination runs on exactly one of
them at a time, and a killed daemon's destinations move to another within the lease time.

Checked at the destination: each daemon sends its own `X-Daemon` header, and the server
records when every request started and finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers
from tests.integration.daemon.conftest import (
    API_TOKEN,
    StartDaemon,
    destination,
    expected_records,
)
from tests.integration.daemon.harness import DaemonProcess, wait_until

LEASE_SECONDS = 3.0
NAMES = ("crm", "billing")
pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Span:
    daemon: str
    started: float
    finished: float

    def overlaps(self, other: Span) -> bool:
        return self.started < other.finished and other.started < self.finished


class TimedRestApi(FakeRestApi):
    """A REST API that takes `hold` seconds a request and records who sent it, when."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spans: list[Span] = []
        self.hold = 0.1

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.time()
        try:
            await asyncio.sleep(self.hold)
            return await super()._middleware(request, handler)
        finally:
            self.spans.append(Span(request.headers.get("X-Daemon", "?"), started, time.time()))


@pytest.fixture
async def apis() -> AsyncIterator[dict[str, TimedRestApi]]:
    servers = {name: await TimedRestApi(token=API_TOKEN).start() for name in NAMES}
    yield servers
    for server in servers.values():
        await server.stop()


def event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


async def keep_committing(world: World, stop: asyncio.Event) -> None:
    next_id = 1
    while not stop.is_set():
        rows = [(i, f"user{i}@example.com", "pro") for i in (next_id, next_id + 1)]
        await asyncio.to_thread(world.table.append, customers(rows))
        next_id += 2
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def test_one_daemon_at_a_time_per_destination_and_takeover_after_sigkill(
    world: World, apis: dict[str, TimedRestApi], pg_database: str, start_daemon: StartDaemon
) -> None:
    dests = []
    for name in NAMES:
        dest = destination(apis[name].url, name=name)
        dest["sink_config"]["headers"] = {"Authorization": API_TOKEN, "X-Daemon": "${env:DAEMON}"}
        dests.append(dest)

    def start(name: str) -> Awaitable[DaemonProcess]:
        return start_daemon(
            world,
            dests,
            name=name,
            env={"DAEMON": name},
            state_url=pg_database,
            lease_seconds=LEASE_SECONDS,
        )

    daemons = dict(zip(("a", "b"), await asyncio.gather(start("a"), start("b")), strict=True))
    stop = asyncio.Event()
    committer = asyncio.create_task(keep_committing(world, stop))
    try:
        await asyncio.sleep(3)
        senders = {name: {s.daemon for s in apis[name].spans} for name in NAMES}
        assert all(len(s) == 1 for s in senders.values()), f"one daemon each: {senders}"

        (holder,) = senders["crm"]
        (survivor,) = set(daemons) - {holder}
        await daemons[holder].kill()  # SIGKILL: the lease is left to expire
        killed_at = time.time()
        taken = await daemons[survivor].wait_event(
            "lease_acquired", within=15, where=lambda e: e["destination"] == "crm"
        )
        takeover = event_time(taken) - killed_at
        assert takeover <= LEASE_SECONDS + 1.5, f"took over after {takeover:.1f} s"
        await asyncio.sleep(2)
    finally:
        stop.set()
        await committer

    want = await asyncio.to_thread(expected_records, world)

    def holds_every_row(api: TimedRestApi) -> Callable[[], bool]:
        return lambda: api.records == want

    for api in apis.values():
        await wait_until(holds_every_row(api), 10, f"{api.url} holds every row")
    for name in NAMES:
        spans = apis[name].spans
        by_daemon = {d: [s for s in spans if s.daemon == d] for d in ("a", "b")}
        overlapping = [(x, y) for x in by_daemon["a"] for y in by_daemon["b"] if x.overlaps(y)]
        assert overlapping == [], f"{name}: requests of both daemons at once"
    assert all(s.started < killed_at for s in apis["crm"].spans if s.daemon == holder)
    assert any(s.daemon == survivor for s in apis["crm"].spans), "the survivor delivers crm"
    daemons[survivor].signal(signal.SIGTERM)
    assert await daemons[survivor].wait_exit(15) == 0
