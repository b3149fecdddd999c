"""The floe platform's plugin contract for moving data both ways, and our checks on it.

`SinkConnector` is an opt-in ABC mixin beside `IngestionPlugin` (floe Epic 4G); the
platform detects the capability with `isinstance(plugin, SinkConnector)`. When floe-core
is installed these names ARE floe-core's classes (`floe_core.plugins.sink`,
`floe_core.plugins.ingestion`, `floe_core.plugin_metadata`), so isinstance checks and
results agree across the two packages. Without it they come from `fallback.py`, which
follows floe-core 0.1.0a1 exactly.

floe-core validates a `SinkConfig` less strictly than floe-egress needs:
`check_sink_config` runs at the start of `create_sink`, so a config floe-core accepts
but floe-egress cannot use fails there, at once, with a message naming the field.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from floe_egress.errors import ConfigError

try:
    import floe_core  # noqa: F401  (only whether it is installed)

    FLOE_CORE = True
    """floe-core is installed: the contract classes below are its own."""
except ImportError:
    FLOE_CORE = False

if TYPE_CHECKING or not FLOE_CORE:
    from floe_egress.platform.fallback import (
        EgressResult,
        HealthState,
        HealthStatus,
        IngestionConfig,
        IngestionPlugin,
        IngestionResult,
        PluginMetadata,
        SinkConfig,
        SinkConnector,
    )
else:
    from floe_core.plugin_metadata import HealthState, HealthStatus, PluginMetadata
    from floe_core.plugins.ingestion import IngestionConfig, IngestionPlugin, IngestionResult
    from floe_core.plugins.sink import EgressResult, SinkConfig, SinkConnector

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_BATCH_SIZE = 100_000
MAX_CONNECTION_KEYS = 50


def check_sink_config(config: Any) -> None:
    """What floe-egress requires of a `SinkConfig` beyond floe-core's own checks.

    floe-core 0.1.0a1 accepts `batch_size=True` and `batch_size=1.5` (it only compares
    them with 1 and 100,000) and a mapping target with a trailing newline (its pattern
    ends in `$`); it fails with a bare TypeError or AttributeError on a non-string
    `sink_type`, a string `batch_size` or a non-string mapping target. All of them are a
    ConfigError here, naming the field.
    """
    if not isinstance(config, SinkConfig):
        raise ConfigError(f"create_sink() takes a SinkConfig, got {type(config).__name__}")
    sink_type = config.sink_type
    if not isinstance(sink_type, str) or not sink_type.strip():
        raise ConfigError(f"SinkConfig.sink_type must be a non-empty string, got {sink_type!r}")
    size = config.batch_size
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise ConfigError(f"SinkConfig.batch_size must be a whole number, got {size!r}")
        if not 1 <= size <= MAX_BATCH_SIZE:
            raise ConfigError(f"SinkConfig.batch_size must be 1 to 100,000, got {size}")
    conn = config.connection_config
    if not isinstance(conn, dict) or not all(isinstance(k, str) for k in conn):
        raise ConfigError("SinkConfig.connection_config must be a mapping with string keys")
    if len(conn) > MAX_CONNECTION_KEYS:
        raise ConfigError(
            f"SinkConfig.connection_config has {len(conn)} keys, max {MAX_CONNECTION_KEYS}"
        )
    _check_numbers(conn, "connection_config")
    if config.retry_config is not None and not isinstance(config.retry_config, dict):
        raise ConfigError("SinkConfig.retry_config must be a mapping or None")
    mapping = config.field_mapping
    if mapping is None:
        return
    if not isinstance(mapping, dict):
        raise ConfigError("SinkConfig.field_mapping must be a mapping of column to field")
    for source, dest in mapping.items():
        if not isinstance(source, str) or not isinstance(dest, str):
            raise ConfigError(
                f"SinkConfig.field_mapping {source!r}: {dest!r}: both must be strings"
            )
        if not _IDENTIFIER.fullmatch(dest):
            raise ConfigError(
                f"SinkConfig.field_mapping destination {dest!r} for source {source!r} must be "
                "a valid identifier (letters, digits and underscores, not starting with a "
                "digit)"
            )


def _check_numbers(value: Any, where: str) -> None:
    """No NaN or infinity anywhere in the connection settings (floe.yaml refuses them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"SinkConfig.{where} holds {value!r}: numbers must be finite")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_numbers(v, f"{where}[{i}]")


__all__ = [
    "FLOE_CORE",
    "EgressResult",
    "HealthState",
    "HealthStatus",
    "IngestionConfig",
    "IngestionPlugin",
    "IngestionResult",
    "PluginMetadata",
    "SinkConfig",
    "SinkConnector",
    "check_sink_config",
]
