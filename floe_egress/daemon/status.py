"""Per-destination status: checkpoint, lag, last run, failed rows (CLI and /status)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from floe_egress.config.models import Destination, FloeSpec
from floe_egress.config.secrets import redact
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import EgressError
from floe_egress.state.store import Checkpoint


def lag_seconds(table: Table, ref: str, checkpoint: Checkpoint | None, now: float) -> float | None:
    """Age of the oldest commit on `ref` the destination has not received (0: up to date)."""
    head = table.snapshot_by_name(ref)
    if head is None:
        return 0.0
    synced = checkpoint.snapshot_id if checkpoint else None
    if head.snapshot_id == synced:
        return 0.0
    oldest_unsynced = head
    for snapshot in ancestors_of(head, table.metadata):
        if snapshot.snapshot_id == synced:
            break
        oldest_unsynced = snapshot
    return max(0.0, now - oldest_unsynced.timestamp_ms / 1000)


def destination_status(rt: Runtime, dest: Destination, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    store = rt.store
    checkpoint = store.get_checkpoint(dest.name)
    last = store.last_run(dest.name)
    status: dict[str, Any] = {
        "destination": dest.name,
        "source_table": dest.source_table,
        "ref": dest.ref,
        "sink_type": dest.sink_type,
        "mode": dest.mode,
        "enabled": dest.enabled,
        "checkpoint": None
        if checkpoint is None
        else {
            "snapshot_id": checkpoint.snapshot_id,
            "snapshot_timestamp_ms": checkpoint.snapshot_timestamp_ms,
            "updated_at": checkpoint.updated_at,
        },
        "lag_seconds": None,
        "last_run": None
        if last is None
        else {k: v for k, v in asdict(last).items() if k != "destination"}
        | {"duration_seconds": round(last.duration_seconds, 3)},
        "failed_rows": store.failed_row_count(dest.name),
        "error": None,
    }
    try:
        status["lag_seconds"] = lag_seconds(rt.load_table(dest), dest.ref, checkpoint, now)
    except EgressError as exc:
        status["error"] = redact(str(exc))
    return status


def collect_status(spec: FloeSpec, rt: Runtime | None = None) -> list[dict[str, Any]]:
    if rt is not None:
        return [destination_status(rt, d) for d in spec.ingestion.destinations]
    runtime = Runtime(spec)
    try:
        return [destination_status(runtime, d) for d in spec.ingestion.destinations]
    finally:
        asyncio.run(runtime.close())
