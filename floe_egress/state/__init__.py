"""State: checkpoints, run history, failed rows, the digest and leases.

`open_store(url)` picks the backend from the URL (forms in `floe_egress.state.urls`):
`sqlite:///relative/path` or `sqlite:////absolute/path` (the default, one host) or
`postgresql://...` / `postgres://...` (several daemons sharing destinations).
"""

from __future__ import annotations

from floe_egress import errors as _errors
from floe_egress.clock import SYSTEM_CLOCK as _SYSTEM_CLOCK
from floe_egress.clock import Clock as _Clock
from floe_egress.state.faults import FaultPoint, Faults
from floe_egress.state.store import (
    Attempt,
    Checkpoint,
    CycleCommit,
    DigestSegment,
    DigestUpdate,
    FailedRowRecord,
    FailedRowUpdate,
    LedgerEntry,
    PollMarks,
    RepairKey,
    ResyncRequest,
    RunRecord,
    RunStatus,
    StateStore,
    StoredDigest,
)
from floe_egress.state.urls import redact_url


def open_store(
    url: str, *, clock: _Clock = _SYSTEM_CLOCK, faults: Faults | None = None
) -> StateStore:
    """Open (and migrate) the state store at `url`.

    `clock` stamps what the store records (leases follow the database's clock instead).
    `faults` is for tests: called at named points inside transactions (see FaultPoint).
    Raises CheckpointError, with any password in the URL redacted, when the URL is not
    understood or the store cannot be reached.
    """
    if url.startswith("sqlite:"):
        from floe_egress.state.sqlite import SqliteStore
        from floe_egress.state.urls import sqlite_path

        return SqliteStore(sqlite_path(url), clock=clock, faults=faults)
    if url.startswith(("postgresql://", "postgres://")):
        from floe_egress.state.postgres import PostgresStore

        return PostgresStore(url, clock=clock, faults=faults)
    scheme = url.split("://", 1)[0] if "://" in url else url.split(":", 1)[0]
    raise _errors.StateSetupError(
        f"state.url {redact_url(url)!r}: unsupported scheme {scheme!r}; use "
        "sqlite:///path/to/state.db or postgresql://user:password@host:5432/database"
    )


__all__ = [
    "Attempt",
    "Checkpoint",
    "CycleCommit",
    "DigestSegment",
    "DigestUpdate",
    "FailedRowRecord",
    "FailedRowUpdate",
    "FaultPoint",
    "Faults",
    "LedgerEntry",
    "PollMarks",
    "RepairKey",
    "ResyncRequest",
    "RunRecord",
    "RunStatus",
    "StateStore",
    "StoredDigest",
    "open_store",
    "redact_url",
]
