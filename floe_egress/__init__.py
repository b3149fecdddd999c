"""floe-egress: reverse ETL for the floe lakehouse.

The packages follow the data flow: `config` → `changes` → `sinks` → `state`, with
`daemon` on top; `cli` and `platform` are the front doors. Importing this package
imports only the error hierarchy, so the command line starts fast.
"""

from __future__ import annotations

from floe_egress.errors import (
    CheckpointError,
    ConfigError,
    DeleteGuardError,
    DigestDamagedError,
    EgressError,
    InvalidSourceError,
    LeaseLostError,
    PermanentSinkError,
    SecretError,
    ServiceError,
    SinkError,
    SourceError,
    StateSetupError,
    TransientSinkError,
    UnsupportedSourceError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DeleteGuardError",
    "DigestDamagedError",
    "EgressError",
    "InvalidSourceError",
    "LeaseLostError",
    "PermanentSinkError",
    "SecretError",
    "ServiceError",
    "SinkError",
    "SourceError",
    "StateSetupError",
    "TransientSinkError",
    "UnsupportedSourceError",
    "__version__",
]
