"""One sync cycle of one destination.

lease → what to deliver (daemon/work.py: change set A→B, or B against the digest when A
cannot be read; rows to resend, failed rows, repairs) → delete guard → record the
attempt → deliver batch by batch (each batch's keys reserved in the digest before it is
sent; the next batch is read while one is written) → one transaction: checkpoint B, run
record, failed rows, the digest's held segment, attempt cleared. A crash before that
transaction resends A→B (writes are idempotent upserts/deletes by key), together with
the keys of the interrupted attempt if the table has moved on; after it nothing is
resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import structlog

from floe_egress.changes import ChangeSet
from floe_egress.changes.keys import key_json
from floe_egress.config.filters import stored_filter
from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact
from floe_egress.daemon.digest import Tally
from floe_egress.daemon.leases import CycleLease, StandaloneLease
from floe_egress.daemon.progress import NO_PROGRESS, Progress
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.work import Workload, prepare_work
from floe_egress.errors import DeleteGuardError, EgressError, failure_kind
from floe_egress.sinks.base import DeliveryReport, WriteContext
from floe_egress.sinks.delivery import Delivery
from floe_egress.sinks.mapping import filter_for_mode, ops_for_mode
from floe_egress.sinks.registry import get_sink_type
from floe_egress.state.store import (
    Checkpoint,
    CycleCommit,
    FailedRowUpdate,
    RunRecord,
)

log = structlog.get_logger("floe_egress.cycle")

_RANGE_FIELDS = ("plan", "from_snapshot", "to_snapshot")
"""Bound to the cycle's log lines once its range is known."""


def _count_deletes(work: Workload, dest: Destination) -> int:
    if "delete" not in ops_for_mode(dest.mode) or dest.mode == "append":
        return 0
    return work.change_set.counts.deleted


async def run_cycle(
    rt: Runtime,
    dest: Destination,
    *,
    lease: CycleLease | None = None,
    force: bool = False,
    progress: Progress = NO_PROGRESS,
) -> CycleResult:
    """One full cycle of `dest`; never raises for destination errors (they are results).

    It runs under `lease` (default: a `StandaloneLease`, what `floe-egress sync` takes),
    asked between writes and renewed before the checkpoint moves. The destination and a
    cycle id are bound to every log line of the cycle, in threads too. A cycle that
    sends many rows (see `_bulk`) tells `progress` how far it got, write by write.
    """
    with log_context(dest):
        lease = lease or StandaloneLease(dest.name)
        return await _run_cycle(rt, dest, lease, force, progress)


@contextlib.contextmanager
def log_context(dest: Destination) -> Iterator[None]:
    """The destination, its table and a cycle id on every log line of the cycle (the
    range fields too once they are known), in threads too; unbound afterwards."""
    with structlog.contextvars.bound_contextvars(
        destination=dest.name, table=dest.source_table, cycle=uuid.uuid4().hex[:12]
    ):
        try:
            yield
        finally:
            structlog.contextvars.unbind_contextvars(*_RANGE_FIELDS)


async def _run_cycle(
    rt: Runtime, dest: Destination, lease: CycleLease, force: bool, progress: Progress
) -> CycleResult:
    started_wall, started = time.time(), time.monotonic()
    result = CycleResult(dest.name, "failed")
    report = DeliveryReport()
    try:
        store = rt.store
        refused = await lease.take(store)
        if refused is not None:
            result.status, result.error = "skipped", refused
            return result
        work = await asyncio.to_thread(prepare_work, rt, dest)
        cs = work.change_set
        result.table_pointer = work.pointer
        result.plan, result.reason = cs.plan, cs.reason
        result.from_snapshot, result.to_snapshot = cs.from_snapshot, cs.to_snapshot
        result.invalid = cs.counts.invalid
        result.invalid_sample = invalid_sample(cs)
        result.retried = int(work.resend.num_rows)
        result.digest_rebuilt = work.digest.rebuilt
        structlog.contextvars.bind_contextvars(
            **dict(zip(_RANGE_FIELDS, (cs.plan, cs.from_snapshot, cs.to_snapshot), strict=True))
        )
        if result.invalid:
            log.warning("invalid_rows", invalid=result.invalid, sample=result.invalid_sample)
        _check_delete_guard(work, dest, force or work.force_requested_at is not None)
        if work.has_rows and cs.to_snapshot is not None:
            await asyncio.to_thread(
                store.begin_attempt, dest.name, cs.from_snapshot, cs.to_snapshot
            )
        watched = progress if work.has_rows and _bulk(work) else NO_PROGRESS
        watched.start(_rows_to_send(work, dest), plan=cs.plan)
        finished = False
        try:
            await _deliver(rt, dest, work, report, lease, watched)
            finished = True
        finally:
            watched.close(finished=finished)
        result.inserted = report.delivered.get("insert", 0)
        result.updated = report.delivered.get("update", 0)
        result.deleted = report.delivered.get("delete", 0)
        result.failed = len(report.failed)
        sent = result.inserted + result.updated + result.deleted + result.failed
        result.status = "ok" if sent else "noop"
        result.duration_seconds = time.monotonic() - started
        await lease.confirm()
        await asyncio.shield(
            asyncio.to_thread(_commit, rt, dest, work, report, result, started_wall)
        )
        log.info(
            "cycle_finished",
            status=result.status,
            inserted=result.inserted,
            updated=result.updated,
            deleted=result.deleted,
            failed=result.failed,
            invalid=result.invalid,
            retried=result.retried,
            duration_seconds=round(result.duration_seconds, 3),
        )
    except Exception as exc:
        expected = isinstance(exc, EgressError | OSError)
        result.status = "failed"
        result.error = redact(str(exc) if expected else f"{type(exc).__name__}: {exc}")
        result.error_kind = failure_kind(exc)
        result.error_type = type(exc).__name__
        result.retry_after = exc.retry_after if isinstance(exc, EgressError) else None
        result.duration_seconds = time.monotonic() - started
        log.error(
            "cycle_failed",
            error=result.error,
            error_type=result.error_type,
            error_kind=result.error_kind,
            retry_after_seconds=result.retry_after,
            exc_info=not expected,
        )
        try:
            await asyncio.to_thread(rt.store.record_run, _run_record(dest, result, started_wall))
        except Exception as record_exc:  # the store may be what failed
            log.error("run_record_failed", error=redact(str(record_exc)))
    finally:
        result.rate_limit_wait_seconds = report.rate_limit_wait_seconds
        result.http_statuses = dict(report.http_statuses)
        await lease.release()
    return result


def invalid_sample(cs: ChangeSet) -> list[dict[str, Any]]:
    """The change set's invalid keys as JSON values (dates as ISO text, and so on)."""
    return [
        {"key": json.loads(key_json(r.key)), "reason": r.reason, "rows": r.rows}
        for r in cs.invalid_sample
    ]


def _bulk(work: Workload) -> bool:
    """Whether the cycle sends the table (or all that differs from the digest) rather
    than the changes of a range, or carries out a resync: the cycles worth a bar."""
    return work.change_set.plan in ("full", "digest") or work.resync_requested_at is not None


def _rows_to_send(work: Workload, dest: Destination) -> int:
    """The rows the mode sends of the change set and of the rows sent again (a key of
    both, in `work.override`, is sent once: this counts it twice)."""
    counts = work.change_set.counts
    by_op = {"insert": counts.inserted, "update": counts.updated, "delete": counts.deleted}
    resent: int = filter_for_mode(work.resend, dest.mode).num_rows
    return sum(n for op, n in by_op.items() if op in ops_for_mode(dest.mode)) + resent


def _check_delete_guard(work: Workload, dest: Destination, force: bool) -> None:
    deletes = _count_deletes(work, dest)
    if force or not work.held_rows or not deletes:
        return
    if deletes > dest.max_delete_fraction * work.held_rows:
        raise DeleteGuardError(
            f"destination {dest.name}: this cycle would delete {deletes} of the "
            f"{work.held_rows} rows the destination holds (more than "
            f"max_delete_fraction={dest.max_delete_fraction}); nothing was sent. "
            f"Check table {dest.source_table}, then run `floe-egress sync "
            f"--destination {dest.name} --force` to send it anyway."
        )


async def _deliver(
    rt: Runtime,
    dest: Destination,
    work: Workload,
    report: DeliveryReport,
    lease: CycleLease,
    progress: Progress,
) -> None:
    """Deliver the work; the digest reserves each write's keys before it is sent and
    notes what the destination confirmed after; `progress` counts each write's rows."""
    cs = work.change_set
    sink = await rt.sink(dest, work.key)
    sink_type = get_sink_type(dest.sink_type)
    context = WriteContext(
        destination=dest.name,
        mode=dest.mode,
        key=work.key,
        from_snapshot=cs.from_snapshot,
        to_snapshot=cs.to_snapshot,
    )
    tally = work.digest

    def confirmed(batch: pa.Table, entries: pa.Table | None, part: DeliveryReport) -> None:
        if entries is not None:
            tally.delivered(entries, part)
        progress.advance(batch.num_rows)

    delivery = Delivery(
        sink,
        context,
        dest.batch_size or (sink_type.default_batch_size if sink_type else 1000),
        prepare=tally.reserve,
        before_write=lease.check,
        after_write=confirmed,
    )
    await delivery.run(_noting_unsent(work.batches(), tally, dest), report)


def _noting_unsent(
    tables: Iterator[pa.Table], tally: Tally, dest: Destination
) -> Iterator[pa.Table]:
    """`tables`, each shown to the digest before the mode drops what it does not send."""
    for table in tables:
        tally.unsent(table, dest.mode)
        yield table


def _run_record(dest: Destination, result: CycleResult, started_wall: float) -> RunRecord:
    return RunRecord(
        destination=dest.name,
        started_at=started_wall,
        finished_at=time.time(),
        status="ok" if result.status == "ok" else "noop" if result.status == "noop" else "failed",
        plan=result.plan or "",
        from_snapshot=result.from_snapshot,
        to_snapshot=result.to_snapshot,
        inserted=result.inserted,
        updated=result.updated,
        deleted=result.deleted,
        invalid=result.invalid,
        failed=result.failed,
        error=result.error,
        invalid_sample=tuple(result.invalid_sample),
    )


def _commit(
    rt: Runtime,
    dest: Destination,
    work: Workload,
    report: DeliveryReport,
    result: CycleResult,
    started_wall: float,
) -> None:
    cs = work.change_set
    failed_now = {key_json(f.key): f for f in report.failed}
    resolved = [k for k in work.retry_keys if k not in failed_now]
    checkpoint = Checkpoint(
        destination=dest.name,
        table=dest.source_table,
        ref=dest.ref,
        snapshot_id=cs.to_snapshot,
        snapshot_timestamp_ms=cs.to_timestamp_ms,
        key=work.key,
        updated_at=time.time(),
        row_filter=stored_filter(dest.filter),
    )
    run = _run_record(dest, result, started_wall)
    if (
        cs.plan == "noop"
        and result.status == "noop"
        and not work.retry_keys
        and work.resync_requested_at is None
        and work.force_requested_at is None
        and work.repairs_seen is None
        and not work.digest.pending
    ):
        rt.store.record_run(run)
        return
    rt.store.commit_cycle(
        CycleCommit(
            checkpoint=checkpoint,
            run=run,
            failed=[FailedRowUpdate(k, f.op, redact(f.reason)) for k, f in failed_now.items()],
            max_attempts=dest.max_attempts,
            resolved=resolved,
            digest=work.digest.update(),
            clear_resync=work.resync_requested_at,
            clear_force=work.force_requested_at,
            clear_repairs=work.repairs_seen,
        )
    )


__all__ = ["CycleResult", "log_context", "run_cycle"]
