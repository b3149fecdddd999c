"""rest_api against a real local server: what ends up stored, per mode and wire shape."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.config.models import SyncMode
from floe_egress.errors import PermanentSinkError, TransientSinkError
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.mapping import filter_for_mode
from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

MAPPING = {"customer_id": "external_id", "email": "email", "plan": "plan_tier"}
SCHEMA = pa.schema([("customer_id", pa.int64()), ("email", pa.string()), ("plan", pa.string())])
AUTH = {"Authorization": "Bearer good"}


def seed(server: FakeRestApi) -> None:
    server.records = {
        "1": {"external_id": 1, "email": "one@x.io", "plan_tier": "free"},
        "2": {"external_id": 2, "email": "two@x.io", "plan_tier": "free"},
    }


def batch(mode: SyncMode) -> pa.Table:
    rows = [
        {"customer_id": 3, "email": "three@x.io", "plan": "pro", "op": "insert"},
        {"customer_id": 2, "email": "two@x.io", "plan": "pro", "op": "update"},
        {"customer_id": 1, "email": "one@x.io", "plan": "free", "op": "delete"},
    ]
    return filter_for_mode(changes(rows, SCHEMA), mode)


ONE = {"external_id": 1, "email": "one@x.io", "plan_tier": "free"}
TWO_OLD = {"external_id": 2, "email": "two@x.io", "plan_tier": "free"}
TWO_NEW = {"external_id": 2, "email": "two@x.io", "plan_tier": "pro"}
THREE = {"external_id": 3, "email": "three@x.io", "plan_tier": "pro"}


@pytest.mark.parametrize(
    ("mode", "expected", "delivered"),
    [
        ("upsert", {"1": ONE, "2": TWO_NEW, "3": THREE}, {"insert": 1, "update": 1}),
        ("update", {"1": ONE, "2": TWO_NEW}, {"update": 1}),
        ("insert", {"1": ONE, "2": TWO_OLD, "3": THREE}, {"insert": 1}),
        ("mirror", {"2": TWO_NEW, "3": THREE}, {"insert": 1, "update": 1, "delete": 1}),
        ("append", {"1": ONE, "2": TWO_OLD}, {"insert": 1, "update": 1, "delete": 1}),
    ],
)
async def test_batch_wire_format_per_mode(
    make_sink: SinkFactory,
    rest_server: FakeRestApi,
    mode: SyncMode,
    expected: dict[str, Any],
    delivered: dict[str, int],
) -> None:
    seed(rest_server)
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": AUTH}
    sink = make_sink(rest_api.SINK_TYPE, config, mode=mode, mapping=MAPPING)

    report = await sink.write(batch(mode), context(mode=mode))

    assert rest_server.records == expected
    assert report.delivered == delivered
    assert report.failed == []
    sent = [r.json() for r in rest_server.requests("/v1/contacts", "POST")]
    assert {s["destination"] for s in sent} == {"crm"}
    assert {s["snapshot_id"] for s in sent} == {2}
    assert all(r.headers["Idempotency-Key"] for r in rest_server.log)


async def test_delete_records_carry_only_the_mapped_key(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": AUTH}
    sink = make_sink(rest_api.SINK_TYPE, config, mode="mirror", mapping=MAPPING)

    await sink.write(batch("mirror"), context(mode="mirror"))

    bodies = {r.json()["op"]: r.json() for r in rest_server.requests("/v1/contacts", "POST")}
    assert bodies["delete"]["records"] == [{"external_id": 1}]
    assert bodies["upsert"]["records"] == [THREE, TWO_NEW]


async def test_append_posts_every_change_as_an_event(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": AUTH}
    sink = make_sink(rest_api.SINK_TYPE, config, mode="append", mapping=MAPPING)

    await sink.write(batch("append"), context(mode="append", to_snapshot=7))

    assert rest_server.events == [
        {"op": "insert", "snapshot_id": 7, "record": THREE},
        {"op": "update", "snapshot_id": 7, "record": TWO_NEW},
        {"op": "delete", "snapshot_id": 7, "record": ONE},
    ]


async def test_url_template_sends_one_request_per_record(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    seed(rest_server)
    url = f"{rest_server.url}/v1/contacts/{{customer_id}}"
    config = {
        "url": url,
        "method": "PUT",
        "routes": {"delete": {"method": "DELETE"}},
        "headers": AUTH,
        "record_ids_path": "id",
    }
    sink = make_sink(rest_api.SINK_TYPE, config, mode="mirror", mapping=MAPPING)

    report = await sink.write(batch("mirror"), context(mode="mirror"))

    assert rest_server.records == {"2": TWO_NEW, "3": THREE}
    assert sorted((r.method, r.path) for r in rest_server.log) == [
        ("DELETE", "/v1/contacts/1"),
        ("PUT", "/v1/contacts/2"),
        ("PUT", "/v1/contacts/3"),
    ]
    assert sorted(report.record_ids) == ["id-2", "id-3"]
    assert len(report.idempotency_keys) == 3


async def test_routes_per_op_and_404_on_update_is_a_failed_row(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    seed(rest_server)
    one = f"{rest_server.url}/v1/contacts/{{external_id}}"
    config = {
        "url": f"{rest_server.url}/v1/contacts",
        "routes": {"update": {"method": "PATCH", "url": one}},
        "headers": AUTH,
    }
    rows = [
        {"customer_id": 2, "email": "two@x.io", "plan": "team", "op": "update"},
        {"customer_id": 9, "email": "nine@x.io", "plan": "team", "op": "update"},
    ]
    sink = make_sink(rest_api.SINK_TYPE, config, mode="update", mapping=MAPPING)

    report = await sink.write(changes(rows, SCHEMA), context(mode="update"))

    assert rest_server.records["2"]["plan_tier"] == "team"
    assert "9" not in rest_server.records
    assert [(f.key, f.status, f.reason) for f in report.failed] == [
        ({"customer_id": 9}, 404, "no contact 9")
    ]


@pytest.mark.parametrize(("shape", "path"), [("ids", "ids"), ("results", "results[].id")])
async def test_record_ids_come_from_the_configured_response_path(
    make_sink: SinkFactory, shape: str, path: str
) -> None:
    server = await FakeRestApi(ids_shape=shape).start()
    try:
        config = {"url": f"{server.url}/v1/contacts", "record_ids_path": path}
        sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)
        report = await sink.write(batch("upsert"), context())
    finally:
        await server.stop()
    assert report.record_ids == ["id-3", "id-2"]


def bad_rows(n: int, bad: set[int]) -> pa.Table:
    rows = [
        {
            "customer_id": i,
            "email": f"c{i}-at-x.io" if i in bad else f"c{i}@x.io",
            "plan": "pro",
            "op": "insert",
        }
        for i in range(n)
    ]
    return changes(rows, SCHEMA)


async def test_whole_batch_422_is_split_to_isolate_bad_records(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": AUTH}
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)

    report = await sink.write(bad_rows(16, {3, 11}), context())

    assert sorted(rest_server.records) == sorted(str(i) for i in range(16) if i not in (3, 11))
    assert sorted((f.key["customer_id"], f.status) for f in report.failed) == [(3, 422), (11, 422)]
    assert {f.reason for f in report.failed} == {
        "email 'c3-at-x.io' is not a valid address",
        "email 'c11-at-x.io' is not a valid address",
    }
    assert report.delivered == {"insert": 14}
    assert len(rest_server.log) <= 1 + 2 * 2 * 4


async def test_per_record_error_body_fails_only_those_records(
    make_sink: SinkFactory,
) -> None:
    server = await FakeRestApi(per_record_errors=True).start()
    try:
        sink = make_sink(rest_api.SINK_TYPE, {"url": f"{server.url}/v1/contacts"}, mapping=MAPPING)
        report = await sink.write(bad_rows(6, {1, 4}), context())
    finally:
        await server.stop()
    assert len(server.log) == 1
    assert sorted(server.records) == ["0", "2", "3", "5"]
    assert [(f.key, f.status, f.reason) for f in report.failed] == [
        ({"customer_id": 1}, 207, "email 'c1-at-x.io' is not a valid address"),
        ({"customer_id": 4}, 207, "email 'c4-at-x.io' is not a valid address"),
    ]
    assert report.delivered == {"insert": 4}


@pytest.mark.parametrize(
    "config",
    [
        {"headers": {"Authorization": "Bearer expired"}},
        {"auth": {"type": "bearer", "token": "expired"}},
        {},
    ],
)
async def test_check_fails_fast_on_bad_credentials(
    make_sink: SinkFactory, rest_server: FakeRestApi, config: dict[str, Any]
) -> None:
    sink = make_sink(rest_api.SINK_TYPE, {"url": f"{rest_server.url}/v1/contacts", **config})

    with pytest.raises(PermanentSinkError, match=r"destination 'crm'.*HTTP 401"):
        await sink.check()
    assert len(rest_server.log) == 1


async def test_check_passes_with_good_credentials(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {
        "url": f"{rest_server.url}/v1/contacts/{{id}}",
        "auth": {"type": "bearer", "token": "good"},
    }
    sink = make_sink(rest_api.SINK_TYPE, config)

    await sink.check()

    assert [(r.method, r.path) for r in rest_server.log] == [("HEAD", "/v1/contacts")]


async def test_check_fails_on_an_unreachable_api(
    make_sink: SinkFactory, unused_tcp_port: int
) -> None:
    sink = make_sink(rest_api.SINK_TYPE, {"url": f"http://127.0.0.1:{unused_tcp_port}/v1/contacts"})

    # An API that does not answer may answer on the next try: transient, not permanent.
    with pytest.raises(TransientSinkError, match=r"destination 'crm'.*unreachable"):
        await sink.check()


async def test_write_with_bad_credentials_fails_the_batch_without_retrying(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": {"Authorization": "nope"}}
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)

    with pytest.raises(PermanentSinkError, match=r"destination 'crm'.*401.*invalid or expired"):
        await sink.write(batch("upsert"), context())
    assert len(rest_server.log) == 1


@pytest.mark.parametrize(
    ("auth", "header", "query"),
    [
        ({"type": "basic", "username": "u", "password": "p"}, ("Authorization", "Basic dTpw"), {}),
        ({"type": "api_key", "value": "k1"}, ("X-API-Key", "k1"), {}),
        (
            {"type": "api_key", "value": "k1", "location": "query", "name": "key"},
            None,
            {"key": "k1"},
        ),
    ],
)
async def test_auth_kinds_reach_the_server(
    make_sink: SinkFactory,
    auth: dict[str, str],
    header: tuple[str, str] | None,
    query: dict[str, str],
) -> None:
    server = await FakeRestApi().start()
    try:
        config = {"url": f"{server.url}/v1/contacts", "auth": auth}
        sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)
        await sink.write(batch("upsert"), context())
    finally:
        await server.stop()
    [request] = server.log
    if header is not None:
        assert request.headers[header[0]] == header[1]
    assert request.query == query


async def test_idempotency_keys_and_checksum_are_deterministic(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts", "headers": AUTH}
    first = make_sink(rest_api.SINK_TYPE, config, mode="mirror", mapping=MAPPING)
    again = make_sink(rest_api.SINK_TYPE, config, mode="mirror", mapping=MAPPING, destination="crm")
    other_batch = make_sink(rest_api.SINK_TYPE, config, mode="mirror", mapping=MAPPING)

    a = await first.write(batch("mirror"), context(mode="mirror"))
    b = await again.write(batch("mirror"), context(mode="mirror"))
    c = await other_batch.write(batch("mirror"), context(mode="mirror", batch_index=1))

    assert a.idempotency_keys == b.idempotency_keys
    assert a.checksum == b.checksum
    assert set(a.idempotency_keys).isdisjoint(c.idempotency_keys)
    assert a.checksum == c.checksum
    sent = rest_server.log[:2]
    assert sorted(r.headers["Idempotency-Key"] for r in sent) == sorted(a.idempotency_keys)
    ordered = sorted(sent, key=lambda r: a.idempotency_keys.index(r.headers["Idempotency-Key"]))
    digest = hashlib.sha256(b"".join(r.body for r in ordered)).hexdigest()
    assert a.checksum == f"sha256:{digest}"
    assert a.bytes_transmitted == sum(len(r.body) for r in sent)


def test_config_rejects_unknown_keys_and_batch_templates() -> None:
    model = rest_api.SINK_TYPE.config_model
    with pytest.raises(ValueError, match="extra"):
        model.model_validate({"url": "https://x.io/v1", "urll": "typo"})
    with pytest.raises(ValueError, match="body: single"):
        model.model_validate({"url": "https://x.io/v1/{id}", "body": "batch"})
    secret = model.model_validate({"url": "${env:CRM_URL}", "headers": {"X": "${env:T}"}})
    assert secret.model_dump()["url"] == "${env:CRM_URL}"


async def test_a_refused_request_stops_the_rest_of_the_batch(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    rest_server.fail(
        Fault(401, body={"error": "token revoked"}, path_prefix="/v1/contacts/1"),
        Fault(delay=3.0, path_prefix="/v1/contacts/2"),
    )
    config = {"url": f"{rest_server.url}/v1/contacts/{{customer_id}}", "method": "PUT"}
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)
    rows = [
        {"customer_id": i, "email": f"c{i}@x.io", "plan": "pro", "op": "insert"} for i in (1, 2)
    ]

    started = time.monotonic()
    with pytest.raises(PermanentSinkError, match="token revoked"):
        await sink.write(changes(rows, SCHEMA), context())

    assert time.monotonic() - started < 2.5, "the slow request was not waited for"
    sending = [t for t in asyncio.all_tasks() if "send_splitting" in repr(t.get_coro())]
    assert sending == []
