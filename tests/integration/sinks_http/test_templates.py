"""rest_api templates: the sandbox refuses what a template must not reach, the budget
stops what would not end, and a template that renders something other than JSON fails
its record alone."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from floe_egress.sinks.checks import check_destination_items
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.rest_config import RestApiConfig
from floe_egress.sinks.http.template_checks import template_problems
from floe_egress.sinks.http.templates import (
    TemplateError,
    compile_template,
    render,
    render_json,
)
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
    assert (
        problem.message
        == "destination 'crm': the template does not compile: line 2: unexpected '}'"
    )
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
    assert problem.message.startswith(
        "destination 'crm': a template cannot hold a secret reference"
    )


MACRO = "{% set s = 'x' * 1000000 %}{% macro m() %}{% for i in range(300) %}{{ s }}{% endfor %}"
SHARED = "{% set a = ['x'] %}" + "{% set a = [a, a] %}" * 40 + "{% set b = a %}"
LOOP = "{% macro m() %}{% for i in range(100000) %}"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        # 1: what macros, set and filter blocks return counts; so does all they write.
        (MACRO + "{% endmacro %}{{ m() | length }}", "characters in all"),
        (MACRO.replace("macro m()", "set t") + "{% endset %}{{ t | length }}", "in all"),
        (
            LOOP + "{% filter upper %}" + "x" * 10000 + "{% endfilter %}{% endfor %}"
            "{% endmacro %}{{ m() | length }}",
            "characters in all",
        ),
        (LOOP + "x" * 10000 + "{% endfor %}{% endmacro %}{{ m() | length }}", "over the limit"),
        # 2: every filter's arguments are sized, iterators item by item.
        ("{{ big | sort | length }}", "a value of more than 1,048,576"),
        ("{{ many | max | length }}", "a value of more than 1,048,576"),
        ("{{ big | unique(case_sensitive=false) | list }}", "a value of more than"),
        ("{{ {'a': big} | dictsort | length }}", "a value of more than"),
        ("{{ ('x' * 300) | list | map('replace', 'x', 'A' * 1000000) | sort }}", "over the limit"),
        # 3: integers of at most 14,000 bits, whatever the operator.
        ("{{ ('f' * 1000000) | int(base=16) // 7 }}", "more than 4,666 characters"),
        ("{{ ('f' * 4000) | int(base=16) // 7 }}", "an integer of more than 14,000 bits"),
        ("{{ (2 ** 13000) * (2 ** 13000) // 3 }}", "an integer of more than 14,000 bits"),
        ("{{ 10 ** 5000 }}", "an integer of more than 14,000 bits"),
        ("{{ -(2 ** 13999) - 2 ** 13999 }}", "an integer of more than 14,000 bits"),
        ("{{ [2 ** 13999, 2 ** 13999] | sum }}", "an integer of more than 14,000 bits"),
        # 4: a list holding one list many times over is sized as all its copies.
        (SHARED + "{{ a == b }}", "a value of more than 1,048,576"),
        (SHARED.replace("[a, a]", "(a, a)") + "{{ [a] | unique | list }}", "more than 1,048,576"),
        (SHARED.replace("[a, a]", "[a] * 2") + "{{ a == b }}", "over the limit of 1,048,576"),
        (SHARED.replace("[a, a]", "[a] + [a]") + "{{ a == b }}", "over the limit of 1,048,576"),
    ],
    ids=lambda value: value[:40],
)
def test_hostile_templates_are_stopped_quickly(source: str, says: str) -> None:
    big = ["A" * 1_000_000]
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"^record_template, line 1: stopped") as caught:
        rendered(source, big=big * 300, many=big * 6000)
    assert says in str(caught.value)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("literal", ["0x" + "f" * 5000, "9" * 5000])
def test_an_integer_literal_too_long_does_not_compile(literal: str) -> None:
    with pytest.raises(TemplateError, match=r"^record_template(, line 1)?: .*(14,000 bits|4300)"):
        compile_template("record_template", "{{ " + literal + " }}")


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": -Infinity}', "-Infinity is not a JSON value"),
        ('{"role": "user", "role": "admin"}', "the key 'role' appears twice in one object"),
        ('{{ "\\ud800" | tojson }}', "rendered text UTF-8 cannot carry"),
        ('"\\ud800"', "lone surrogate"),
    ],
)
def test_only_strict_json_passes(source: str, says: str) -> None:
    with pytest.raises(TemplateError, match=r"^body_template: ") as caught:
        render_json(compile_template("body_template", source), {}, 1 << 20)
    assert says in str(caught.value)


def test_text_written_plainly_is_json_escaped_so_a_value_cannot_add_fields() -> None:
    source = '{"name": "{{ record.name }}", "role": "user", "raw": {{ record.name | tojson }}}'
    name = 'x", "role": "admin\\\n'
    _, value = render_json(
        compile_template("record_template", source), {"record": {"name": name}}, 1 << 20
    )
    assert value == {"name": name, "role": "user", "raw": name}


async def test_a_body_renders_off_the_event_loop_and_a_bad_one_fails_its_records_only(
    make_sink: SinkFactory, rest_server: FakeRestApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real = rest_api.render_body

    def slow(*args: Any) -> bytes:
        threads.append(threading.current_thread())
        time.sleep(0.3)  # a render that takes its time: the loop must keep running
        return real(*args)

    monkeypatch.setattr(rest_api, "render_body", slow)
    note = '{{ ("\\ud800" if records[0].plan == "free" else "ok") | tojson }}'
    config = {
        "url": f"{rest_server.url}/v1/contacts",
        "headers": {"Authorization": "Bearer good"},
        "record_template": (
            '{"external_id": {{ record.external_id | tojson }}, '
            '"plan": "{{ "\\udfff" if record.plan == "team" else record.plan }}"}'
        ),
        "body_template": '{"op": {{ op | tojson }}, "records": {{ records | tojson }}, "n": '
        + note
        + "}",
        "max_records_per_request": 1,
    }
    sink = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING)
    rows = [
        {"customer_id": 1, "email": "a@x.io", "plan": "pro", "op": "insert"},
        {"customer_id": 2, "email": "b@x.io", "plan": "free", "op": "insert"},
        {"customer_id": 3, "email": "c@x.io", "plan": "team", "op": "insert"},
    ]
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        for _ in range(20):
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    report, _ = await asyncio.gather(sink.write(changes(rows, SCHEMA), context()), ticker())

    assert threads and all(t is not threading.main_thread() for t in threads)
    assert max(gaps) < 0.2
    assert report.delivered == {"insert": 1}
    body, record = sorted(report.failed, key=lambda f: str(f.key))
    assert (body.key, record.key) == ({"customer_id": 2}, {"customer_id": 3})
    assert "body_template: rendered text UTF-8 cannot carry" in body.reason
    assert "record_template: rendered text UTF-8 cannot carry" in record.reason
    [sent] = rest_server.requests("/v1/contacts", "POST")
    assert sent.json()["records"][0]["external_id"] == 1


def test_validate_reports_a_body_utf8_cannot_carry() -> None:
    table = Schema(
        NestedField(1, "customer_id", LongType(), required=True), identifier_field_ids=[1]
    )
    item = {
        "name": "crm",
        "sink_type": "rest_api",
        "sink_config": {
            "url": "https://api.example.com/v1/contacts",
            "body_template": '{"r": {{ records | tojson }}, "x": {{ "\\udfff" | tojson }}}',
        },
    }

    [(key, message)] = template_problems(item, table)

    assert key == ("sink_config", "body_template")
    assert message.startswith("rendered text UTF-8 cannot carry")
