"""rest_api templates: the sandbox refuses what a template must not reach, the budget
stops what would not end, and a template that renders something other than JSON fails
its record alone."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from floe_egress.sinks.checks import check_destination_items
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.rest_config import RestApiConfig
from floe_egress.sinks.http.templates import TemplateError, compile_template, render
from tests.fixtures.fake_apis import FakeRestApi
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

SCHEMA = pa.schema([("customer_id", pa.int64()), ("email", pa.string()), ("plan", pa.string())])
MAPPING = {"customer_id": "external_id", "email": "email", "plan": "plan"}
SECRET = "Bearer s3cr3t-token-value"


def rendered(source: str, **context: Any) -> str:
    return render(compile_template("record_template", source), context, 1 << 20)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ record.__class__ }}", "access to attribute '__class__' of 'dict' object is unsafe"),
        ("{{ range.__globals__ }}", "'__globals__' of 'function' object is unsafe"),
        ("{{ os.environ }}", "'os' is undefined"),
        ("{{ lipsum.__globals__['os'] }}", "'lipsum' is undefined"),
        ("{{ cycler.__init__.__globals__.os }}", "'__init__' of 'StrictUndefined' object"),
        ("{{ config }}", "'config' is undefined"),
        ("{{ headers }}", "'headers' is undefined"),
        ("{{ self._TemplateReference__context }}", "is unsafe"),
        ("{{ '{0.__class__}'.format(record) }}", "'format' of 'str' object is unsafe"),
        ("{{ '%s' % record }}", "`%` on text is not available"),
        ("{{ record.update({'a': 1}) }}", "'update' of 'dict' object is unsafe"),
        ("{{ record | attr('__class__') }}", "No filter named 'attr'"),
        ("{% include '/etc/passwd' %}", "no loader for this environment specified"),
        ("{% import 'os' as os %}", "no loader for this environment specified"),
        ("{{ namespace() }}", "'namespace' is undefined"),
    ],
)
def test_hostile_templates_are_refused(source: str, says: str) -> None:
    with pytest.raises(TemplateError, match=r"^record_template") as caught:
        rendered(source, record={"email": "a@x.io"})
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{% for i in range(10**9) %}{% endfor %}", "more than 100,000 loop steps"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            "more than 100,000 loop steps",
        ),
        ("{{ 'x' * 10**9 }}", "a text of 1,000,000,000 characters"),
        ("{{ 2 ** 100000000 }}", "an integer of more than 14,000 bits"),
        ("{% set a = 'x' * 600000 %}{{ a ~ a }}", "over the limit of 1,048,576"),
        (
            "{% set a = ['x' * 1000] %}{% set b = [a, a, a, a, a, a, a, a] %}"
            "{% set c = [b, b, b, b, b, b, b, b] %}{% set d = [c, c, c, c, c, c, c, c] %}"
            "{% set e = [d, d, d, d, d, d, d, d] %}{{ e | tojson }}",
            "a value of more than 1,048,576 characters",
        ),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself too deeply"),
        ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "calls itself too deeply"),
        (
            "{% for i in range(99000) %}{{ ('x' * 1000000) | length }}{% endfor %}",
            "it took longer than 1 s",
        ),
    ],
)
def test_templates_that_would_not_end_are_stopped_within_the_budget(source: str, says: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="stopped") as caught:
        rendered(source, record={})
    assert says in str(caught.value)
    assert time.monotonic() - started < 5


def test_an_error_names_the_template_line() -> None:
    with pytest.raises(TemplateError) as caught:
        rendered('{\n  "email": {{ record.emial | tojson }}\n}', record={"email": "a@x.io"})
    assert str(caught.value) == "record_template, line 2: 'dict object' has no attribute 'emial'"


def test_a_syntax_error_is_a_config_problem_at_the_template_key() -> None:
    item = {
        "name": "crm",
        "sink_type": "rest_api",
        "sink_config": {
            "url": "https://api.example.com/v1/contacts",
            "routes": {"delete": {"record_template": '{\n  "id": {{ record.id }\n}'}},
        },
    }

    [problem] = check_destination_items([item])

    assert problem.key == "ingestion.destinations[0].sink_config.routes.delete.record_template"
    assert problem.message == "the template does not compile: line 2: unexpected '}'"
    with pytest.raises(ValidationError):
        RestApiConfig.model_validate(item["sink_config"])


async def test_a_record_that_renders_invalid_json_fails_alone(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    # A trailing comma for the free plan only: those records are not JSON.
    template = (
        '{"external_id": {{ record.external_id | tojson }}, '
        '"plan": {{ record.plan | tojson }}{% if record.plan == "free" %},{% endif %}}'
    )
    config = {
        "url": f"{rest_server.url}/v1/contacts",
        "headers": {"Authorization": "Bearer good"},
        "record_template": template,
    }
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)
    batch = changes(
        [
            {"customer_id": 1, "email": "a@x.io", "plan": "pro", "op": "insert"},
            {"customer_id": 2, "email": "b@x.io", "plan": "free", "op": "insert"},
            {"customer_id": 3, "email": "c@x.io", "plan": "team", "op": "update"},
        ],
        SCHEMA,
    )

    report = await sink.write(batch, context())

    assert report.delivered == {"insert": 1, "update": 1}
    [failed] = report.failed
    assert failed.key == {"customer_id": 2}
    assert failed.reason.startswith("destination 'crm': record_template: rendered text that is not")
    assert "near" in failed.reason and "tojson" in failed.reason
    [sent] = rest_server.requests("/v1/contacts", "POST")
    assert sent.json()["records"] == [
        {"external_id": 1, "plan": "pro"},
        {"external_id": 3, "plan": "team"},
    ]


async def test_a_body_that_renders_invalid_json_fails_every_record_of_its_request(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    config = {
        "url": f"{rest_server.url}/v1/contacts",
        "headers": {"Authorization": "Bearer good"},
        "body_template": '{"records": {{ records | tojson }}',
    }
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)
    batch = changes(
        [
            {"customer_id": 1, "email": "a@x.io", "plan": "pro", "op": "insert"},
            {"customer_id": 2, "email": "b@x.io", "plan": "free", "op": "insert"},
        ],
        SCHEMA,
    )

    report = await sink.write(batch, context())

    assert report.delivered == {}
    assert [f.key for f in report.failed] == [{"customer_id": 1}, {"customer_id": 2}]
    assert all("body_template: rendered text that is not JSON" in f.reason for f in report.failed)
    assert rest_server.log == []


async def test_a_template_sees_the_record_and_nothing_of_the_configuration(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    rest_server.token = SECRET
    probes = "{{ headers }}{{ auth }}{{ config }}{{ environ }}{{ sink }}{{ secrets }}"
    config = {
        "url": f"{rest_server.url}/v1/contacts",
        "headers": {"Authorization": SECRET},
        "routes": {"delete": {"record_template": probes}},
        "record_template": (
            '{"external_id": {{ record.external_id | tojson }}, "seen": '
            '{{ {"record": record, "op": op, "destination": destination, '
            '"snapshot_id": snapshot_id} | tojson }}}'
        ),
    }
    sink = make_sink(rest_api.SINK_TYPE, config, mode="mirror", mapping=MAPPING)
    batch = changes(
        [
            {"customer_id": 1, "email": "a@x.io", "plan": "pro", "op": "insert"},
            {"customer_id": 2, "email": "b@x.io", "plan": "pro", "op": "delete"},
        ],
        SCHEMA,
    )

    report = await sink.write(batch, context(mode="mirror", to_snapshot=9))

    [sent] = rest_server.requests("/v1/contacts", "POST")
    assert sent.json()["records"] == [
        {
            "external_id": 1,
            "seen": {
                "record": {"external_id": 1, "email": "a@x.io", "plan": "pro"},
                "op": "insert",
                "destination": "crm",
                "snapshot_id": 9,
            },
        }
    ]
    [failed] = report.failed
    assert failed.reason == (
        "destination 'crm': routes.delete.record_template, line 1: 'headers' is undefined"
    )
    assert "s3cr3t" not in sent.body.decode()


def test_a_secret_reference_in_a_template_is_refused() -> None:
    item = {
        "name": "crm",
        "sink_type": "rest_api",
        "sink_config": {
            "url": "https://api.example.com/v1/contacts",
            "routes": {"upsert": {"body_template": '{"key": "${env:API_KEY}", "r": 1}'}},
        },
    }

    [problem] = check_destination_items([item])

    assert problem.key == "ingestion.destinations[0].sink_config.routes.upsert.body_template"
    assert problem.message.startswith("a template cannot hold a secret reference")
