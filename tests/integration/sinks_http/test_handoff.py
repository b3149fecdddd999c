"""The two hand-offs of an HTTP write (sinks/http/handoff.py): the daemon's sinks send
directly, the platform plugin's go through dlt, and both put the same requests on the
wire and report the same outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.config.models import Destination
from floe_egress.daemon.runtime import build_sink
from floe_egress.sinks.base import DeliveryReport
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.handoff import HandoffKind
from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("email", pa.string()),
        ("seen_at", pa.timestamp("us")),
        ("balance", pa.decimal128(12, 2)),
    ]
)
MAPPING = {"customer_id": "external_id", "email": "email", "seen_at": "seen_at", "balance": "b"}


def mixed_batch() -> pa.Table:
    """Inserts, updates and deletes; one email the API refuses; naive timestamps and
    decimals (which dlt's Parquet copy turns into UTC and its own types)."""
    rows: list[dict[str, Any]] = []
    for i in range(1, 8):
        email = "no-at-sign" if i == 4 else f"c{i}@x.io"
        op = "delete" if i == 7 else "update" if i % 3 == 0 else "insert"
        seen = dt.datetime(2026, 1, i, 12, 30, 15, 250_000)
        rows.append(
            {"customer_id": i, "email": email, "seen_at": seen, "balance": decimal.Decimal(i) / 4}
        )
        rows[-1]["op"] = op
    return changes(rows, SCHEMA)


async def write_through(
    handoff: HandoffKind, make_sink: SinkFactory
) -> tuple[DeliveryReport, list[tuple[str, str, bytes]], dict[str, Any]]:
    """Two writes of the mixed batch through a fresh API; what the API saw and stored."""
    server = await FakeRestApi(token="Bearer good").start()
    try:
        config = {
            "url": f"{server.url}/v1/contacts",
            "headers": {"Authorization": "Bearer good"},
            "record_ids_path": "ids",
            "decimals": "number",
        }
        sink = make_sink(
            rest_api.SINK_TYPE,
            config,
            destination=f"crm_{handoff}",
            mode="mirror",
            mapping=MAPPING,
            batch_size=3,
            handoff=handoff,
        )
        report = await sink.write(mixed_batch(), context("crm", mode="mirror"))
        requests = sorted(
            (r.headers["Idempotency-Key"], r.path, r.body) for r in server.log if r.method == "POST"
        )
        return report, requests, server.records
    finally:
        await server.stop()


async def test_direct_and_dlt_hand_offs_send_the_same_requests_and_report_the_same(
    make_sink: SinkFactory,
) -> None:
    direct, direct_requests, direct_records = await write_through("direct", make_sink)
    via_dlt, dlt_requests, dlt_records = await write_through("dlt", make_sink)

    assert direct_requests == dlt_requests
    assert direct_records == dlt_records
    assert direct_records["1"]["seen_at"] == "2026-01-01T12:30:15.250000Z"
    assert direct.delivered == via_dlt.delivered == {"insert": 3, "update": 2, "delete": 1}
    assert [f.key for f in direct.failed] == [f.key for f in via_dlt.failed] == [{"customer_id": 4}]
    assert direct.checksum == via_dlt.checksum
    assert direct.idempotency_keys == via_dlt.idempotency_keys
    assert direct.record_ids == via_dlt.record_ids


async def test_the_daemons_sinks_send_directly_without_a_dlt_pipeline(
    rest_server: FakeRestApi, tmp_path: Path
) -> None:
    dest = Destination.model_validate(
        {
            "name": "crm",
            "source_table": "gold.customers",
            "mode": "upsert",
            "sink_type": "rest_api",
            "allow_private_network": True,
            "sink_config": {
                "url": f"{rest_server.url}/v1/contacts",
                "headers": {"Authorization": "Bearer good"},
            },
            "field_mapping": {"customer_id": "external_id", "email": "email"},
        }
    )
    sink = build_sink(dest, ("customer_id",), tmp_path / "crm")
    try:
        rows = [{"customer_id": i, "email": f"c{i}@x.io", "op": "insert"} for i in (1, 2)]
        report = await sink.write(changes(rows), context())
    finally:
        await sink.close()

    assert report.delivered == {"insert": 2}
    assert sorted(rest_server.records) == ["1", "2"]
    assert not (tmp_path / "crm" / "dlt").exists()


async def test_a_cancelled_direct_write_leaves_the_next_one_working(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": {"Authorization": "Bearer good"}}
    sink = make_sink(rest_api.SINK_TYPE, config, mapping={"customer_id": "external_id"})
    rest_server.fail(Fault(delay=1.0))
    slow = asyncio.create_task(sink.write(changes([{"customer_id": 1, "op": "insert"}]), context()))
    await asyncio.wait_for(rest_server.arrived.wait(), 5)

    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    report = await sink.write(changes([{"customer_id": 2, "op": "insert"}]), context(to_snapshot=3))

    assert report.delivered == {"insert": 1}
    assert "2" in rest_server.records
