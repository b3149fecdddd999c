"""The front door for the floe platform: its plugin contract and the floe-egress plugin.

Like `floe_egress.cli`, a thin layer over config, changes, sinks and state. floe-core
discovers `FloeEgressPlugin` through the `floe.ingestion` entry point `floe-egress`,
detects the capability with `isinstance(plugin, SinkConnector)` and drives delivery
through `create_sink`/`write`, which use the same delivery path as a sync cycle. With
floe-core installed the contract classes are floe-core's own (see contract.py).
"""

from __future__ import annotations

from floe_egress.platform.contract import (
    FLOE_CORE,
    EgressResult,
    IngestionConfig,
    IngestionPlugin,
    IngestionResult,
    SinkConfig,
    SinkConnector,
)
from floe_egress.platform.lifecycle import PluginSettings
from floe_egress.platform.plugin import DltIngestionPlugin, FloeEgressPlugin, SinkHandle

__all__ = [
    "FLOE_CORE",
    "DltIngestionPlugin",
    "EgressResult",
    "FloeEgressPlugin",
    "IngestionConfig",
    "IngestionPlugin",
    "IngestionResult",
    "PluginSettings",
    "SinkConfig",
    "SinkConnector",
    "SinkHandle",
]
