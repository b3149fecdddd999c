"""The HTTP sink types as the registry and floe.yaml validation see them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from floe_egress.sinks.base import Sink
from floe_egress.sinks.http import hubspot, rest_api, salesforce
from floe_egress.sinks.registry import SinkType, get_sink_type
from tests.integration.sinks_http.conftest import SinkFactory


@pytest.mark.parametrize(
    ("name", "modes", "batch_size"),
    [
        ("rest_api", {"upsert", "update", "insert", "mirror", "append"}, 100),
        ("hubspot", {"upsert", "update", "insert", "mirror"}, 1000),
        ("salesforce", {"upsert", "update", "insert", "mirror"}, 2000),
    ],
)
def test_http_sink_types_are_registered(name: str, modes: set[str], batch_size: int) -> None:
    sink_type = get_sink_type(name)

    assert sink_type is not None
    assert sink_type.modes == modes
    assert sink_type.default_batch_size == batch_size


@pytest.mark.parametrize(
    ("name", "config"),
    [
        (
            "rest_api",
            {
                "url": "https://api.example.com/v1/contacts",
                "headers": {"Authorization": "Bearer ${env:CRM_TOKEN}"},
            },
        ),
        ("hubspot", {"object_type": "contacts", "access_token": "${env:HUBSPOT_TOKEN}"}),
        (
            "salesforce",
            {
                "instance_url": "${env:SF_URL}",
                "access_token": "${credential:sf_token}",
                "sobject": "Contact",
                "external_id_field": "External_Id__c",
            },
        ),
    ],
)
def test_configs_with_secret_references_validate(name: str, config: dict[str, object]) -> None:
    sink_type = get_sink_type(name)
    assert sink_type is not None

    model = sink_type.config_model.model_validate(config)

    assert model.model_config.get("frozen") is True
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        sink_type.config_model.model_validate({**config, "unknown_key": 1})


def test_registering_the_http_types_does_not_import_dlt() -> None:
    code = (
        "import sys; from floe_egress.sinks.registry import sink_types; sink_types(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dlt'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("sink_type", "config"),
    [
        (rest_api.SINK_TYPE, {"url": "https://api.example.com/v1/contacts"}),
        (hubspot.SINK_TYPE, {"object_type": "contacts", "access_token": "t"}),
        (
            salesforce.SINK_TYPE,
            {
                "instance_url": "https://x.my.salesforce.com",
                "access_token": "t",
                "sobject": "Contact",
            },
        ),
    ],
)
async def test_built_sinks_satisfy_the_sink_protocol(
    make_sink: SinkFactory, sink_type: SinkType, config: dict[str, str]
) -> None:
    sink = make_sink(sink_type, config)

    assert isinstance(sink, Sink)
    assert (sink.name, sink.sink_type) == ("crm", sink_type.name)
