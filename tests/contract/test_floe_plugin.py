"""floe-egress as a floe plugin: floe-core's contract (0.1.0a1), its validation quirks and
our stricter checks, discovery, configuration and lifecycle.

These run without floe-core installed (the contract then comes from fallback.py); the
tests marked `floe_core` (tests/floe_core/) run the same checks against floe-core itself.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from floe_egress import __version__
from floe_egress.errors import ConfigError
from floe_egress.platform.contract import (
    HealthState,
    IngestionConfig,
    PluginMetadata,
    SinkConfig,
    check_sink_config,
)
from floe_egress.platform.lifecycle import PluginSettings
from floe_egress.platform.plugin import FloeEgressPlugin

# floe-core 0.1.0a1's SinkConfig.__post_init__ on inputs it does not expect: what it
# does (and so what the fallback does), and what create_sink then says.
QUIRKS: list[tuple[dict[str, Any], type[BaseException] | None, str]] = [
    ({"batch_size": True}, None, "batch_size must be a whole number, got True"),
    ({"batch_size": 1.5}, None, "batch_size must be a whole number, got 1.5"),
    ({"field_mapping": {"id": "abc\n"}}, None, "destination 'abc\\n' for source 'id'"),
    ({"sink_type": 123}, AttributeError, "sink_type must be a non-empty string, got 123"),
    ({"batch_size": "10"}, TypeError, "batch_size must be a whole number, got '10'"),
    ({"field_mapping": {"id": 5}}, TypeError, "field_mapping 'id': 5: both must be strings"),
]


def built_around(kwargs: dict[str, Any]) -> Any:
    """A SinkConfig holding `kwargs` as floe-core would not let us construct it."""
    config = object.__new__(SinkConfig)
    values = {f.name: f.default for f in dataclasses.fields(SinkConfig)}
    values.update({"sink_type": "rest_api", "connection_config": {}})
    values.update(kwargs)
    for name, value in values.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize(("kwargs", "floe_core_raises", "ours"), QUIRKS)
def test_sink_config_validates_as_floe_core_does_and_create_sink_as_we_must(
    kwargs: dict[str, Any], floe_core_raises: type[BaseException] | None, ours: str
) -> None:
    args = {"sink_type": "rest_api", **kwargs}
    if floe_core_raises is None:
        config = SinkConfig(**args)  # floe-core lets it through
    else:
        with pytest.raises(floe_core_raises):
            SinkConfig(**args)
        config = built_around(kwargs)
    with pytest.raises(ConfigError) as refused:
        check_sink_config(config)
    assert ours in str(refused.value)
    with pytest.raises(ConfigError, match="SinkConfig"):
        FloeEgressPlugin().create_sink(config)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_create_sink_refuses_a_non_finite_number_in_the_connection_settings(value: float) -> None:
    config = SinkConfig("rest_api", connection_config={"timeout": {"total": value}})
    with pytest.raises(ConfigError, match=r"connection_config\.timeout\.total holds"):
        FloeEgressPlugin().create_sink(config)


@pytest.mark.parametrize(
    ("kwargs", "ours"),
    [
        ({"field_mapping": {1: "a"}}, "field_mapping 1: 'a': both must be strings"),
        ({"retry_config": ["x"]}, "retry_config must be a mapping or None"),
        ({"connection_config": {1: "x"}}, "connection_config must be a mapping with string keys"),
        ({"batch_size": math.nan}, "batch_size must be a whole number, got nan"),
    ],
)
def test_create_sink_refuses_more_than_floe_core_checks(kwargs: dict[str, Any], ours: str) -> None:
    """floe-core's SinkConfig lets these through (or fails on them deep inside)."""
    config = built_around(kwargs)
    with pytest.raises(ConfigError) as refused:
        FloeEgressPlugin().create_sink(config)
    assert ours in str(refused.value)


def test_the_plugin_is_a_complete_floe_plugin(tmp_path: Path) -> None:
    plugin = FloeEgressPlugin()
    assert isinstance(plugin, PluginMetadata)
    assert not plugin.is_configured  # PluginMetadata.__init__ ran
    assert (plugin.name, plugin.version, plugin.floe_api_version) == (
        "floe-egress",
        __version__,
        "1.0",
    )
    assert "Reverse ETL" in plugin.description and plugin.dependencies == []
    assert plugin.tracer_name == "floe.ingestion.floe_egress"
    assert plugin.get_config_schema() is PluginSettings
    assert IngestionConfig("x").runtime_binding is None
    with pytest.raises(NotImplementedError, match=r"plugins\.ingestion\.config\.catalog"):
        plugin.build_deployment_binding(storage=None, catalog=None)


def test_floe_core_discovers_it_by_its_entry_point() -> None:
    [found] = [e for e in entry_points(group="floe.ingestion") if e.name == "floe-egress"]
    plugin_class = found.load()
    assert plugin_class is FloeEgressPlugin
    assert plugin_class().name == "floe-egress"  # built without arguments, as floe-core does


def settings(tmp_path: Path, **catalog: Any) -> PluginSettings:
    props = catalog or {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
        "warehouse": f"file://{tmp_path / 'warehouse'}",
    }
    return PluginSettings.model_validate(
        {
            "catalog": {"name": "gold", **props},
            "state": {"url": f"sqlite:///{tmp_path / 'state' / 'state.db'}"},
            "work_dir": str(tmp_path / "work"),
        }
    )


def test_configure_startup_health_and_shutdown(tmp_path: Path) -> None:
    (tmp_path / "warehouse").mkdir()
    plugin = FloeEgressPlugin()
    assert plugin.health_check().state is HealthState.UNHEALTHY  # not started
    plugin.configure(settings(tmp_path).model_dump())  # a mapping is validated too
    assert plugin.is_configured
    plugin.startup()
    plugin.startup()  # idempotent
    assert (tmp_path / "work").is_dir() and (tmp_path / "state" / "state.db").is_file()
    health = plugin.health_check(timeout=5)
    assert health.state is HealthState.HEALTHY, health
    assert health.details == {"state_store": "ok", "catalog": "ok"}
    source = plugin.get_source_config({"name": "gold", "type": "sql", "uri": "sqlite://"})
    assert source["catalog_name"] == "gold"
    plugin.shutdown()
    assert plugin.health_check().state is HealthState.UNHEALTHY


def test_a_catalog_that_does_not_answer_is_unhealthy_and_says_which(tmp_path: Path) -> None:
    plugin = FloeEgressPlugin()
    plugin.configure(settings(tmp_path))
    plugin.startup()
    try:
        # the catalog's tables go away after startup
        with sqlite3.connect(tmp_path / "catalog.db") as conn:
            conn.execute("DROP TABLE iceberg_tables")
            conn.execute("DROP TABLE iceberg_namespace_properties")
        health = plugin.health_check(timeout=5)
        assert health.state is HealthState.UNHEALTHY
        assert health.details["state_store"] == "ok"
        assert "catalog" in health.message and health.details["catalog"] != "ok"
    finally:
        plugin.shutdown()


def test_settings_are_checked_like_floe_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="state"):
        PluginSettings.model_validate({"state": {"url": "mysql://x"}})
    with pytest.raises(ValueError, match="extra"):
        PluginSettings.model_validate({"catalogue": {}})
    with pytest.raises(ValueError, match="port"):
        PluginSettings.model_validate({"server": {"port": 99999}})
