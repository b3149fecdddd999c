"""The SinkConnector contract: same shape as the floe platform's, detected by isinstance."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import pytest

from floe_egress.platform.contract import (
    EgressResult,
    IngestionConfig,
    IngestionPlugin,
    IngestionResult,
    SinkConfig,
    SinkConnector,
)
from floe_egress.platform.plugin import DltIngestionPlugin


def test_sink_connector_has_exactly_the_four_abstract_methods() -> None:
    assert SinkConnector.__abstractmethods__ == frozenset(
        {"list_available_sinks", "create_sink", "write", "get_source_config"}
    )


@pytest.mark.parametrize(
    "missing", ["list_available_sinks", "create_sink", "write", "get_source_config"]
)
def test_a_partial_implementation_cannot_be_instantiated(missing: str) -> None:
    methods: dict[str, Any] = {
        "list_available_sinks": lambda self: ["x"],
        "create_sink": lambda self, config: object(),
        "write": lambda self, sink, data, **kw: EgressResult(success=True),
        "get_source_config": lambda self, catalog_config: {},
    }
    del methods[missing]
    partial = type("Partial", (SinkConnector,), methods)
    with pytest.raises(TypeError, match=missing):
        partial()


def test_a_complete_independent_implementation_works_without_other_bases() -> None:
    class Minimal(SinkConnector):
        def list_available_sinks(self) -> list[str]:
            return ["rest_api"]

        def create_sink(self, config: SinkConfig) -> Any:
            return config

        def write(self, sink: Any, data: Any, **kwargs: Any) -> EgressResult:
            return EgressResult(success=True, rows_delivered=len(data))

        def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
            return dict(catalog_config)

    plugin = Minimal()
    assert isinstance(plugin, SinkConnector)
    assert not isinstance(plugin, IngestionPlugin)
    assert plugin.write(None, [1, 2]).rows_delivered == 2


def test_dlt_plugin_is_both_an_ingestion_plugin_and_a_sink_connector() -> None:
    plugin = DltIngestionPlugin({"type": "sql", "uri": "sqlite:///:memory:"})
    assert isinstance(plugin, SinkConnector)
    assert isinstance(plugin, IngestionPlugin)
    assert plugin.name == "floe-egress" and plugin.is_external is False


def test_an_ingestion_only_plugin_is_not_a_sink_connector() -> None:
    class CustomSourcePlugin(IngestionPlugin):
        name = "custom"
        version = "1.0.0"
        floe_api_version = "1.0"
        is_external = True

        def create_pipeline(self, config: IngestionConfig) -> Any:
            return config

        def run(self, pipeline: Any, **kwargs: Any) -> IngestionResult:
            return IngestionResult(success=True)

        def get_destination_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
            return {}

    plugin = CustomSourcePlugin()
    assert isinstance(plugin, IngestionPlugin)
    assert not isinstance(plugin, SinkConnector)


def test_dataclass_fields_and_defaults_match_the_platform() -> None:
    assert [(f.name) for f in fields(SinkConfig)] == [
        "sink_type",
        "connection_config",
        "field_mapping",
        "retry_config",
        "batch_size",
    ]
    config = SinkConfig(sink_type="rest_api")
    assert config.connection_config == {} and config.field_mapping is None
    assert config.retry_config is None and config.batch_size is None
    assert [f.name for f in fields(EgressResult)] == [
        "success",
        "rows_delivered",
        "bytes_transmitted",
        "duration_seconds",
        "checksum",
        "delivery_timestamp",
        "idempotency_key",
        "destination_record_ids",
        "errors",
    ]
    result = EgressResult(success=False)
    assert (result.rows_delivered, result.bytes_transmitted, result.duration_seconds) == (0, 0, 0.0)
    assert result.destination_record_ids == [] and result.errors == []
    assert EgressResult(success=True).errors is not result.errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sink_type": ""}, "sink_type must be a non-empty string"),
        ({"sink_type": "   "}, "sink_type must be a non-empty string"),
        ({"sink_type": "rest_api", "batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"sink_type": "rest_api", "batch_size": 100_001}, "batch_size must be <= 100_000"),
        (
            {"sink_type": "rest_api", "field_mapping": {"email": "e-mail"}},
            "field_mapping destination 'e-mail' for source 'email' must be a valid identifier",
        ),
        ({"sink_type": "rest_api", "field_mapping": {"id": "1abc"}}, "valid identifier"),
        (
            {"sink_type": "rest_api", "connection_config": {f"k{i}": i for i in range(51)}},
            "connection_config has 51 keys, max 50",
        ),
    ],
)
def test_invalid_sink_config_raises_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SinkConfig(**kwargs)


@pytest.mark.parametrize("batch_size", [1, 500, 100_000])
def test_valid_batch_sizes_are_accepted(batch_size: int) -> None:
    assert SinkConfig(sink_type="rest_api", batch_size=batch_size).batch_size == batch_size


def test_write_signature_takes_sink_data_and_kwargs() -> None:
    params = inspect.signature(SinkConnector.write).parameters
    assert list(params) == ["self", "sink", "data", "kwargs"]
