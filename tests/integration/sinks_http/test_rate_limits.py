"""The configured rate limit holds at the server, and an account's budget is shared.

The server runs on its own thread and loop, so that its arrival times measure what the
client sent, not when the test's loop got round to reading it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from floe_egress.config.models import RateLimit
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.limits import account_key
from tests.fixtures.fake_apis import FakeRestApi, Fault, max_in_window
from tests.integration.sinks_http.conftest import SinkFactory, changes, context


@pytest.fixture
def threaded_server() -> Iterator[FakeRestApi]:
    with FakeRestApi().in_thread() as server:
        yield server


def rows(start: int, count: int) -> pa.Table:
    return changes(
        [
            {"customer_id": i, "email": f"c{i}@x.io", "op": "insert"}
            for i in range(start, start + count)
        ]
    )


def single_record_config(server: FakeRestApi, token: str = "t") -> dict[str, object]:
    return {
        "url": f"{server.url}/v1/contacts/{{customer_id}}",
        "method": "PUT",
        "auth": {"type": "bearer", "token": token},
    }


ARRIVAL_WINDOW = 0.95
"""Windows a little under a second: the limiter admits at most burst + rate in any
second as requests leave, but they are counted as they arrive, and a loaded machine
can delay one request enough to crowd the next second by one. 50 ms of that is
allowed; a limiter that let requests through early would still exceed the bound."""


async def test_rate_limit_is_never_exceeded_over_300_requests(
    make_sink: SinkFactory, threaded_server: FakeRestApi
) -> None:
    rate = RateLimit(requests_per_second=100, burst=10, max_concurrency=32)
    sink = make_sink(rest_api.SINK_TYPE, single_record_config(threaded_server), rate_limit=rate)

    started = time.monotonic()
    report = await sink.write(rows(0, 300), context())
    elapsed = time.monotonic() - started

    times = [r.at for r in threaded_server.log]
    assert len(times) == 300
    assert len(threaded_server.records) == 300
    assert max_in_window(times, ARRIVAL_WINDOW) <= 100 + 10
    assert elapsed >= (300 - 10) / 100
    assert report.rate_limit_wait_seconds > 0


async def test_two_destinations_on_one_account_share_its_budget(
    make_sink: SinkFactory, threaded_server: FakeRestApi
) -> None:
    rate = RateLimit(requests_per_second=60, burst=5, max_concurrency=16, account="acme-crm")
    config = single_record_config(threaded_server)
    first = make_sink(rest_api.SINK_TYPE, config, destination="a", rate_limit=rate)
    second = make_sink(rest_api.SINK_TYPE, config, destination="b", rate_limit=rate)

    await asyncio.gather(
        first.write(rows(0, 60), context("a")), second.write(rows(100, 60), context("b"))
    )

    times = [r.at for r in threaded_server.log]
    assert len(times) == 120
    assert len(threaded_server.records) == 120
    assert max_in_window(times, ARRIVAL_WINDOW) <= 60 + 5


async def test_no_request_reaches_the_account_while_a_429_holds_it(
    make_sink: SinkFactory, threaded_server: FakeRestApi
) -> None:
    # Every request but the first waits in the rate limit when the 429 arrives; each
    # must wait out the Retry-After window too, not go out once the limit lets it.
    threaded_server.fail(Fault(429, {"Retry-After": "1"}, {"message": "slow down"}))
    rate = RateLimit(requests_per_second=5, burst=1, max_concurrency=4)
    sink = make_sink(rest_api.SINK_TYPE, single_record_config(threaded_server), rate_limit=rate)

    report = await sink.write(rows(0, 4), context())

    [limited] = [r for r in threaded_server.log if r.status == 429]
    later = [round(r.at - limited.at, 3) for r in threaded_server.log if r is not limited]
    assert len(later) == 4
    assert [t for t in later if t < 1.0] == [], "requests arrived within the Retry-After window"
    assert report.delivered == {"insert": 4}


def test_account_defaults_to_host_and_credential_digest() -> None:
    same = account_key(None, "https://api.x.io/v1/a", "token-1")
    assert same == account_key(None, "https://API.x.io/v2/b", "token-1")
    assert same != account_key(None, "https://api.x.io/v1/a", "token-2")
    assert "token-1" not in same
    assert account_key(RateLimit(requests_per_second=1, account="acme"), "https://x", "t") == "acme"
