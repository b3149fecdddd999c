"""The front door for the floe platform: its plugin contract and the dlt plugin.

Like `floe_egress.cli`, a thin layer over config, changes, sinks and state: the platform
detects the capability with `isinstance(plugin, SinkConnector)` and drives delivery
through `DltIngestionPlugin.create_sink`/`write`, which use the same delivery path as a
sync cycle.
"""

from __future__ import annotations

from floe_egress.platform.contract import (
    EgressResult,
    IngestionConfig,
    IngestionPlugin,
    IngestionResult,
    SinkConfig,
    SinkConnector,
)
from floe_egress.platform.plugin import DltIngestionPlugin, SinkHandle

__all__ = [
    "DltIngestionPlugin",
    "EgressResult",
    "IngestionConfig",
    "IngestionPlugin",
    "IngestionResult",
    "SinkConfig",
    "SinkConnector",
    "SinkHandle",
]
