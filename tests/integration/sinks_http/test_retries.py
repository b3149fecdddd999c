"""Retries as the server sees them: Retry-After honoured, backoff, timeouts, give-up."""

from __future__ import annotations

import email.utils
import itertools
import math
import time
from collections.abc import AsyncIterator

import pyarrow as pa
import pytest

from floe_egress.config.models import RetryConfig
from floe_egress.errors import TransientSinkError
from floe_egress.sinks.http import rest_api
from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

MAPPING = {"customer_id": "external_id", "email": "email"}


def one_row(customer_id: int = 1) -> pa.Table:
    return changes([{"customer_id": customer_id, "email": f"c{customer_id}@x.io", "op": "insert"}])


@pytest.fixture
async def server() -> AsyncIterator[FakeRestApi]:
    api = await FakeRestApi().start()
    yield api
    await api.stop()


def config(server: FakeRestApi, **extra: object) -> dict[str, object]:
    return {"url": f"{server.url}/v1/contacts", **extra}


@pytest.mark.parametrize("kind", ["seconds", "http-date"])
async def test_429_retry_after_is_honoured(
    make_sink: SinkFactory, server: FakeRestApi, kind: str
) -> None:
    date = math.floor(time.time()) + 2
    value = "1" if kind == "seconds" else email.utils.formatdate(date, usegmt=True)
    server.fail(Fault(429, {"Retry-After": value}, {"message": "slow down"}))
    sink = make_sink(rest_api.SINK_TYPE, config(server), mapping=MAPPING)

    report = await sink.write(one_row(), context())

    first, retry = server.log
    assert (first.status, retry.status) == (429, 200)
    not_before = first.at + 1.0 if kind == "seconds" else float(date)
    assert retry.at >= not_before
    assert retry.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert report.http_statuses == {429: 1, 200: 1}
    assert report.rate_limit_wait_seconds >= not_before - first.at - 0.05
    assert server.records == {"1": {"external_id": 1, "email": "c1@x.io"}}


async def test_503_is_retried_and_the_row_delivered(
    make_sink: SinkFactory, server: FakeRestApi
) -> None:
    server.fail(Fault(503, body="upstream unavailable"), Fault(503, body="upstream unavailable"))
    sink = make_sink(rest_api.SINK_TYPE, config(server), mapping=MAPPING)

    report = await sink.write(one_row(), context())

    assert [r.status for r in server.log] == [503, 503, 200]
    assert report.delivered == {"insert": 1}
    assert report.requests == 3


async def test_server_errors_back_off_exponentially(
    make_sink: SinkFactory, server: FakeRestApi
) -> None:
    server.fail(Fault(500), Fault(502), Fault(500))
    retry = RetryConfig(max_attempts=5, initial_backoff_seconds=0.1, max_backoff_seconds=10)
    sink = make_sink(rest_api.SINK_TYPE, config(server), mapping=MAPPING, retry=retry)
    assert isinstance(sink, rest_api.RestApiSink)
    sink.client.jitter = lambda cap: cap  # the longest wait the backoff allows

    await sink.write(one_row(), context())

    times = [r.at for r in server.log]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [r.status for r in server.log] == [500, 502, 500, 200]
    assert [g >= floor for g, floor in zip(gaps, (0.1, 0.2, 0.4), strict=True)] == [True] * 3


async def test_timeouts_are_retried(make_sink: SinkFactory, server: FakeRestApi) -> None:
    server.fail(Fault(delay=1.0))
    sink = make_sink(rest_api.SINK_TYPE, config(server, timeout_seconds=0.3), mapping=MAPPING)

    report = await sink.write(one_row(), context())

    assert report.requests == 2
    assert report.http_statuses == {200: 1}
    assert report.delivered == {"insert": 1}


async def test_gives_up_after_max_attempts_then_the_next_write_goes_through(
    make_sink: SinkFactory, server: FakeRestApi
) -> None:
    server.fail(*(Fault(503) for _ in range(4)))
    sink = make_sink(rest_api.SINK_TYPE, config(server), mapping=MAPPING)

    with pytest.raises(TransientSinkError, match=r"destination 'crm'.*after 4 attempts.*503"):
        await sink.write(one_row(1), context())
    report = await sink.write(one_row(2), context(to_snapshot=3))

    assert len(server.log) == 5
    assert report.delivered == {"insert": 1}
    assert list(server.records) == ["2"]


async def test_retry_after_beyond_max_backoff_leaves_the_batch_for_later(
    make_sink: SinkFactory, server: FakeRestApi
) -> None:
    server.fail(Fault(429, {"Retry-After": "3600"}))
    sink = make_sink(rest_api.SINK_TYPE, config(server), mapping=MAPPING)

    with pytest.raises(TransientSinkError, match="3600 s") as caught:
        await sink.write(one_row(), context())

    assert caught.value.retry_after == 3600
    assert len(server.log) == 1


async def test_connection_refused_is_transient(
    make_sink: SinkFactory, unused_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/v1/contacts"
    retry = RetryConfig(max_attempts=2, initial_backoff_seconds=0.01)
    sink = make_sink(rest_api.SINK_TYPE, {"url": url}, mapping=MAPPING, retry=retry)

    with pytest.raises(TransientSinkError, match=r"destination 'crm'.*after 2 attempts"):
        await sink.write(one_row(), context())


async def test_a_server_side_rate_limit_is_waited_out_for_the_whole_account(
    make_sink: SinkFactory, server: FakeRestApi
) -> None:
    server.rate_limit(rps=50, burst=10)
    config = {"url": f"{server.url}/v1/contacts/{{customer_id}}", "method": "PUT"}
    retry = RetryConfig(max_attempts=5, initial_backoff_seconds=0.01, max_backoff_seconds=5)
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING, retry=retry)
    rows = [{"customer_id": i, "email": f"c{i}@x.io", "op": "insert"} for i in range(20)]

    report = await sink.write(changes(rows), context())

    assert len(server.records) == 20
    assert report.delivered == {"insert": 20}
    assert report.http_statuses[200] == 20
    assert 0 < report.http_statuses[429] <= 10
    assert report.rate_limit_wait_seconds >= 1.0
