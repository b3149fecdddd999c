"""Fixtures for the HTTP sinks: fake servers on the test loop and a sink builder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import RateLimit, RetryConfig, SyncMode
from floe_egress.sinks.base import Sink, WriteContext
from floe_egress.sinks.http.handoff import HandoffKind
from floe_egress.sinks.registry import BuildRequest, SinkType
from tests.fixtures.fake_apis import FakeHubSpot, FakeRestApi, FakeSalesforce

FAST_RETRY = RetryConfig(
    max_attempts=4, initial_backoff_seconds=0.01, max_backoff_seconds=3, timeout_seconds=2
)


def changes(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """A change batch: each row dict carries its op under "op"."""
    data = [{**{k: v for k, v in r.items() if k != "op"}, OP_COLUMN: r["op"]} for r in rows]
    if schema is not None:
        schema = schema.append(pa.field(OP_COLUMN, pa.string()))
    return pa.Table.from_pylist(data, schema=schema)


def context(
    destination: str = "crm", mode: SyncMode = "upsert", to_snapshot: int = 2, batch_index: int = 0
) -> WriteContext:
    return WriteContext(destination, mode, ("customer_id",), 1, to_snapshot, batch_index)


SinkFactory = Callable[..., Sink]


@pytest.fixture
async def make_sink(tmp_path: Path) -> AsyncIterator[SinkFactory]:
    built: list[Sink] = []

    def factory(
        sink_type: SinkType,
        config: dict[str, Any],
        *,
        destination: str = "crm",
        mode: SyncMode = "upsert",
        key: tuple[str, ...] = ("customer_id",),
        mapping: dict[str, str] | None = None,
        rate_limit: RateLimit | None = None,
        retry: RetryConfig = FAST_RETRY,
        batch_size: int | None = None,
        allow_private_network: bool = True,
        handoff: HandoffKind = "direct",
    ) -> Sink:
        """Builds a sink; it may reach the fake APIs on 127.0.0.1 unless told otherwise.
        It sends directly, as the daemon's do, unless `handoff="dlt"` (the plugin's)."""
        request = BuildRequest(
            destination=destination,
            sink_config=sink_type.config_model.model_validate(config),
            mode=mode,
            key=key,
            field_mapping=mapping,
            batch_size=batch_size,
            rate_limit=rate_limit,
            retry=retry,
            work_dir=tmp_path / destination,
            allow_private_network=allow_private_network,
            handoff=handoff,
        )
        sink = sink_type.build(request)
        built.append(sink)
        return sink

    yield factory
    for sink in built:
        await sink.close()


@pytest.fixture
async def rest_server() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token="Bearer good").start()
    yield server
    await server.stop()


@pytest.fixture
async def hubspot_server() -> AsyncIterator[FakeHubSpot]:
    server = await FakeHubSpot().start()
    yield server
    await server.stop()


@pytest.fixture
async def salesforce_server() -> AsyncIterator[FakeSalesforce]:
    server = await FakeSalesforce().start()
    yield server
    await server.stop()
