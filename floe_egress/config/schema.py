"""The JSON Schema of floe.yaml, for `floe-egress schema` and editors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from floe_egress.config.models import FloeSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(*, sink_configs: Mapping[str, type[BaseModel]] | None = None) -> dict[str, Any]:
    """The schema of floe.yaml; given the `sink_config` model of each sink type by name,
    each `sink_config` is checked against the model of the `sink_type` beside it."""
    schema = FloeSpec.model_json_schema(by_alias=True, mode="validation")
    if sink_configs:
        _add_sink_configs(schema, sink_configs)
    return {"$schema": SCHEMA_DIALECT, **schema}


def _add_sink_configs(schema: dict[str, Any], sink_configs: Mapping[str, type[BaseModel]]) -> None:
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    rules: list[dict[str, Any]] = []
    for name, config_model in sorted(sink_configs.items()):
        prefix = f"sink_{name}_"
        sub = config_model.model_json_schema(
            by_alias=True, mode="validation", ref_template=f"#/$defs/{prefix}{{model}}"
        )
        for key, value in sub.pop("$defs", {}).items():
            defs[prefix + key] = value
        rules.append(
            {
                "if": {"properties": {"sink_type": {"const": name}}, "required": ["sink_type"]},
                "then": {"properties": {"sink_config": sub}},
            }
        )
    destination = defs["Destination"]
    destination["allOf"] = rules
    destination["properties"]["sink_type"]["examples"] = sorted(sink_configs)


__all__ = ["SCHEMA_DIALECT", "json_schema"]
