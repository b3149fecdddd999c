"""`floe-egress plan`: what a cycle would send, worked out as a cycle does (the same
`prepare_work`), with counts, a sample per op and, for a destination with a filter,
its effects; nothing is sent or written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from floe_egress.changes import OP_COLUMN
from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact
from floe_egress.daemon.cycle import invalid_sample, log_context
from floe_egress.daemon.filters import filter_effects
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.work import prepare_work
from floe_egress.errors import EgressError, failure_kind
from floe_egress.sinks.mapping import filter_for_mode

SAMPLE_ROWS = 5


async def preview_cycle(rt: Runtime, dest: Destination) -> CycleResult:
    """What a cycle would send, with a sample per op; nothing is sent or written."""
    with log_context(dest):
        return await _preview(rt, dest)


def _shown(row: dict[str, Any], op: str, key: Sequence[str]) -> dict[str, Any]:
    """A sample row as `plan` shows it: a delete whose old values were not read (every
    mode but append reads none) is its key alone, not a row of nulls."""
    if op == "delete" and all(v is None for k, v in row.items() if k not in key):
        return {k: row[k] for k in key if k in row}
    return row


async def _preview(rt: Runtime, dest: Destination) -> CycleResult:
    started = time.monotonic()
    try:
        work = await asyncio.to_thread(prepare_work, rt, dest)
    except EgressError as exc:
        return CycleResult(
            dest.name,
            "failed",
            error=redact(str(exc)),
            error_kind=failure_kind(exc),
            error_type=type(exc).__name__,
            duration_seconds=time.monotonic() - started,
        )
    cs = work.change_set
    counts = {"insert": 0, "update": 0, "delete": 0}
    sample: dict[str, list[dict[str, Any]]] = {"insert": [], "update": [], "delete": []}
    keys: dict[str, list[dict[str, Any]]] = {"insert": [], "delete": []}
    for table in work.batches():
        table = filter_for_mode(table, dest.mode)
        for row in table.to_pylist():
            op = row.pop(OP_COLUMN)
            counts[op] += 1
            if len(sample[op]) < SAMPLE_ROWS:
                sample[op].append(_shown(row, op, cs.key))
            if dest.filter and op in keys:
                keys[op].append({k: row[k] for k in cs.key})
    effects = None
    if dest.filter:
        table = rt.load_table(dest)
        effects = await asyncio.to_thread(
            filter_effects,
            table,
            cs.key,
            cs.from_snapshot,
            cs.to_snapshot,
            keys["insert"],
            keys["delete"],
            counts["update"],
        )
    return CycleResult(
        dest.name,
        "noop" if sum(counts.values()) == 0 else "ok",
        plan=cs.plan,
        from_snapshot=cs.from_snapshot,
        to_snapshot=cs.to_snapshot,
        inserted=counts["insert"],
        updated=counts["update"],
        deleted=counts["delete"],
        invalid=cs.counts.invalid,
        invalid_sample=invalid_sample(cs),
        retried=int(work.resend.num_rows),
        reason=cs.reason,
        duration_seconds=time.monotonic() - started,
        sample={op: rows for op, rows in sample.items() if rows},
        filter_effects=effects,
    )


__all__ = ["SAMPLE_ROWS", "preview_cycle"]
