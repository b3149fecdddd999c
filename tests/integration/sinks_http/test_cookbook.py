"""The README's destination cookbook, run: each example's YAML is read from the README
and sent through the real rest_api sink to a local server that answers as the vendor
documents; the bytes that arrive are checked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType
from ruamel.yaml import YAML

from floe_egress.errors import PermanentSinkError
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.template_checks import template_problems
from tests.fixtures.fake_apis import FakeBraze, FakeIterable, FakeRestApi, FakeSlackWebhook, Fault
from tests.fixtures.fake_apis.slack import WEBHOOK_PATH
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

README = Path(__file__).resolve().parents[3] / "README.md"
EXAMPLE = re.compile(r"<!-- cookbook: (\w+) -->\n```yaml\n(.*?)```", re.DOTALL)
SCHEMA = pa.schema([("customer_id", pa.int64()), ("email", pa.string()), ("plan", pa.string())])
TABLE_SCHEMA = Schema(
    NestedField(1, "customer_id", LongType(), required=True),
    NestedField(2, "email", StringType()),
    NestedField(3, "plan", StringType()),
    identifier_field_ids=[1],
)


def examples() -> dict[str, str]:
    return dict(EXAMPLE.findall(README.read_text(encoding="utf-8")))


def example(name: str, substitutions: dict[str, str]) -> dict[str, Any]:
    """The README's destination `name`, its secrets and hosts replaced for the test."""
    text = examples()[name]
    for old, new in substitutions.items():
        assert old in text, f"the {name} example no longer has {old}"
        text = text.replace(old, new)
    items = YAML(typ="safe").load(text)
    assert isinstance(items, list) and len(items) == 1
    return dict(items[0])


def build(make_sink: SinkFactory, item: dict[str, Any]) -> Any:
    return make_sink(
        rest_api.SINK_TYPE,
        item["sink_config"],
        destination=item["name"],
        mode=item["mode"],
        key=tuple(item["primary_key"]),
        mapping=item["field_mapping"],
    )


def rows(*specs: tuple[int, str, str, str]) -> pa.Table:
    return changes(
        [{"customer_id": c, "email": e, "plan": p, "op": op} for c, e, p, op in specs], SCHEMA
    )


def test_the_readme_has_the_tested_examples() -> None:
    assert sorted(examples()) == ["braze", "contacts", "iterable", "slack"]


@pytest.mark.parametrize("name", ["braze", "contacts", "iterable", "slack"])
def test_each_example_renders_against_the_table(name: str) -> None:
    item = YAML(typ="safe").load(examples()[name])[0]
    assert template_problems(item, TABLE_SCHEMA) == []


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackWebhook]:
    server = await FakeSlackWebhook().start()
    yield server
    await server.stop()


@pytest.fixture
async def braze() -> AsyncIterator[FakeBraze]:
    server = await FakeBraze(api_key="braze-key").start()
    yield server
    await server.stop()


@pytest.fixture
async def iterable() -> AsyncIterator[FakeIterable]:
    server = await FakeIterable(api_key="iterable-key").start()
    yield server
    await server.stop()


@pytest.fixture
async def contacts() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token="Bearer contacts-token").start()
    yield server
    await server.stop()


async def test_slack_posts_one_message_per_change(
    make_sink: SinkFactory, slack: FakeSlackWebhook
) -> None:
    item = example("slack", {"${env:SLACK_WEBHOOK_URL}": f"{slack.url}{WEBHOOK_PATH}"})
    sink = build(make_sink, item)
    batch = rows(
        (1, "one@x.io", "pro", "insert"),
        (2, "two@x.io", "team", "update"),
        (3, "three@x.io", "free", "delete"),
    )

    report = await sink.write(batch, context(item["name"], "append"))

    assert report.delivered == {"insert": 1, "update": 1, "delete": 1}
    assert report.failed == []
    assert sorted(r.body for r in slack.requests(WEBHOOK_PATH, "POST")) == [
        b'{"text": "one@x.io signed up on the pro plan"}',
        b'{"text": "three@x.io closed their account"}',
        b'{"text": "two@x.io moved to the team plan"}',
    ]
    assert {r.headers["Content-Type"] for r in slack.log} == {"application/json"}


async def test_braze_tracks_attributes_and_deletes_by_external_id(
    make_sink: SinkFactory, braze: FakeBraze
) -> None:
    item = example(
        "braze",
        {"https://rest.iad-01.braze.com": braze.url, "${env:BRAZE_API_KEY}": "braze-key"},
    )
    sink = build(make_sink, item)
    first = rows(
        (1, "one@x.io", "pro", "insert"),
        (2, "not-an-email", "pro", "insert"),
        (3, "three@x.io", "free", "update"),
    )

    report = await sink.write(first, context(item["name"], "mirror"))

    [track] = braze.requests("/users/track", "POST")
    assert track.headers["Authorization"] == "Bearer braze-key"
    assert track.body == (
        b'{"attributes": [{"external_id":"1","email":"one@x.io","plan":"pro"},'
        b'{"external_id":"2","email":"not-an-email","plan":"pro"},'
        b'{"external_id":"3","email":"three@x.io","plan":"free"}]}'
    )
    assert report.delivered == {"insert": 1, "update": 1}
    assert [(f.key, f.reason) for f in report.failed] == [
        ({"customer_id": 2}, "Invalid email address 'not-an-email'")
    ]
    assert braze.users == {
        "1": {"email": "one@x.io", "plan": "pro"},
        "3": {"email": "three@x.io", "plan": "free"},
    }

    second = rows((1, "one@x.io", "pro", "delete"), (3, "three@x.io", "free", "delete"))
    report = await sink.write(second, context(item["name"], "mirror", to_snapshot=3))

    [delete] = braze.requests("/users/delete", "POST")
    assert delete.body == b'{"external_ids": ["1","3"]}'
    assert report.delivered == {"delete": 2}
    assert braze.users == {}


async def test_iterable_bulk_update_fails_the_emails_it_lists_as_invalid(
    make_sink: SinkFactory, iterable: FakeIterable
) -> None:
    item = example(
        "iterable",
        {"https://api.iterable.com": iterable.url, "${env:ITERABLE_API_KEY}": "iterable-key"},
    )
    sink = build(make_sink, item)
    batch = rows(
        (1, "one@x.io", "pro", "insert"),
        (2, "two-at-x.io", "pro", "insert"),
        (3, "three@x.io", "free", "update"),
    )

    report = await sink.write(batch, context(item["name"], "upsert"))

    [bulk] = iterable.requests("/api/users/bulkUpdate", "POST")
    assert bulk.headers["Api-Key"] == "iterable-key"
    assert bulk.body == (
        b'{"users": [{"email":"one@x.io","dataFields":{"customerId":1,"plan":"pro"}},'
        b'{"email":"two-at-x.io","dataFields":{"customerId":2,"plan":"pro"}},'
        b'{"email":"three@x.io","dataFields":{"customerId":3,"plan":"free"}}]}'
    )
    assert report.delivered == {"insert": 1, "update": 1}
    assert [(f.key, f.reason) for f in report.failed] == [
        (
            {"customer_id": 2},
            "the destination listed this record's email 'two-at-x.io' in invalidEmails of "
            "its response",
        )
    ]
    assert iterable.users == {
        "one@x.io": {"customerId": 1, "plan": "pro"},
        "three@x.io": {"customerId": 3, "plan": "free"},
    }


async def test_contacts_one_request_per_record_with_the_key_in_the_url(
    make_sink: SinkFactory, contacts: FakeRestApi
) -> None:
    item = example(
        "contacts",
        {"https://api.example.com": contacts.url, "${env:CONTACTS_TOKEN}": "contacts-token"},
    )
    contacts.records = {"1": {"email": "one@x.io", "plan_tier": "FREE"}}
    sink = build(make_sink, item)
    batch = rows(
        (2, "two@x.io", "pro", "insert"),
        (3, "three@x.io", "team", "update"),
        (1, "one@x.io", "free", "delete"),
    )

    report = await sink.write(batch, context(item["name"], "mirror", to_snapshot=7))

    assert report.delivered == {"insert": 1, "update": 1, "delete": 1}
    sent = sorted((r.method, r.raw_path, r.body) for r in contacts.log)
    assert sent == [
        ("DELETE", "/v1/contacts/1", b""),
        (
            "PUT",
            "/v1/contacts/2",
            b'{"email": "two@x.io",\n "plan_tier": "PRO",\n "synced_from": "snapshot 7"}',
        ),
        (
            "PUT",
            "/v1/contacts/3",
            b'{"email": "three@x.io",\n "plan_tier": "TEAM",\n "synced_from": "snapshot 7"}',
        ),
    ]
    assert contacts.records == {
        "2": {"email": "two@x.io", "plan_tier": "PRO", "synced_from": "snapshot 7"},
        "3": {"email": "three@x.io", "plan_tier": "TEAM", "synced_from": "snapshot 7"},
    }


async def test_the_dlt_hand_off_sends_the_same_rendered_bytes(make_sink: SinkFactory) -> None:
    sent: dict[str, list[bytes]] = {}
    for handoff in ("direct", "dlt"):
        server = await FakeIterable(api_key="iterable-key").start()
        try:
            item = example(
                "iterable",
                {"https://api.iterable.com": server.url, "${env:ITERABLE_API_KEY}": "iterable-key"},
            )
            sink = make_sink(
                rest_api.SINK_TYPE,
                item["sink_config"],
                destination=f"iterable_{handoff}",
                mode=item["mode"],
                key=tuple(item["primary_key"]),
                mapping=item["field_mapping"],
                handoff=handoff,
            )
            batch = rows((1, "one@x.io", "pro", "insert"), (2, "two-at-x.io", "free", "update"))
            report = await sink.write(batch, context(item["name"], "upsert"))
            assert report.delivered == {"insert": 1}
            assert [f.key for f in report.failed] == [{"customer_id": 2}]
            sent[handoff] = [r.body for r in server.log]
        finally:
            await server.stop()
    assert sent["direct"] == sent["dlt"]
    assert len(sent["direct"]) == 1


async def test_slack_text_is_sent_as_utf8_and_a_refused_message_is_a_failed_row(
    make_sink: SinkFactory, slack: FakeSlackWebhook
) -> None:
    item = example("slack", {"${env:SLACK_WEBHOOK_URL}": f"{slack.url}{WEBHOOK_PATH}"})
    sink = build(make_sink, item)
    slack.fail(Fault(status=400, body="no_text"))

    report = await sink.write(
        rows((1, "zoë@x.io", "pro", "insert"), (2, "b@x.io", "pro", "insert")),
        context(item["name"], "append"),
    )

    assert report.delivered == {"insert": 1}
    [failed] = report.failed
    assert failed.reason == "no_text"
    assert failed.status == 400
    assert len(slack.messages) == 1
    bodies = sorted(r.body for r in slack.log)
    assert bodies == [
        b'{"text": "b@x.io signed up on the pro plan"}',
        '{"text": "zoë@x.io signed up on the pro plan"}'.encode(),
    ]


async def test_slack_rate_limit_is_retried_after_its_retry_after(
    make_sink: SinkFactory, slack: FakeSlackWebhook
) -> None:
    item = example("slack", {"${env:SLACK_WEBHOOK_URL}": f"{slack.url}{WEBHOOK_PATH}"})
    sink = build(make_sink, item)
    slack.fail(Fault(status=429, headers={"Retry-After": "1"}, body="rate_limited"))

    report = await sink.write(rows((1, "a@x.io", "pro", "insert")), context(item["name"], "append"))

    assert report.delivered == {"insert": 1}
    assert report.http_statuses == {429: 1, 200: 1}
    assert slack.messages == [{"text": "a@x.io signed up on the pro plan"}]


async def test_braze_refuses_a_wrong_key_for_the_whole_batch(
    make_sink: SinkFactory, braze: FakeBraze
) -> None:
    item = example(
        "braze", {"https://rest.iad-01.braze.com": braze.url, "${env:BRAZE_API_KEY}": "wrong"}
    )
    sink = build(make_sink, item)

    with pytest.raises(PermanentSinkError, match=r"HTTP 401.*Invalid API key"):
        await sink.write(rows((1, "a@x.io", "pro", "insert")), context(item["name"], "mirror"))
    assert braze.users == {}
