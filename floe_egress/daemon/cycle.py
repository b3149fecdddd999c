"""One sync cycle of one destination.

lease → what to deliver (daemon/work.py: change set A→B, rows to resend, ledger deletes)
→ delete guard → record the attempt → deliver batch by batch (mirror mode: each batch's
keys into the ledger before it is sent; the next batch is read while one is written)
→ one transaction: checkpoint B, run record, failed rows, deletes out of the ledger,
attempt cleared. A crash before that
transaction resends A→B (writes are idempotent upserts/deletes by key), together with
the keys of the interrupted attempt if the table has moved on; after it nothing is
resent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import structlog

from floe_egress.changes import OP_COLUMN
from floe_egress.changes.keys import key_json, key_jsons, row_hashes
from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.work import Workload, prepare_work
from floe_egress.errors import CheckpointError, EgressError
from floe_egress.sinks.base import MIN_ROWS_PER_WRITE, DeliveryReport, WriteContext
from floe_egress.sinks.mapping import filter_for_mode, ops_for_mode
from floe_egress.sinks.registry import get_sink_type
from floe_egress.state.store import (
    Checkpoint,
    CycleCommit,
    FailedRowUpdate,
    LedgerEntry,
    RunRecord,
    StateStore,
)

log = structlog.get_logger("floe_egress.cycle")

Status = Literal["ok", "noop", "failed", "skipped"]
SAMPLE_ROWS = 5
LEASE_SECONDS = 60.0
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class CycleResult:
    destination: str
    status: Status
    plan: str | None = None
    from_snapshot: int | None = None
    to_snapshot: int | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    invalid: int = 0
    failed: int = 0
    retried: int = 0
    error: str | None = None
    reason: str = ""
    duration_seconds: float = 0.0
    rate_limit_wait_seconds: float = 0.0
    http_statuses: dict[int, int] = field(default_factory=dict)
    sample: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "destination": self.destination,
            "status": self.status,
            "plan": self.plan,
            "from_snapshot": self.from_snapshot,
            "to_snapshot": self.to_snapshot,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "invalid": self.invalid,
            "failed": self.failed,
            "retried": self.retried,
            "error": self.error,
            "reason": self.reason,
            "duration_seconds": round(self.duration_seconds, 3),
        }
        if self.sample:
            data["sample"] = self.sample
        return data


def _rebatch(tables: Iterator[pa.Table], size: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        offset = 0
        while offset < table.num_rows:
            take = min(size - rows, table.num_rows - offset)
            pending.append(table.slice(offset, take))
            rows += take
            offset += take
            if rows == size:
                yield pa.concat_tables(pending).combine_chunks()
                pending, rows = [], 0
    if rows:
        yield pa.concat_tables(pending).combine_chunks()


def _count_deletes(work: Workload, dest: Destination) -> int:
    if "delete" not in ops_for_mode(dest.mode) or dest.mode == "append":
        return 0
    return work.change_set.counts.deleted + int(work.ledger_deletes.num_rows)


async def preview_cycle(rt: Runtime, dest: Destination) -> CycleResult:
    """What a cycle would send, with a sample per op; nothing is sent or written."""
    started = time.monotonic()
    try:
        work = await asyncio.to_thread(prepare_work, rt, dest)
    except EgressError as exc:
        return CycleResult(
            dest.name, "failed", error=redact(str(exc)), duration_seconds=time.monotonic() - started
        )
    cs = work.change_set
    counts = {"insert": 0, "update": 0, "delete": 0}
    sample: dict[str, list[dict[str, Any]]] = {"insert": [], "update": [], "delete": []}
    for table in work.batches():
        table = filter_for_mode(table, dest.mode)
        for row in table.to_pylist():
            op = row.pop(OP_COLUMN)
            counts[op] += 1
            if len(sample[op]) < SAMPLE_ROWS:
                sample[op].append(row)
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
        retried=int(work.resend.num_rows),
        reason=cs.reason,
        duration_seconds=time.monotonic() - started,
        sample={op: rows for op, rows in sample.items() if rows},
    )


async def run_cycle(
    rt: Runtime,
    dest: Destination,
    *,
    force: bool = False,
    owner: str = OWNER,
    lease_seconds: float = LEASE_SECONDS,
    release_lease: bool = True,
    still_held: Callable[[], bool] | None = None,
) -> CycleResult:
    """One full cycle of `dest`; never raises for destination errors (they are results).

    The lease on `dest` is taken (or renewed) first and renewed while the cycle runs;
    `still_held` (the daemon's own view of its leases) is asked between writes.
    `release_lease=False` keeps the lease after the cycle (the daemon holds it).
    """
    started_wall, started = time.time(), time.monotonic()
    bound = log.bind(destination=dest.name, table=dest.source_table)
    result = CycleResult(dest.name, "failed")
    report = DeliveryReport()
    acquired = False
    keeper: asyncio.Task[None] | None = None
    try:
        store = rt.store
        acquired = await asyncio.to_thread(_take_lease, store, dest.name, owner, lease_seconds)
        if not acquired:
            holder = await asyncio.to_thread(store.lease_holder, dest.name)
            result.status = "skipped"
            result.error = (
                f"destination {dest.name} is being synced by {holder or 'another process'} "
                f"(its lease lasts up to {lease_seconds:.0f} s); nothing was done"
            )
            return result
        if release_lease:
            keeper = asyncio.create_task(_keep_lease(store, dest.name, owner, lease_seconds))
        work = await asyncio.to_thread(prepare_work, rt, dest)
        cs = work.change_set
        result.plan, result.reason = cs.plan, cs.reason
        result.from_snapshot, result.to_snapshot = cs.from_snapshot, cs.to_snapshot
        result.invalid = cs.counts.invalid
        result.retried = int(work.resend.num_rows)
        bound = bound.bind(plan=cs.plan, from_snapshot=cs.from_snapshot, to_snapshot=cs.to_snapshot)
        _check_delete_guard(work, dest, force or work.force_requested_at is not None)
        if work.has_rows and cs.to_snapshot is not None:
            await asyncio.to_thread(
                store.begin_attempt, dest.name, cs.from_snapshot, cs.to_snapshot
            )
        delivered_deletes = await _deliver(rt, dest, work, report, still_held)
        result.inserted = report.delivered.get("insert", 0)
        result.updated = report.delivered.get("update", 0)
        result.deleted = report.delivered.get("delete", 0)
        result.failed = len(report.failed)
        sent = result.inserted + result.updated + result.deleted + result.failed
        result.status = "ok" if sent else "noop"
        result.duration_seconds = time.monotonic() - started
        if not await asyncio.to_thread(store.acquire_lease, dest.name, owner, lease_seconds):
            raise CheckpointError(
                f"destination {dest.name}: the lease was lost during the cycle; the checkpoint "
                "was not moved (the next holder resends this range)"
            )
        await asyncio.shield(
            asyncio.to_thread(
                _commit, rt, dest, work, report, delivered_deletes, result, started_wall
            )
        )
        bound.info(
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
        result.duration_seconds = time.monotonic() - started
        bound.error(
            "cycle_failed",
            error=result.error,
            error_type=type(exc).__name__,
            exc_info=not expected,
        )
        try:
            await asyncio.to_thread(rt.store.record_run, _run_record(dest, result, started_wall))
        except Exception as record_exc:  # the store may be what failed
            bound.error("run_record_failed", error=redact(str(record_exc)))
    finally:
        result.rate_limit_wait_seconds = report.rate_limit_wait_seconds
        result.http_statuses = dict(report.http_statuses)
        if keeper is not None:
            keeper.cancel()
        if acquired and release_lease:
            try:
                await asyncio.to_thread(rt.store.release_lease, dest.name, owner)
            except Exception as exc:  # it expires on its own
                bound.warning("lease_release_failed", error=redact(str(exc)))
    return result


def _take_lease(store: StateStore, destination: str, owner: str, ttl: float) -> bool:
    """Take the lease; also from a process of this host that no longer exists (a sync
    killed before it could release it)."""
    if store.acquire_lease(destination, owner, ttl):
        return True
    holder = store.lease_holder(destination)
    if holder is None or not _is_dead_local_process(holder):
        return False
    log.warning("lease_taken_from_dead_process", destination=destination, dead_owner=holder)
    return store.take_over_lease(destination, holder, owner, ttl)


def _is_dead_local_process(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


async def _keep_lease(store: StateStore, destination: str, owner: str, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            await asyncio.to_thread(store.acquire_lease, destination, owner, ttl)
        except Exception as exc:  # the commit re-checks the lease
            log.warning("lease_renewal_failed", destination=destination, error=redact(str(exc)))


def _check_delete_guard(work: Workload, dest: Destination, force: bool) -> None:
    deletes = _count_deletes(work, dest)
    if force or not work.held_rows or not deletes:
        return
    if deletes > dest.max_delete_fraction * work.held_rows:
        raise _GuardError(
            f"destination {dest.name}: this cycle would delete {deletes} of the "
            f"{work.held_rows} rows the destination holds (more than "
            f"max_delete_fraction={dest.max_delete_fraction}); nothing was sent. "
            f"Check table {dest.source_table}, then run `floe-egress sync "
            f"--destination {dest.name} --force` to send it anyway."
        )


class _GuardError(EgressError):
    """The delete guard stopped the cycle before anything was sent."""


async def _deliver(
    rt: Runtime,
    dest: Destination,
    work: Workload,
    report: DeliveryReport,
    still_held: Callable[[], bool] | None,
) -> list[str]:
    """Deliver the work batch by batch; returns the keys of the deletes the destination
    took (mirror mode: they leave the ledger at the commit)."""
    cs = work.change_set
    sink = await rt.sink(dest, work.key)
    sink_type = get_sink_type(dest.sink_type)
    batch_size = dest.batch_size or (sink_type.default_batch_size if sink_type else 1000)
    # batch_size is what the destination takes at once (records per request, rows per
    # load), which the sink applies; a write hands it many batches at once because every
    # dlt run costs 0.1-0.2 s of its own.
    size = max(batch_size, MIN_ROWS_PER_WRITE)
    delivered_deletes: list[str] = []
    value_columns = [n for n in cs.schema.names if n != OP_COLUMN]
    filtered = (filter_for_mode(t, dest.mode) for t in work.batches())
    batches = _rebatch((t for t in filtered if t.num_rows), size)
    mirror = dest.mode == "mirror"

    def prepare() -> tuple[pa.Table, list[str]] | None:
        # Reading the next rows may read Parquet files (a full plan streams the table);
        # in mirror mode their keys go into the ledger before they can be sent (see
        # StateStore.reserve_ledger). On a worker thread: the event loop also serves
        # health checks, leases and the watchdog.
        batch = next(batches, None)
        if batch is None:
            return None
        keys = _reserve_ledger(rt, dest, batch, work.key, value_columns) if mirror else []
        return batch, keys

    upcoming = await asyncio.to_thread(prepare)
    index = -1
    while upcoming is not None:
        batch, keys = upcoming
        index += 1
        if still_held is not None and not still_held():
            raise CheckpointError(
                f"destination {dest.name}: this daemon no longer holds its lease; stopped "
                "before the next write"
            )
        context = WriteContext(
            destination=dest.name,
            mode=dest.mode,
            key=work.key,
            from_snapshot=cs.from_snapshot,
            to_snapshot=cs.to_snapshot,
            batch_index=index,
        )
        # The next batch is read (and reserved) while this one is written.
        following = asyncio.ensure_future(asyncio.to_thread(prepare))
        try:
            batch_report = await sink.write(batch, context)
        except BaseException:
            # The reader thread runs on: let it finish before the error ends the cycle.
            await asyncio.gather(following, return_exceptions=True)
            raise
        report.merge(batch_report)
        if mirror:
            delivered_deletes.extend(_delivered_deletes(batch, keys, batch_report))
        upcoming = await following
    return delivered_deletes


def _reserve_ledger(
    rt: Runtime, dest: Destination, batch: pa.Table, key: tuple[str, ...], value_columns: list[str]
) -> list[str]:
    """The batch's keys; those it upserts go into the ledger now, with their row hash."""
    keys = key_jsons(batch, key)
    ops = batch.column(OP_COLUMN).to_pylist()
    hashes = row_hashes(batch, value_columns).tolist()
    rt.store.reserve_ledger(
        dest.name,
        [
            LedgerEntry(k, int(h))
            for k, h, op in zip(keys, hashes, ops, strict=True)
            if op != "delete"
        ],
    )
    return keys


def _delivered_deletes(batch: pa.Table, keys: list[str], report: DeliveryReport) -> list[str]:
    failed = {key_json(f.key) for f in report.failed}
    ops = batch.column(OP_COLUMN).to_pylist()
    return [k for k, op in zip(keys, ops, strict=True) if op == "delete" and k not in failed]


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
    )


def _commit(
    rt: Runtime,
    dest: Destination,
    work: Workload,
    report: DeliveryReport,
    delivered_deletes: list[str],
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
    )
    run = _run_record(dest, result, started_wall)
    if (
        cs.plan == "noop"
        and result.status == "noop"
        and not work.retry_keys
        and work.resync_requested_at is None
        and work.force_requested_at is None
    ):
        rt.store.record_run(run)
        return
    rt.store.commit_cycle(
        CycleCommit(
            checkpoint=checkpoint,
            run=run,
            failed=[FailedRowUpdate(k, f.op, f.reason) for k, f in failed_now.items()],
            max_attempts=dest.max_attempts,
            resolved=resolved,
            # Upserted keys went into the ledger before they were sent (reserve_ledger);
            # keys B no longer has were sent as deletes, so a full plan needs no rewrite.
            ledger_deletes=delivered_deletes,
            clear_resync=work.resync_requested_at,
            clear_force=work.force_requested_at,
        )
    )


__all__ = ["CycleResult", "preview_cycle", "run_cycle"]
