"""Delivery: the sink types, the one delivery path, field mapping and the destination
families (`sinks.http`, `sinks.database`).

The registry is imported with the package; what needs pyarrow (the `Sink` protocol and
what it is handed and reports, the delivery path) is imported on first use, so that
`floe-egress validate` does not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from floe_egress.sinks.registry import (
    BuildRequest,
    SinkType,
    default_batch_size,
    get_sink_type,
    register,
    registered,
    sink_type_names,
    sink_types,
    unregister,
)

if TYPE_CHECKING:
    from floe_egress.sinks.base import (
        DeliveryReport,
        FailedRow,
        ReadBackSink,
        Sink,
        WriteContext,
    )
    from floe_egress.sinks.delivery import Delivery, payload_digest

_LAZY = {
    "DeliveryReport": "floe_egress.sinks.base",
    "FailedRow": "floe_egress.sinks.base",
    "ReadBackSink": "floe_egress.sinks.base",
    "Sink": "floe_egress.sinks.base",
    "WriteContext": "floe_egress.sinks.base",
    "Delivery": "floe_egress.sinks.delivery",
    "payload_digest": "floe_egress.sinks.delivery",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BuildRequest",
    "Delivery",
    "DeliveryReport",
    "FailedRow",
    "ReadBackSink",
    "Sink",
    "SinkType",
    "WriteContext",
    "default_batch_size",
    "get_sink_type",
    "payload_digest",
    "register",
    "registered",
    "sink_type_names",
    "sink_types",
    "unregister",
]
