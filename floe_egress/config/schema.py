"""The JSON Schema of floe.yaml, for `floe-egress schema` and editors."""

from __future__ import annotations

from typing import Any

from floe_egress.config.models import FloeSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(*, with_sink_types: bool = True) -> dict[str, Any]:
    """The schema of floe.yaml; with sink types, each `sink_config` is checked against the
    config model of the `sink_type` beside it (every type registered right now)."""
    schema = FloeSpec.model_json_schema(by_alias=True, mode="validation")
    if with_sink_types:
        _add_sink_configs(schema)
    return {"$schema": SCHEMA_DIALECT, **schema}


def _add_sink_configs(schema: dict[str, Any]) -> None:
    # Deferred import: the registry lives in sinks/, a later step of the data flow.
    from floe_egress.sinks.registry import sink_types

    defs: dict[str, Any] = schema.setdefault("$defs", {})
    rules: list[dict[str, Any]] = []
    for name, sink_type in sorted(sink_types().items()):
        prefix = f"sink_{name}_"
        sub = sink_type.config_model.model_json_schema(
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
    if rules:
        destination = defs["Destination"]
        destination["allOf"] = rules
        destination["properties"]["sink_type"]["examples"] = sorted(sink_types())


__all__ = ["SCHEMA_DIALECT", "json_schema"]
