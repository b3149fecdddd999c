"""Redirects are never followed: a POST answered 302 would be re-sent as a GET without
its body, and the 200 that follows would count the batch as delivered. A 3xx fails the
request for good, naming the URL (without its query) and where it pointed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.errors import PermanentSinkError
from floe_egress.sinks.http import hubspot, rest_api, salesforce
from tests.fixtures.fake_apis import EchoApi, FakeHubSpot, FakeSalesforce, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

SCHEMA = pa.schema([("customer_id", pa.string()), ("email", pa.string())])


def rows(*keys: str, op: str = "insert") -> pa.Table:
    return changes([{"customer_id": k, "email": f"{k}@x.io", "op": op} for k in keys], SCHEMA)


@pytest.fixture
async def echo() -> AsyncIterator[EchoApi]:
    server = await EchoApi().start()
    yield server
    await server.stop()


def seen(server: Any) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.log]


async def test_a_redirected_batch_fails_and_is_not_resent_as_a_get(
    make_sink: SinkFactory, echo: EchoApi
) -> None:
    config = {
        "url": f"{echo.url}/redirect?to=/ok/v1/contacts&api_key=k-secret",
        "check_url": f"{echo.url}/ok/",
    }
    sink = make_sink(rest_api.SINK_TYPE, config, mapping={"customer_id": "id"})

    with pytest.raises(PermanentSinkError) as caught:
        await sink.write(rows("1", "2", "3"), context())

    assert seen(echo) == [("POST", "/redirect")]
    message = str(caught.value)
    assert f"POST {echo.url}/redirect " in message
    assert f"{echo.url}/ok/v1/contacts" in message, "the Location is named"
    assert "HTTP 302" in message and "redirect" in message
    assert "k-secret" not in message and "?" not in message, "no query string"


async def test_the_check_probe_does_not_follow_a_redirect(
    make_sink: SinkFactory, echo: EchoApi
) -> None:
    sink = make_sink(rest_api.SINK_TYPE, {"url": f"{echo.url}/redirect?to=/ok/v1/contacts"})

    with pytest.raises(PermanentSinkError, match=r"HEAD .*/redirect was answered HTTP 302"):
        await sink.check()

    assert seen(echo) == [("HEAD", "/redirect")]


@pytest.fixture
async def hubspot_api() -> AsyncIterator[FakeHubSpot]:
    server = await FakeHubSpot().start()
    yield server
    await server.stop()


@pytest.fixture
async def salesforce_api() -> AsyncIterator[FakeSalesforce]:
    server = await FakeSalesforce().start()
    yield server
    await server.stop()


async def test_hubspot_batch_write_redirected_to_a_listing_is_not_counted_delivered(
    make_sink: SinkFactory, hubspot_api: FakeHubSpot
) -> None:
    # Followed, the POST would become `GET /crm/v3/objects/contacts`, which answers 200.
    hubspot_api.fail(
        Fault(302, {"Location": "/crm/v3/objects/contacts"}, path_prefix="/crm/v3/objects")
    )
    config = {"object_type": "contacts", "access_token": "pat-good", "base_url": hubspot_api.url}
    sink = make_sink(hubspot.SINK_TYPE, config, mapping={"customer_id": "external_id"})

    with pytest.raises(PermanentSinkError, match=r"POST .*/batch/upsert was answered HTTP 302"):
        await sink.write(rows("1", "2"), context())

    assert seen(hubspot_api) == [("POST", "/crm/v3/objects/contacts/batch/upsert")]


async def test_an_oauth_token_request_does_not_follow_a_redirect(
    make_sink: SinkFactory, hubspot_api: FakeHubSpot
) -> None:
    hubspot_api.fail(Fault(302, {"Location": "/oauth/v1/elsewhere"}, path_prefix="/oauth"))
    grant = {
        "client_id": hubspot_api.client_id,
        "client_secret": hubspot_api.client_secret,
        "refresh_token": hubspot_api.refresh_token,
    }
    config = {"object_type": "contacts", "base_url": hubspot_api.url, "oauth": grant}
    sink = make_sink(hubspot.SINK_TYPE, config, mapping={"customer_id": "external_id"})

    with pytest.raises(PermanentSinkError) as caught:
        await sink.write(rows("1"), context())

    assert seen(hubspot_api) == [("POST", "/oauth/v1/token")]
    message = str(caught.value)
    assert "HubSpot token endpoint" in message and "HTTP 302" in message
    assert f"{hubspot_api.url}/oauth/v1/elsewhere" in message


@pytest.mark.parametrize(
    ("mode", "op", "redirected"),
    [
        ("upsert", "insert", ("PATCH", "/services/data/v60.0/composite/sobjects/Contact")),
        ("update", "update", ("GET", "/services/data/v60.0/query")),
    ],
    ids=["write", "id-lookup"],
)
async def test_salesforce_requests_do_not_follow_redirects(
    make_sink: SinkFactory,
    salesforce_api: FakeSalesforce,
    mode: Any,
    op: str,
    redirected: tuple[str, str],
) -> None:
    method, path = redirected
    salesforce_api.fail(Fault(301, {"Location": "/moved"}, path_prefix=path, method=method))
    config = {"instance_url": salesforce_api.url, "access_token": "sf-good", "sobject": "Contact"}
    mapping = {"customer_id": "External_Id__c", "email": "Email"}
    sink = make_sink(salesforce.SINK_TYPE, config, mapping=mapping, mode=mode)

    with pytest.raises(PermanentSinkError, match=rf"{method} .* was answered HTTP 301"):
        await sink.write(rows("C-1", op=op), context(mode=mode))

    [only] = salesforce_api.log
    assert only.method == method and only.path.startswith(path)
