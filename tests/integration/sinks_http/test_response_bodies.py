"""Answers are read up to a cap: a huge or endless body costs at most the cap, however
often the batch is split and the request repeated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pyarrow as pa
import pytest

from floe_egress.errors import PermanentSinkError
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.wire import MAX_ERROR_BODY
from tests.fixtures.fake_apis import EchoApi
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

HUGE = 96 * 2**20
MAPPING = {"customer_id": "id", "email": "email"}


def rows(count: int) -> pa.Table:
    return changes(
        [{"customer_id": i, "email": f"c{i}@x.io", "op": "insert"} for i in range(count)]
    )


async def streamed(server: EchoApi, answers: int, within: float = 5.0) -> list[int]:
    """What the server got out per answer, once it noted `answers` of them: it notes one
    when its write fails because the client hung up, which may come after the sink's
    write has returned."""
    async with asyncio.timeout(within):
        while True:
            server.noted.clear()
            if len(server.streamed) >= answers:
                return list(server.streamed)
            await server.noted.wait()


@pytest.fixture
async def huge() -> AsyncIterator[EchoApi]:
    server = await EchoApi(huge_bytes=HUGE).start()
    yield server
    await server.stop()


async def test_a_huge_error_body_is_cut_for_every_half_of_a_split_batch(
    make_sink: SinkFactory, huge: EchoApi
) -> None:
    sink = make_sink(rest_api.SINK_TYPE, {"url": f"{huge.url}/huge/422/v1"}, mapping=MAPPING)

    report = await sink.write(rows(4), context())

    sent = await streamed(huge, 7)
    assert len(sent) == 7, "4 rows split down to single records: 1 + 2 + 4 requests"
    # What the server got out before the client hung up: the cap plus what the socket
    # buffers of both ends held, never the 96 MiB it offered.
    assert max(sent) < MAX_ERROR_BODY + 16 * 2**20
    assert sorted(f.key["customer_id"] for f in report.failed) == [0, 1, 2, 3]
    assert report.delivered == {}
    for failed in report.failed:
        assert failed.status == 422
        assert failed.reason.startswith(
            "HTTP 422 (the body was larger than 1024 KiB and was not read further): "
            '{"message": "record refused"'
        )
        assert len(failed.reason) < 1000


async def test_a_2xx_body_too_large_to_read_whole_fails_the_batch(
    make_sink: SinkFactory, huge: EchoApi
) -> None:
    sink = make_sink(rest_api.SINK_TYPE, {"url": f"{huge.url}/huge/200/v1"}, mapping=MAPPING)

    with pytest.raises(PermanentSinkError, match=r"larger than 32 MiB.*max_records_per_request"):
        await sink.write(rows(2), context())

    sent = await streamed(huge, 1)
    assert len(sent) == 1
    assert max(sent) < HUGE // 2
