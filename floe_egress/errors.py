"""The one exception hierarchy of floe-egress.

    EgressError                    T/P: what a failed cycle does next (see below)
    ├── ConfigError                P  bad floe.yaml, compiled artifacts or command input
    │   ├── ConfigValidationError  P  every problem of a file, with key paths and lines
    │   │                             (config/problems.py)
    │   ├── YamlProblem            P  text that is not usable YAML (config/yamlsource.py;
    │   │                             the loader turns it into a ConfigValidationError)
    │   └── SecretError            P  a secret reference that cannot be resolved
    ├── SourceError                T  the catalog or the table's files could not be read
    │   └── InvalidSourceError     P  no such table, ref or key column; a snapshot gone
    │       └── UnsupportedSourceError  P  a feature the reader cannot apply exactly
    │                                      (equality delete files)
    ├── SinkError                  T  the destination side
    │   ├── TransientSinkError     T  5xx, 429, timeouts, resets; may carry retry_after
    │   └── PermanentSinkError     P  401/403, a refused grant, a batch refused for good
    ├── DeleteGuardError           P  a cycle would delete more than max_delete_fraction
    ├── CheckpointError            T  the state store could not read or record progress
    │   ├── StateSetupError        P  the store cannot be used as configured (a state.url
    │   │                             it does not understand, a newer schema version)
    │   ├── DigestDamagedError     P  a stored digest does not read back as written (the
    │   │                             cycle does not fail: it sends every row once)
    │   └── LeaseLostError         T  another daemon may hold the destination now
    └── ServiceError               P  the daemon itself cannot run (its port is taken)

T: transient. The daemon retries the destination with exponential backoff, never
sooner than `retry_after` when the destination asked for a pause.
P: permanent. Retrying the same thing cannot succeed until someone acts: the daemon
marks the destination failing with the message and retries only slowly (or at once
after a reload or a nudge).
Any other exception (a driver error, an OSError) is unexpected and counts as transient.

Every error names where it happened (destination, table, key path) in its message.
"""

from __future__ import annotations

from typing import ClassVar, Literal

FailureKind = Literal["transient", "permanent"]


class EgressError(Exception):
    """Base class of every error floe-egress raises on purpose."""

    transient: ClassVar[bool] = False
    retry_after: float | None = None
    """Seconds the destination asked us to wait before trying again, when it said."""


class ConfigError(EgressError):
    """The configuration is invalid; the message says which key and why."""


class SecretError(ConfigError):
    """A `${env:...}` or `${credential:...}` reference cannot be resolved."""


class SourceError(EgressError):
    """The source Iceberg table could not be read as required (the catalog or the
    storage did not answer): it may work on a later try."""

    transient = True


class InvalidSourceError(SourceError):
    """The table cannot be synced as configured: it, its ref or its key column does not
    exist, or a snapshot the sync needs is gone."""

    transient = False


class UnsupportedSourceError(InvalidSourceError):
    """The table uses a feature the reader cannot apply exactly (e.g. equality deletes)."""


class SinkError(EgressError):
    """Delivery to a destination failed."""

    transient = True


class TransientSinkError(SinkError):
    """A failure that may succeed when retried later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSinkError(SinkError):
    """A failure that will not succeed by retrying the same request."""

    transient = False


class DeleteGuardError(EgressError):
    """The delete guard stopped the cycle before anything was sent: it would delete more
    of the destination than `max_delete_fraction` allows (`sync --force` confirms)."""


class CheckpointError(EgressError):
    """The state store could not read or record progress."""

    transient = True


class StateSetupError(CheckpointError):
    """The state store cannot be used as configured: a `state.url` it does not
    understand, a schema that does not exist, a schema version newer than this one."""

    transient = False


class DigestDamagedError(CheckpointError):
    """A segment of a destination's digest does not match its checksum or cannot be
    read. The cycle catches it and rebuilds the digest by sending every row once."""

    transient = False


class LeaseLostError(CheckpointError):
    """This process no longer holds the destination's lease: it stopped before the next
    write or before moving the checkpoint, and the holder resends the range."""


class ServiceError(EgressError):
    """The daemon cannot run as configured (e.g. its port is taken)."""


def failure_kind(exc: BaseException) -> FailureKind:
    """Whether retrying after `exc` may succeed without anyone acting."""
    if isinstance(exc, EgressError) and not exc.transient:
        return "permanent"
    return "transient"


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DeleteGuardError",
    "DigestDamagedError",
    "EgressError",
    "FailureKind",
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
    "failure_kind",
]
