"""`template_problems`: rest_api templates rendered against sample rows of a table."""

from __future__ import annotations

from typing import Any

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from floe_egress.sinks.http.template_checks import template_problems

SCHEMA = Schema(
    NestedField(1, "customer_id", LongType(), required=True),
    NestedField(2, "email", StringType()),
    NestedField(3, "plan", StringType()),
    NestedField(4, "active", BooleanType()),
    NestedField(5, "balance", DecimalType(12, 2)),
    NestedField(6, "score", DoubleType()),
    NestedField(7, "born", DateType()),
    NestedField(8, "wakes", TimeType()),
    NestedField(9, "seen_at", TimestampType()),
    NestedField(10, "signed_up_at", TimestamptzType()),
    NestedField(11, "token", UUIDType()),
    NestedField(12, "avatar", BinaryType()),
    NestedField(13, "tags", ListType(14, StringType())),
    NestedField(15, "address", StructType(NestedField(16, "city", StringType()))),
    NestedField(17, "traits", MapType(18, StringType(), 19, LongType())),
    identifier_field_ids=[1],
)
EVERY_COLUMN = """{
  "id": {{ record.customer_id | string | tojson }},
  "email": {{ record.email | tojson }},
  "active": {{ record.active | tojson }},
  "balance": {{ record.balance | tojson }},
  "score": {{ (record.score or 0) | round(1) | tojson }},
  "born": {{ record.born | tojson }},
  "wakes": {{ record.wakes | tojson }},
  "seen_at": {{ record.seen_at | tojson }},
  "signed_up_at": {{ record.signed_up_at | tojson }},
  "token": {{ record.token | tojson }},
  "avatar": {{ record.avatar | tojson }},
  "tags": {{ record.tags | tojson }},
  "city": {{ (record.address.city if record.address else none) | tojson }},
  "traits": {{ record.traits | tojson }}
}"""


def item(mode: str = "upsert", **sink_config: Any) -> dict[str, Any]:
    return {
        "name": "crm",
        "mode": mode,
        "sink_type": "rest_api",
        "sink_config": {"url": "https://api.example.com/v1/contacts", **sink_config},
    }


def test_a_template_over_every_column_type_renders() -> None:
    body = '{"users": {{ records | tojson }}, "n": {{ records | length }}}'
    assert template_problems(item(record_template=EVERY_COLUMN, body_template=body), SCHEMA) == []


def test_without_templates_there_is_nothing_to_check() -> None:
    assert template_problems(item(), SCHEMA) == []


def test_a_sink_config_with_problems_of_its_own_is_left_to_them() -> None:
    assert template_problems(item(url="ftp://nope", record_template="{{ x }}"), SCHEMA) == []


def test_a_misspelt_field_is_reported_at_its_key_and_line() -> None:
    template = '{\n  "email": {{ record.emial | tojson }}\n}'
    assert template_problems(item(record_template=template), SCHEMA) == [
        (
            ("sink_config", "record_template"),
            "line 2: 'dict object' has no attribute 'emial' (rendering sample insert rows)",
        )
    ]


def test_the_field_mapping_is_applied_before_rendering() -> None:
    mapped = {**item(record_template='{"id": {{ record.customer_id | tojson }}}')}
    mapped["field_mapping"] = {"customer_id": "external_id"}
    [(path, message)] = template_problems(mapped, SCHEMA)
    assert path == ("sink_config", "record_template")
    assert "has no attribute 'customer_id'" in message


def test_a_delete_sees_only_the_key_fields() -> None:
    template = '{"id": {{ record.customer_id | tojson }}, "email": {{ record.email | tojson }}}'
    assert template_problems(item("mirror", record_template=template), SCHEMA) == [
        (
            ("sink_config", "record_template"),
            "line 1: 'dict object' has no attribute 'email' (rendering sample delete rows; "
            "a delete's record holds the key fields only: customer_id)",
        )
    ]


def test_a_delete_route_of_its_own_takes_the_deletes() -> None:
    config = {
        "record_template": '{"email": {{ record.email | tojson }}}',
        "routes": {"delete": {"record_template": "{{ record.customer_id | tojson }}"}},
    }
    assert template_problems(item("mirror", **config), SCHEMA) == []


@pytest.mark.parametrize(
    ("config", "path", "says"),
    [
        (
            {"record_template": '{"email": {{ record.email }}}'},
            ("sink_config", "record_template"),
            "rendered text that is not JSON",
        ),
        (
            {"routes": {"insert": {"record_template": "{% for i in range(10**6) %}{% endfor %}"}}},
            ("sink_config", "routes", "insert", "record_template"),
            "stopped: it ran over its render budget",
        ),
        (
            {"body_template": '{"first": {{ records[2] | tojson }}}'},
            ("sink_config", "body_template"),
            "list object has no element 2 (rendering sample insert rows in a request of two)",
        ),
        (
            {"record_template": '{"plan": {{ record.plan.upper() | tojson }}}'},
            ("sink_config", "record_template"),
            "'None' has no attribute 'upper' (rendering sample insert rows with the optional "
            "columns null)",
        ),
    ],
)
def test_problems_name_the_template_key(
    config: dict[str, Any], path: tuple[str, ...], says: str
) -> None:
    [(found, message)] = template_problems(item("insert", **config), SCHEMA)
    assert found == path
    assert says in message
