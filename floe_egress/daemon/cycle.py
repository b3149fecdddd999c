"""One sync cycle of one destination.

read checkpoint A → change set A→B (+ failed rows to retry, + ledger deletes) → delete
guard → deliver batch by batch → one transaction: checkpoint B, run record, failed rows,
ledger. A crash before that transaction resends the same A→B (writes are idempotent
upserts/deletes by key); after it nothing is resent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import structlog

from floe_egress.changes import (
    OP_COLUMN,
    ChangeSet,
    capture,
    resolve_key,
    schema_of,
    snapshot_of_ref,
)
from floe_egress.changes.keys import key_json, key_jsons, keys_table, parse_key_json, row_hashes
from floe_egress.changes.lookup import current_rows
from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import EgressError
from floe_egress.sinks.base import MIN_ROWS_PER_WRITE, DeliveryReport, WriteContext
from floe_egress.sinks.mapping import filter_for_mode, ops_for_mode
from floe_egress.sinks.registry import get_sink_type
from floe_egress.state.store import (
    Checkpoint,
    CycleCommit,
    FailedRowRecord,
    FailedRowUpdate,
    LedgerEntry,
    RunRecord,
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


@dataclass(slots=True)
class _Work:
    """What one cycle will deliver, before anything is sent."""

    change_set: ChangeSet
    key: tuple[str, ...]
    from_checkpoint: Checkpoint | None
    retries: pa.Table
    retry_keys: list[str]
    ledger_deletes: pa.Table
    held_rows: int

    @property
    def schema(self) -> pa.Schema:
        return self.change_set.schema

    def batches(self) -> Iterator[pa.Table]:
        for batch in self.change_set.batches():
            yield pa.Table.from_batches([batch], schema=self.schema)
        if self.retries.num_rows:
            yield self.retries
        if self.ledger_deletes.num_rows:
            yield self.ledger_deletes


def _summary_total(snapshot: Any) -> int:
    if snapshot is None or snapshot.summary is None:
        return 0
    value = snapshot.summary.additional_properties.get("total-records", "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def _plan(rt: Runtime, dest: Destination) -> _Work:
    """Everything up to delivery; synchronous (pyiceberg and the store are blocking)."""
    store = rt.store
    table = rt.load_table(dest)
    b = snapshot_of_ref(table, dest.ref)
    key = resolve_key(table, schema_of(table, b), dest.primary_key)
    checkpoint = store.get_checkpoint(dest.name)
    resync = store.pending_resync(dest.name)

    from_snapshot: int | None = None
    full_reason = ""
    if resync is not None:
        from_snapshot = resync.from_snapshot
        full_reason = "full resync requested" if from_snapshot is None else ""
    elif checkpoint is None:
        full_reason = "first sync of this destination"
    elif (checkpoint.table, checkpoint.ref) != (dest.source_table, dest.ref):
        full_reason = (
            f"the source changed from {checkpoint.table}@{checkpoint.ref} to "
            f"{dest.source_table}@{dest.ref}"
        )
    elif checkpoint.key != key:
        full_reason = f"the key changed from {list(checkpoint.key)} to {list(key)}: full resync"
        log.warning("key_changed_full_resync", destination=dest.name, old=checkpoint.key, new=key)
    else:
        from_snapshot = checkpoint.snapshot_id

    change_set = capture(
        table, ref=dest.ref, from_snapshot=from_snapshot, key=key, full_reason=full_reason
    )
    schema = change_set.schema
    empty = schema.empty_table()

    retries: pa.Table = empty
    retry_keys: list[str] = []
    pending = store.failed_rows(dest.name, include_parked=False)
    if pending and change_set.to_snapshot is not None:
        retries, retry_keys = _retry_rows(table, change_set, key, pending, schema)

    ledger_deletes = empty
    held = _summary_total(table.snapshot_by_id(from_snapshot)) if from_snapshot else 0
    if dest.mode == "mirror":
        held = store.ledger_size(dest.name)
        if change_set.plan == "full" and held:
            ledger_deletes = _ledger_deletes(rt, dest, table, change_set, key, schema)
    return _Work(change_set, key, checkpoint, retries, retry_keys, ledger_deletes, held)


def _retry_rows(
    table: Any,
    cs: ChangeSet,
    key: tuple[str, ...],
    pending: list[FailedRowRecord],
    schema: pa.Schema,
) -> tuple[pa.Table, list[str]]:
    """Failed rows with their latest values (deletes when the key is gone)."""
    in_change_set = set()
    for batch in cs.batches():
        in_change_set.update(key_jsons(batch, key))
    todo = [r for r in pending if r.key_json not in in_change_set]
    if not todo:
        return schema.empty_table(), [r.key_json for r in pending]
    keys = [parse_key_json(r.key_json) for r in todo]
    assert cs.to_snapshot is not None
    found = current_rows(table, cs.to_snapshot, key, keys)
    found_keys = set(key_jsons(found, key))
    by_key = {r.key_json: r for r in todo}
    ops = [
        by_key[k].op if by_key[k].op in ("insert", "update") else "update"
        for k in key_jsons(found, key)
    ]
    found = found.append_column(OP_COLUMN, pa.array(ops, pa.string()))
    found = found.select([n for n in schema.names if n in found.column_names])
    gone = [parse_key_json(k) for k in by_key if k not in found_keys]
    parts = [_conform(found, schema)]
    if gone:
        deletes = keys_table(gone, pa.schema([schema.field(k) for k in key]))
        deletes = deletes.append_column(OP_COLUMN, pa.array(["delete"] * len(gone), pa.string()))
        parts.append(_conform(deletes, schema))
    return pa.concat_tables(parts), [r.key_json for r in pending]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in order; missing columns are null."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _ledger_deletes(
    rt: Runtime,
    dest: Destination,
    table: Any,
    cs: ChangeSet,
    key: tuple[str, ...],
    schema: pa.Schema,
) -> pa.Table:
    """Keys the destination was sent that B no longer has (a full resync in mirror mode)."""
    live: set[str] = set()
    if cs.to_snapshot is not None:
        scan = table.scan(snapshot_id=cs.to_snapshot, selected_fields=key)
        for batch in scan.to_arrow_batch_reader():
            live.update(key_jsons(batch, key))
    gone: list[dict[str, Any]] = []
    for entries in rt.store.ledger_scan(dest.name):
        gone.extend(parse_key_json(e.key_json) for e in entries if e.key_json not in live)
    if not gone:
        return schema.empty_table()
    deletes = keys_table(gone, pa.schema([schema.field(k) for k in key]))
    deletes = deletes.append_column(OP_COLUMN, pa.array(["delete"] * len(gone), pa.string()))
    return _conform(deletes, schema)


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


def _count_deletes(work: _Work, dest: Destination) -> int:
    if "delete" not in ops_for_mode(dest.mode) or dest.mode == "append":
        return 0
    return work.change_set.counts.deleted + int(work.ledger_deletes.num_rows)


async def plan_cycle(rt: Runtime, dest: Destination) -> CycleResult:
    """What a cycle would send, with a sample per op; nothing is sent or written."""
    started = time.monotonic()
    try:
        work = await asyncio.to_thread(_plan, rt, dest)
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
        retried=work.retries.num_rows,
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
) -> CycleResult:
    """One full cycle of `dest`; never raises for destination errors (they are results)."""
    started_wall, started = time.time(), time.monotonic()
    bound = log.bind(destination=dest.name, table=dest.source_table)
    store = rt.store
    if not await asyncio.to_thread(store.acquire_lease, dest.name, owner, lease_seconds):
        holder = await asyncio.to_thread(store.lease_holder, dest.name)
        return CycleResult(dest.name, "skipped", error=f"destination is held by {holder}")
    result = CycleResult(dest.name, "failed")
    try:
        work = await asyncio.to_thread(_plan, rt, dest)
        cs = work.change_set
        result.plan, result.reason = cs.plan, cs.reason
        result.from_snapshot, result.to_snapshot = cs.from_snapshot, cs.to_snapshot
        result.invalid = cs.counts.invalid
        bound = bound.bind(plan=cs.plan, from_snapshot=cs.from_snapshot, to_snapshot=cs.to_snapshot)
        deletes = _count_deletes(work, dest)
        if (
            not force
            and work.held_rows
            and deletes
            and deletes > dest.max_delete_fraction * work.held_rows
        ):
            raise _GuardError(
                f"destination {dest.name}: this cycle would delete {deletes} of the "
                f"{work.held_rows} rows the destination holds (more than "
                f"max_delete_fraction={dest.max_delete_fraction}); nothing was sent. "
                f"Check table {dest.source_table}, then run `floe-egress sync "
                f"--destination {dest.name} --force` to send it anyway."
            )
        report, ledger = await _deliver(rt, dest, work)
        result.inserted = report.delivered.get("insert", 0)
        result.updated = report.delivered.get("update", 0)
        result.deleted = report.delivered.get("delete", 0)
        result.failed = len(report.failed)
        result.rate_limit_wait_seconds = report.rate_limit_wait_seconds
        result.http_statuses = dict(report.http_statuses)
        result.retried = work.retries.num_rows
        sent = result.inserted + result.updated + result.deleted + result.failed
        result.status = "ok" if sent else "noop"
        result.duration_seconds = time.monotonic() - started
        await asyncio.shield(
            asyncio.to_thread(_commit, rt, dest, work, report, ledger, result, started_wall)
        )
        bound.info(
            "cycle_finished",
            status=result.status,
            inserted=result.inserted,
            updated=result.updated,
            deleted=result.deleted,
            failed=result.failed,
            invalid=result.invalid,
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
            await asyncio.to_thread(store.record_run, _run_record(dest, result, started_wall))
        except Exception as record_exc:  # the store may be what failed
            bound.error("run_record_failed", error=redact(str(record_exc)))
    finally:
        if release_lease:
            await asyncio.to_thread(store.release_lease, dest.name, owner)
    return result


class _GuardError(EgressError):
    """The delete guard stopped the cycle before anything was sent."""


@dataclass(slots=True)
class _Ledger:
    upserts: list[LedgerEntry] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


async def _deliver(rt: Runtime, dest: Destination, work: _Work) -> tuple[DeliveryReport, _Ledger]:
    cs = work.change_set
    sink = await rt.sink(dest, work.key)
    sink_type = get_sink_type(dest.sink_type)
    batch_size = dest.batch_size or (sink_type.default_batch_size if sink_type else 1000)
    # batch_size is what the destination takes at once (records per request, rows per
    # load), which the sink applies; a write hands it many batches at once because every
    # dlt run costs 0.1-0.2 s of its own.
    size = max(batch_size, MIN_ROWS_PER_WRITE)
    report = DeliveryReport()
    ledger = _Ledger()
    value_columns = [n for n in cs.schema.names if n != OP_COLUMN]
    filtered = (filter_for_mode(t, dest.mode) for t in work.batches())
    for index, batch in enumerate(_rebatch((t for t in filtered if t.num_rows), size)):
        context = WriteContext(
            destination=dest.name,
            mode=dest.mode,
            key=work.key,
            from_snapshot=cs.from_snapshot,
            to_snapshot=cs.to_snapshot,
            batch_index=index,
        )
        batch_report = await sink.write(batch, context)
        report.merge(batch_report)
        if dest.mode == "mirror":
            _track_ledger(ledger, batch, batch_report, work.key, value_columns)
    return report, ledger


def _track_ledger(
    ledger: _Ledger,
    batch: pa.Table,
    report: DeliveryReport,
    key: tuple[str, ...],
    value_columns: list[str],
) -> None:
    failed = {key_json(f.key) for f in report.failed}
    keys = key_jsons(batch, key)
    hashes = row_hashes(batch, value_columns)
    ops = batch.column(OP_COLUMN).to_pylist()
    for k, h, op in zip(keys, hashes.tolist(), ops, strict=True):
        if k in failed:
            continue
        if op == "delete":
            ledger.deletes.append(k)
        else:
            ledger.upserts.append(LedgerEntry(k, int(h)))


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
    work: _Work,
    report: DeliveryReport,
    ledger: _Ledger,
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
    if cs.plan == "noop" and result.status == "noop" and not work.retry_keys:
        rt.store.record_run(run)
        return
    rt.store.commit_cycle(
        CycleCommit(
            checkpoint=checkpoint,
            run=run,
            failed=[FailedRowUpdate(k, f.op, f.reason) for k, f in failed_now.items()],
            max_attempts=dest.max_attempts,
            resolved=resolved,
            ledger_upserts=ledger.upserts,
            ledger_deletes=ledger.deletes,
            ledger_replace=dest.mode == "mirror" and cs.plan == "full",
            clear_resync=True,
        )
    )


__all__ = ["CycleResult", "plan_cycle", "run_cycle"]
