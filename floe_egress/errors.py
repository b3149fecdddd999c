"""The one exception hierarchy of floe-egress.

    EgressError
    ├── ConfigError            bad floe.yaml or compiled artifacts; never retried
    │   └── SecretError        a secret reference that cannot be resolved
    ├── SourceError            the Iceberg side: catalog, table, snapshot, unreadable files
    │   └── UnsupportedSourceError   e.g. equality delete files
    ├── SinkError              the destination side
    │   ├── TransientSinkError     retry with backoff (5xx, 429, timeouts, connection resets)
    │   └── PermanentSinkError     do not retry (bad credentials, unknown object, a 4xx)
    └── CheckpointError        the state store could not record progress

Every error names where it happened (destination, table, key path) in its message.
Only the transient branch is retried.
"""

from __future__ import annotations


class EgressError(Exception):
    """Base class of every error floe-egress raises on purpose."""


class ConfigError(EgressError):
    """The configuration is invalid; the message says which key and why."""


class SecretError(ConfigError):
    """A `${env:...}` or `${credential:...}` reference cannot be resolved."""


class SourceError(EgressError):
    """The source Iceberg table could not be read as required."""


class UnsupportedSourceError(SourceError):
    """The table uses a feature the reader cannot apply exactly (e.g. equality deletes)."""


class SinkError(EgressError):
    """Delivery to a destination failed."""


class TransientSinkError(SinkError):
    """A failure that may succeed when retried later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSinkError(SinkError):
    """A failure that will not succeed by retrying the same request."""


class CheckpointError(EgressError):
    """The state store could not read or record progress."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "EgressError",
    "PermanentSinkError",
    "SecretError",
    "SinkError",
    "SourceError",
    "TransientSinkError",
    "UnsupportedSourceError",
]
