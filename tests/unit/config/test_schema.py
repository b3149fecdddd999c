"""The JSON Schema of floe.yaml: well formed, documented, and it describes the example."""

from __future__ import annotations

import json
from typing import Any

import pytest

from floe_egress.config import json_schema
from floe_egress.config.yamlsource import parse_yaml
from floe_egress.spec import spec_schema
from tests.unit.config.conftest import EXAMPLE


@pytest.fixture
def schema() -> dict[str, Any]:
    return spec_schema()


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def _object_schemas(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    node = _deref(schema, node)
    options = node.get("anyOf", [node])
    return [_deref(schema, o) for o in options if _deref(schema, o).get("type") == "object"]


def unknown_keys(schema: dict[str, Any], node: dict[str, Any], value: Any, path: str) -> list[str]:
    """Keys of `value` that the schema does not allow (a structural check, no jsonschema)."""
    if isinstance(value, list):
        items = [
            _deref(schema, o).get("items", {})
            for o in _deref(schema, node).get("anyOf", [_deref(schema, node)])
        ]
        item_schema = next((i for i in items if i), {})
        return [
            bad
            for index, item in enumerate(value)
            for bad in unknown_keys(schema, item_schema, item, f"{path}[{index}]")
        ]
    if not isinstance(value, dict):
        return []
    objects = _object_schemas(schema, node)
    if not objects:
        return []
    obj = objects[0]
    props = obj.get("properties", {})
    bad = []
    for key, child in value.items():
        if key in props:
            bad += unknown_keys(schema, props[key], child, f"{path}.{key}")
        elif obj.get("additionalProperties") is False:
            bad.append(f"{path}.{key}")
    return bad


def test_schema_is_json_and_declares_its_dialect(schema: dict[str, Any]) -> None:
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "floe.yaml"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata"}


def test_every_ref_resolves(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}

    assert refs
    assert all(ref.removeprefix("#/$defs/") in schema["$defs"] for ref in refs)


def test_schema_accepts_every_key_of_the_example(schema: dict[str, Any]) -> None:
    example = parse_yaml(EXAMPLE.read_text()).data

    assert unknown_keys(schema, schema, example, "") == []


def test_schema_rejects_unknown_destination_key(schema: dict[str, Any]) -> None:
    example = parse_yaml(EXAMPLE.read_text()).data
    example["ingestion"]["destinations"][0]["shedule"] = {}

    assert unknown_keys(schema, schema, example, "") == [".ingestion.destinations[0].shedule"]


def test_fields_carry_descriptions(schema: dict[str, Any]) -> None:
    destination = schema["$defs"]["Destination"]["properties"]

    for key in ("name", "source_table", "sink_type", "sink_config", "primary_key", "batch_size"):
        assert destination[key].get("description"), key


def test_sink_config_checked_per_sink_type(schema: dict[str, Any]) -> None:
    rules = {
        rule["if"]["properties"]["sink_type"]["const"]: rule["then"]["properties"]["sink_config"]
        for rule in schema["$defs"]["Destination"]["allOf"]
    }

    assert rules["test_api"]["required"] == ["url"]
    assert rules["test_api"]["additionalProperties"] is False
    assert set(rules["test_db"]["properties"]) == {"credentials", "table", "port"}


def test_schema_without_sink_types_has_no_rules() -> None:
    assert "allOf" not in json_schema()["$defs"]["Destination"]
