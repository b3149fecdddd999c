"""salesforce against a fake of the documented sObject Collections API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.config.models import RateLimit, SyncMode
from floe_egress.errors import PermanentSinkError, TransientSinkError
from floe_egress.sinks.http import salesforce
from tests.fixtures.fake_apis import FakeSalesforce, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

MAPPING = {"customer_id": "External_Id__c", "email": "Email", "name": "LastName"}
SCHEMA = pa.schema([("customer_id", pa.string()), ("email", pa.string()), ("name", pa.string())])
FAST = RateLimit(requests_per_second=1000, burst=100, max_concurrency=8)


def config(server: FakeSalesforce, **extra: Any) -> dict[str, Any]:
    return {
        "instance_url": server.url,
        "access_token": "sf-good",
        "sobject": "Contact",
        **extra,
    }


def row(key: str, op: str, name: str = "New", email: str | None = None) -> dict[str, Any]:
    return {"customer_id": key, "email": email or f"{key}@x.io", "name": name, "op": op}


def rec(key: str, name: str) -> dict[str, str]:
    return {"External_Id__c": key, "Email": f"{key}@x.io", "LastName": name}


def seed(server: FakeSalesforce) -> None:
    for key in ("C-1", "C-2"):
        server._store(rec(key, "Old"), None)


CASES: list[tuple[SyncMode, list[dict[str, Any]], dict[str, Any], dict[str, int]]] = [
    (
        "upsert",
        [row("C-3", "insert"), row("C-2", "update")],
        {"C-1": rec("C-1", "Old"), "C-2": rec("C-2", "New"), "C-3": rec("C-3", "New")},
        {"insert": 1, "update": 1},
    ),
    (
        "update",
        [row("C-2", "update"), row("C-9", "update")],
        {"C-1": rec("C-1", "Old"), "C-2": rec("C-2", "New")},
        {"update": 1},
    ),
    (
        "insert",
        [row("C-3", "insert"), row("C-1", "insert")],
        {"C-1": rec("C-1", "Old"), "C-2": rec("C-2", "Old"), "C-3": rec("C-3", "New")},
        {"insert": 1},
    ),
    (
        "mirror",
        [row("C-3", "insert"), row("C-2", "update"), row("C-1", "delete"), row("C'8", "delete")],
        {"C-2": rec("C-2", "New"), "C-3": rec("C-3", "New")},
        {"insert": 1, "update": 1, "delete": 2},
    ),
]


@pytest.mark.parametrize(
    ("mode", "rows", "expected", "delivered"), CASES, ids=[c[0] for c in CASES]
)
async def test_modes_leave_salesforce_holding_the_expected_records(
    make_sink: SinkFactory,
    salesforce_server: FakeSalesforce,
    mode: SyncMode,
    rows: list[dict[str, Any]],
    expected: dict[str, Any],
    delivered: dict[str, int],
) -> None:
    seed(salesforce_server)
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mode=mode, mapping=MAPPING, rate_limit=FAST
    )

    report = await sink.write(changes(rows, SCHEMA), context(mode=mode))

    assert salesforce_server.table() == expected
    assert report.delivered == delivered
    assert report.failed == []


async def test_upsert_uses_the_external_id_route_and_returns_ids(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )

    report = await sink.write(changes([row("C-5", "insert")], SCHEMA), context())

    [request] = salesforce_server.log
    assert (request.method, request.path) == (
        "PATCH",
        "/services/data/v60.0/composite/sobjects/Contact/External_Id__c",
    )
    assert request.json() == {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, **rec("C-5", "New")}],
    }
    assert report.record_ids == ["003000000000000001"]


async def test_per_record_errors_become_failed_rows(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )
    rows = [row("C-1", "insert"), row("C-2", "insert", email="nope"), row("C-3", "insert")]

    report = await sink.write(changes(rows, SCHEMA), context())

    assert len(salesforce_server.log) == 1
    assert sorted(salesforce_server.table()) == ["C-1", "C-3"]
    [failed] = report.failed
    assert failed.key == {"customer_id": "C-2"}
    assert (
        failed.reason == "INVALID_EMAIL_ADDRESS: Email: invalid email address: nope (fields: Email)"
    )


async def test_a_value_salesforce_cannot_parse_is_isolated_by_splitting(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    mapping = {**MAPPING, "born": "Birthdate"}
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=mapping, rate_limit=FAST
    )
    schema = SCHEMA.append(pa.field("born", pa.string()))
    rows = [
        {**row(f"C-{i}", "insert"), "born": "1990-13-45" if i == 2 else "1990-01-31"}
        for i in range(6)
    ]

    report = await sink.write(changes(rows, schema), context())

    assert sorted(salesforce_server.table()) == [f"C-{i}" for i in range(6) if i != 2]
    [failed] = report.failed
    assert (failed.key, failed.status) == ({"customer_id": "C-2"}, 400)
    assert failed.reason.startswith("JSON_PARSER_ERROR: Cannot deserialize instance of date")


async def test_dates_reach_salesforce_as_iso_dates(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    mapping = {**MAPPING, "born": "Birthdate"}
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=mapping, rate_limit=FAST
    )
    schema = SCHEMA.append(pa.field("born", pa.date32()))

    await sink.write(
        changes([{**row("C-1", "insert"), "born": dt.date(1990, 1, 31)}], schema), context()
    )

    assert salesforce_server.table()["C-1"]["Birthdate"] == "1990-01-31"


async def test_records_are_sent_200_at_a_time(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )

    await sink.write(changes([row(f"C-{i}", "insert") for i in range(450)], SCHEMA), context())

    assert sorted(len(r.json()["records"]) for r in salesforce_server.log) == [50, 200, 200]
    assert len(salesforce_server.table()) == 450


async def test_503_is_retried(make_sink: SinkFactory, salesforce_server: FakeSalesforce) -> None:
    salesforce_server.fail(Fault(503, body="Service Unavailable"))
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )

    report = await sink.write(changes([row("C-1", "insert")], SCHEMA), context())

    assert [r.status for r in salesforce_server.log] == [503, 200]
    assert report.delivered == {"insert": 1}


async def test_daily_request_limit_fails_the_batch_without_retrying(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    salesforce_server.daily_limit()
    sink = make_sink(
        salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )

    with pytest.raises(TransientSinkError, match=r"destination 'crm'.*24-hour.*TotalRequests"):
        await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    assert len(salesforce_server.log) == 1


async def test_expired_session_fails_a_write_fast(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    sink = make_sink(
        salesforce.SINK_TYPE,
        config(salesforce_server, access_token="expired"),
        mapping=MAPPING,
        rate_limit=FAST,
    )

    with pytest.raises(PermanentSinkError, match="INVALID_SESSION_ID"):
        await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    assert len(salesforce_server.log) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"access_token": "expired"}, "INVALID_SESSION_ID: Session expired or invalid"),
        ({"sobject": "Widget__c"}, "NOT_FOUND"),
        ({"external_id_field": "Email"}, "not an External ID field"),
    ],
)
async def test_check_fails_fast(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce, extra: dict[str, str], message: str
) -> None:
    sink = make_sink(salesforce.SINK_TYPE, config(salesforce_server, **extra), mapping=MAPPING)

    with pytest.raises(PermanentSinkError, match=rf"destination 'crm'.*{message}"):
        await sink.check()


async def test_check_passes(make_sink: SinkFactory, salesforce_server: FakeSalesforce) -> None:
    sink = make_sink(salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING)

    await sink.check()

    assert salesforce_server.log[0].path == "/services/data/v60.0/sobjects/Contact/describe"


def test_mirror_mode_needs_the_external_id_field_to_be_a_key_field(
    make_sink: SinkFactory,
) -> None:
    from floe_egress.errors import ConfigError

    base = {
        "instance_url": "https://x.my.salesforce.com",
        "access_token": "t",
        "sobject": "Contact",
    }
    cfg = {**base, "external_id_field": "Email"}
    with pytest.raises(
        ConfigError, match=r"'Email' is not a key field \(key fields: External_Id__c\)"
    ):
        make_sink(salesforce.SINK_TYPE, cfg, mode="mirror", mapping=MAPPING)
    make_sink(salesforce.SINK_TYPE, cfg, mode="upsert", mapping=MAPPING)
    make_sink(salesforce.SINK_TYPE, base, mode="mirror", mapping=MAPPING)


# --- OAuth: sessions that renew themselves -------------------------------------------------


def oauth_config(server: FakeSalesforce, **grant: Any) -> dict[str, Any]:
    oauth = {
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "refresh_token": server.refresh_token,
        **grant,
    }
    return {"instance_url": server.url, "sobject": "Contact", "oauth": oauth}


def token_requests(server: FakeSalesforce) -> list[Any]:
    return [r for r in server.log if r.path == "/services/oauth2/token"]


async def test_oauth_gets_a_token_and_renews_it_once_when_the_session_expires(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    sink = make_sink(
        salesforce.SINK_TYPE,
        oauth_config(salesforce_server),
        mapping=MAPPING,
        rate_limit=FAST,
        batch_size=2,
    )
    await sink.check()
    first = await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    assert first.delivered == {"insert": 1}
    assert len(token_requests(salesforce_server)) == 1, "one token for the check and the write"

    salesforce_server.expire_session()
    # Three requests in flight meet the expired session; one renewal serves them all.
    rows = [row(f"C-{i}", "insert") for i in range(2, 8)]
    second = await sink.write(changes(rows, SCHEMA), context(batch_index=1))
    assert second.delivered == {"insert": 6} and second.failed == []
    assert sorted(salesforce_server.table()) == [f"C-{i}" for i in range(1, 8)]
    assert len(salesforce_server.tokens_issued) == 2
    form = token_requests(salesforce_server)[-1].body.decode()
    assert "grant_type=refresh_token" in form and "refresh_token=refresh-9c1e77" in form


async def test_client_credentials_grant(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    config = oauth_config(salesforce_server, grant_type="client_credentials")
    del config["oauth"]["refresh_token"]
    sink = make_sink(salesforce.SINK_TYPE, config, mapping=MAPPING, rate_limit=FAST)
    report = await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    assert report.delivered == {"insert": 1}
    assert "grant_type=client_credentials" in token_requests(salesforce_server)[0].body.decode()


async def test_a_refused_grant_says_what_to_renew_and_leaks_nothing(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    from floe_egress.config.secrets import redact

    config = oauth_config(salesforce_server, refresh_token="refresh-revoked-5b")
    sink = make_sink(salesforce.SINK_TYPE, config, mapping=MAPPING, rate_limit=FAST)
    with pytest.raises(PermanentSinkError) as info:
        await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    message = str(info.value)
    assert "the Salesforce token endpoint refused the refresh_token grant" in message
    assert "invalid_grant: expired access/refresh token" in message
    assert "renew sink_config.oauth.refresh_token" in message
    assert "refresh-revoked-5b" not in message and salesforce_server.client_secret not in message
    assert salesforce_server.table() == {}
    # Tokens the sink was given are masked wherever the redaction runs (logs, /status).
    good = make_sink(
        salesforce.SINK_TYPE, oauth_config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )
    await good.write(changes([row("C-2", "insert")], SCHEMA), context())
    token = salesforce_server.tokens_issued[-1]
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


async def test_a_fixed_access_token_still_fails_fast_and_points_at_oauth(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    sink = make_sink(salesforce.SINK_TYPE, config(salesforce_server), mapping=MAPPING)
    salesforce_server.expire_session()
    with pytest.raises(PermanentSinkError, match=r"configure sink_config\.oauth"):
        await sink.write(changes([row("C-1", "insert")], SCHEMA), context())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "give either access_token or oauth"),
        ({"access_token": "t", "oauth": {"client_id": "a", "refresh_token": "r"}}, "either"),
        ({"oauth": {"client_id": "a"}}, "grant_type refresh_token needs refresh_token"),
        (
            {"oauth": {"client_id": "a", "grant_type": "client_credentials"}},
            "client_credentials needs client_secret",
        ),
    ],
)
def test_oauth_settings_are_checked(config: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    base = {"instance_url": "https://x.my.salesforce.com", "sobject": "Contact"}
    with pytest.raises(ValidationError, match=message):
        salesforce.SalesforceConfig.model_validate({**base, **config})


async def test_a_token_endpoint_outage_is_transient(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    salesforce_server.fail(
        Fault(503, body={"error": "unavailable"}, path_prefix="/services/oauth2")
    )
    sink = make_sink(
        salesforce.SINK_TYPE, oauth_config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )
    with pytest.raises(TransientSinkError, match="token endpoint answered HTTP 503"):
        await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    report = await sink.write(changes([row("C-1", "insert")], SCHEMA), context())
    assert report.delivered == {"insert": 1}, "the next write gets a token"


async def test_only_the_live_tokens_stay_masked(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    from floe_egress.config.secrets import redact

    sink = make_sink(
        salesforce.SINK_TYPE, oauth_config(salesforce_server), mapping=MAPPING, rate_limit=FAST
    )
    for i in range(4):
        await sink.write(changes([row(f"C-{i}", "insert")], SCHEMA), context(batch_index=i))
        salesforce_server.expire_session()
    issued = salesforce_server.tokens_issued
    assert len(issued) == 4
    assert [redact(t) == "***" for t in issued] == [False, False, True, True]


async def test_a_value_json_cannot_carry_fails_its_row_and_the_others_arrive(
    make_sink: SinkFactory, salesforce_server: FakeSalesforce
) -> None:
    mapping = {**MAPPING, "born": "Birthdate"}
    sink = make_sink(salesforce.SINK_TYPE, config(salesforce_server), mapping=mapping)
    born = pa.array([0, 2_932_897, 0], pa.int32()).cast(pa.date32())  # 10000-01-01
    rows = [row(k, "insert") for k in ("C-1", "C-2", "C-3")]
    batch = changes(rows, SCHEMA).append_column("born", born)

    report = await sink.write(batch, context())

    assert sorted(salesforce_server.table()) == ["C-1", "C-3"]
    [failed] = report.failed
    assert (failed.key, failed.op) == ({"customer_id": "C-2"}, "insert")
    assert failed.reason.startswith("column born: a date or timestamp outside years 1-9999")
    assert report.delivered == {"insert": 2}
