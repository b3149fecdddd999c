"""State: checkpoints, run history, failed rows, the ledger and leases.

`open_store(url)` picks the backend from the URL: `sqlite:///relative/path`,
`sqlite:////absolute/path` (the default) or `postgresql://...` (several daemons).
"""

from __future__ import annotations

from floe_egress.errors import CheckpointError
from floe_egress.state.store import (
    Checkpoint,
    CycleCommit,
    FailedRowRecord,
    FailedRowUpdate,
    LedgerEntry,
    ResyncRequest,
    RunRecord,
    StateStore,
)


def open_store(url: str) -> StateStore:
    if url.startswith("sqlite:///"):
        from floe_egress.state.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from floe_egress.state.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split(":", 1)[0]
    raise CheckpointError(
        f"state.url: unsupported scheme {scheme!r}; use sqlite:///path or postgresql://..."
    )


__all__ = [
    "Checkpoint",
    "CycleCommit",
    "FailedRowRecord",
    "FailedRowUpdate",
    "LedgerEntry",
    "ResyncRequest",
    "RunRecord",
    "StateStore",
    "open_store",
]
