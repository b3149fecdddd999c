"""hubspot against a fake of the documented CRM v3 batch API: what HubSpot ends up holding."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pytest
from structlog.testing import capture_logs

from floe_egress.config.models import RateLimit, SyncMode
from floe_egress.errors import ConfigError, PermanentSinkError, TransientSinkError
from floe_egress.sinks.http import hubspot
from tests.fixtures.fake_apis import FakeHubSpot, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

MAPPING = {"customer_id": "external_id", "email": "email", "plan": "plan_tier"}
SCHEMA = pa.schema([("customer_id", pa.int64()), ("email", pa.string()), ("plan", pa.string())])
FAST = RateLimit(requests_per_second=1000, burst=100, max_concurrency=8)
NOT_STARTED = "https://hubspot.invalid"
"""For sinks that are built but never send anything."""


def config(server: FakeHubSpot, **extra: Any) -> dict[str, Any]:
    return {
        "object_type": "contacts",
        "access_token": "pat-good",
        "base_url": server.url,
        **extra,
    }


def seed(server: FakeHubSpot) -> None:
    for i, plan in ((1, "free"), (2, "free")):
        server._write(
            "contacts",
            None,
            {"external_id": str(i), "email": f"c{i}@x.io", "plan_tier": plan},
        )


def row(i: int, op: str, plan: str = "pro", email: str | None = None) -> dict[str, Any]:
    return {"customer_id": i, "email": email or f"c{i}@x.io", "plan": plan, "op": op}


def props(i: int, plan: str) -> dict[str, str]:
    return {"external_id": str(i), "email": f"c{i}@x.io", "plan_tier": plan}


CASES: list[tuple[SyncMode, list[dict[str, Any]], dict[str, Any], dict[str, int]]] = [
    (
        "upsert",
        [row(3, "insert"), row(2, "update")],
        {"1": props(1, "free"), "2": props(2, "pro"), "3": props(3, "pro")},
        {"insert": 1, "update": 1},
    ),
    (
        "update",
        [row(2, "update"), row(9, "update")],
        {"1": props(1, "free"), "2": props(2, "pro")},
        {"update": 1},
    ),
    (
        "insert",
        [row(3, "insert"), row(1, "insert", plan="team")],
        {"1": props(1, "free"), "2": props(2, "free"), "3": props(3, "pro")},
        {"insert": 1},
    ),
    (
        "mirror",
        [row(3, "insert"), row(2, "update"), row(1, "delete"), row(8, "delete")],
        {"2": props(2, "pro"), "3": props(3, "pro")},
        {"insert": 1, "update": 1, "delete": 2},
    ),
]


@pytest.mark.parametrize("multi_status", [False, True], ids=["plain", "multi-status"])
@pytest.mark.parametrize(
    ("mode", "rows", "expected", "delivered"), CASES, ids=[c[0] for c in CASES]
)
async def test_modes_leave_hubspot_holding_the_expected_objects(
    make_sink: SinkFactory,
    mode: SyncMode,
    rows: list[dict[str, Any]],
    expected: dict[str, Any],
    delivered: dict[str, int],
    multi_status: bool,
) -> None:
    server = await FakeHubSpot(multi_status=multi_status).start()
    try:
        seed(server)
        sink = make_sink(
            hubspot.SINK_TYPE, config(server), mode=mode, mapping=MAPPING, rate_limit=FAST
        )
        report = await sink.write(changes(rows, SCHEMA), context(mode=mode))
    finally:
        await server.stop()

    assert server.table() == expected
    assert report.delivered == delivered
    assert report.failed == []


async def test_upsert_returns_hubspot_ids_and_sends_the_documented_shape(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server), mapping=MAPPING, rate_limit=FAST)

    report = await sink.write(changes([row(5, "insert"), row(6, "insert")], SCHEMA), context())

    [request] = hubspot_server.log
    assert request.path == "/crm/v3/objects/contacts/batch/upsert"
    assert request.headers["Authorization"] == "Bearer pat-good"
    assert request.json()["inputs"][0] == {
        "idProperty": "external_id",
        "id": "5",
        "properties": {"email": "c5@x.io", "plan_tier": "pro"},
        "objectWriteTraceId": "0",
    }
    assert report.record_ids == ["1", "2"]


async def test_multi_status_errors_fail_only_their_records(make_sink: SinkFactory) -> None:
    server = await FakeHubSpot(multi_status=True).start()
    try:
        sink = make_sink(hubspot.SINK_TYPE, config(server), mapping=MAPPING, rate_limit=FAST)
        rows = [row(1, "insert"), row(2, "insert", email="two-at-x.io"), row(3, "insert")]
        report = await sink.write(changes(rows, SCHEMA), context())
    finally:
        await server.stop()

    assert len(server.log) == 1
    assert sorted(server.table()) == ["1", "3"]
    [failed] = report.failed
    assert (failed.key, failed.op, failed.status) == ({"customer_id": 2}, "insert", 207)
    assert "Email address two-at-x.io is invalid" in failed.reason


async def test_a_refused_batch_is_split_to_find_the_bad_record(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server), mapping=MAPPING, rate_limit=FAST)
    rows = [row(i, "insert", email="bad" if i == 5 else None) for i in range(8)]

    report = await sink.write(changes(rows, SCHEMA), context())

    assert sorted(hubspot_server.table()) == [str(i) for i in range(8) if i != 5]
    [failed] = report.failed
    assert failed.key == {"customer_id": 5}
    assert failed.status == 400
    assert "VALIDATION_ERROR" in failed.reason
    assert "Email address bad is invalid" in failed.reason
    assert report.delivered == {"insert": 7}


async def test_batches_are_cut_at_100_inputs(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server), mapping=MAPPING, rate_limit=FAST)

    report = await sink.write(changes([row(i, "insert") for i in range(250)], SCHEMA), context())

    assert sorted(len(r.json()["inputs"]) for r in hubspot_server.log) == [50, 100, 100]
    assert len(hubspot_server.table()) == 250
    assert len(report.record_ids) == 250


@pytest.mark.parametrize("retry_after", ["1", None], ids=["retry-after", "policy-default"])
async def test_secondly_429_is_waited_out(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot, retry_after: str | None
) -> None:
    hubspot_server.secondly_429(retry_after=retry_after)
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server), mapping=MAPPING, rate_limit=FAST)

    report = await sink.write(changes([row(1, "insert")], SCHEMA), context())

    first, retry = hubspot_server.log
    assert (first.status, retry.status) == (429, 200)
    assert retry.at - first.at >= 1.0
    assert report.http_statuses == {429: 1, 200: 1}
    assert list(hubspot_server.table()) == ["1"]


async def test_daily_limit_fails_the_batch_for_a_later_run(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    body = {
        "status": "error",
        "message": "You have reached your daily limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "DAILY",
    }
    hubspot_server.fail(Fault(429, body=body))
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server), mapping=MAPPING, rate_limit=FAST)

    started = time.monotonic()
    with pytest.raises(TransientSinkError, match=r"destination 'crm'.*daily API limit"):
        await sink.write(changes([row(1, "insert")], SCHEMA), context())

    assert len(hubspot_server.log) == 1
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"access_token": "pat-revoked"}, "INVALID_AUTHENTICATION"),
        ({"object_type": "widgets"}, "Unable to infer object type"),
    ],
)
async def test_check_fails_fast(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot, extra: dict[str, str], message: str
) -> None:
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server, **extra), mapping=MAPPING)

    with pytest.raises(PermanentSinkError, match=rf"destination 'crm'.*{message}"):
        await sink.check()
    assert len(hubspot_server.log) == 1


async def test_check_passes_for_a_custom_object(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server, object_type="2-1234567"))

    await sink.check()

    assert hubspot_server.log[0].path == "/crm/v3/objects/2-1234567"


def test_a_composite_key_needs_an_explicit_id_property(make_sink: SinkFactory) -> None:
    cfg = config(FakeHubSpot(), base_url=NOT_STARTED)
    with pytest.raises(ConfigError, match="id_property"):
        make_sink(hubspot.SINK_TYPE, cfg, key=("region", "customer_id"))
    make_sink(hubspot.SINK_TYPE, {**cfg, "id_property": "email"}, key=("region", "customer_id"))


def test_mirror_mode_needs_the_id_property_to_be_a_key_field(make_sink: SinkFactory) -> None:
    cfg = config(FakeHubSpot(), base_url=NOT_STARTED, id_property="email")
    with pytest.raises(
        ConfigError, match=r"'email' is not a key field \(key fields: customer_id\)"
    ):
        make_sink(hubspot.SINK_TYPE, cfg, mode="mirror")
    make_sink(hubspot.SINK_TYPE, cfg, mode="upsert")
    mapped = {"customer_id": "email"}
    make_sink(hubspot.SINK_TYPE, cfg, mode="mirror", mapping=mapped)


def test_append_is_not_a_hubspot_mode() -> None:
    assert hubspot.SINK_TYPE.modes == {"upsert", "update", "insert", "mirror"}


async def test_rows_the_mode_leaves_alone_are_logged_as_skipped(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    seed(hubspot_server)
    sink = make_sink(
        hubspot.SINK_TYPE, config(hubspot_server), mode="insert", mapping=MAPPING, rate_limit=FAST
    )

    with capture_logs() as logs:
        report = await sink.write(changes([row(1, "insert"), row(4, "insert")], SCHEMA), context())

    assert report.delivered == {"insert": 1}
    assert report.failed == []
    skipped = [e for e in logs if e["event"] == "rows_skipped"]
    assert skipped == [
        {
            "event": "rows_skipped",
            "destination": "crm",
            "mode": "insert",
            "insert": 1,
            "log_level": "info",
        }
    ]


# --- OAuth (public apps): 30-minute access tokens renewed from the refresh token ----------


def oauth_config(server: FakeHubSpot, **oauth: Any) -> dict[str, Any]:
    grant = {
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        **oauth,
    }
    return {"object_type": "contacts", "base_url": server.url, "oauth": grant}


async def test_oauth_access_tokens_are_fetched_and_renewed_when_they_expire(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    sink = make_sink(
        hubspot.SINK_TYPE, oauth_config(hubspot_server), mapping=MAPPING, rate_limit=FAST
    )
    await sink.check()
    await sink.write(changes([row(1, "insert")], SCHEMA), context())
    hubspot_server.expire_token()
    report = await sink.write(changes([row(2, "insert"), row(3, "insert")], SCHEMA), context())
    assert report.delivered == {"insert": 2} and report.failed == []
    assert sorted(hubspot_server.table()) == ["1", "2", "3"]
    assert len(hubspot_server.tokens_issued) == 2
    expired = [r for r in hubspot_server.log if r.status == 401]
    assert len(expired) == 1, "one request met the expired token and was repeated"


async def test_a_bad_refresh_token_names_the_setting(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    config = oauth_config(hubspot_server, refresh_token="hs-refresh-revoked")
    sink = make_sink(hubspot.SINK_TYPE, config, mapping=MAPPING, rate_limit=FAST)
    with pytest.raises(PermanentSinkError) as info:
        await sink.check()
    message = str(info.value)
    assert "the HubSpot token endpoint refused the refresh_token grant" in message
    assert "(BAD_REFRESH_TOKEN: missing or unknown refresh token)" in message
    assert "renew sink_config.oauth.refresh_token" in message
    assert "hs-refresh-revoked" not in message and hubspot_server.client_secret not in message


def test_hubspot_needs_one_credential() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give either access_token"):
        hubspot.HubSpotConfig.model_validate({"object_type": "contacts"})


async def test_a_value_json_cannot_carry_fails_its_row_and_the_others_arrive(
    make_sink: SinkFactory, hubspot_server: FakeHubSpot
) -> None:
    sink = make_sink(hubspot.SINK_TYPE, config(hubspot_server), mapping={**MAPPING, "seen": "seen"})
    seen = pa.array([0, 253_402_387_200_000_000, 0], pa.int64()).cast(pa.timestamp("us"))
    batch = changes([row(i, "insert") for i in (1, 2, 3)], SCHEMA).append_column("seen", seen)

    report = await sink.write(batch, context())

    assert sorted(hubspot_server.table()) == ["1", "3"]
    [failed] = report.failed
    assert (failed.key, failed.op) == ({"customer_id": 2}, "insert")
    assert failed.reason.startswith("column seen: a date or timestamp outside years 1-9999")
    assert report.delivered == {"insert": 2}
