"""`floe-egress verify NAME`: does a destination hold what the table held at its checkpoint?

The table at the checkpoint's snapshot (what the destination confirmed) is compared
with the destination's digest, and, for sinks that can read their destination back
(database tables), with the destination itself; changes/verify.py does the comparing,
daemon/verify_report.py the reporting.

What each sync mode promises decides what is a difference (changes/verify.py COUNTED):

- mirror: the destination equals the table: missing, extra and differing keys all are;
- upsert: every key of the table with its values; keys the table deleted stay (extra
  is not a difference);
- insert: every key of the table, with the values it had when it was first sent;
- update: the keys it updated hold the table's values; only the keys the digest holds
  (the ones it sent) are compared at the destination;
- append: the digest follows the newest event of each key (a delete forgets it), so all
  three are differences there; the destination, an event log, is not read back.

`--repair` queues the keys of every difference (state/repairs.py): the next cycle
sends each as it is in the table then (a delete where the table no longer holds it),
and the digest follows what the destination confirms.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import structlog
from pyiceberg.table import Table

from floe_egress.changes import schema_of
from floe_egress.changes import verify as check
from floe_egress.changes.digest import HASH
from floe_egress.changes.keys import key_jsons
from floe_egress.changes.lookup import current_rows
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import arrow_schema
from floe_egress.changes.verify import COUNTED, REPAIR_OP, WHY_NOT_COUNTED, Category, Expected
from floe_egress.config.models import Destination, FloeSpec
from floe_egress.config.secrets import redact
from floe_egress.daemon.digest import DigestState, inspect, load
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.verify_report import Side, VerifyReport
from floe_egress.errors import CheckpointError, DigestDamagedError, InvalidSourceError
from floe_egress.sinks.base import ReadBackSink
from floe_egress.state.store import Checkpoint, StateStore

log = structlog.get_logger("floe_egress.verify")

_PRECEDENCE = {"insert": 0, "update": 1, "delete": 2}
"""A key two comparisons disagree on gets the op that sends its row, if any."""


async def verify(rt: Runtime, dest: Destination, *, repair: bool = False) -> VerifyReport:
    """Compare `dest` with its table at the checkpoint; queue the differences when
    `repair`. Raises EgressError when there is nothing to compare with."""
    store = rt.store
    checkpoint = await asyncio.to_thread(_checkpoint, store, dest)
    table = await asyncio.to_thread(rt.load_table, dest)
    report, seen = await asyncio.to_thread(_against_digest, store, dest, checkpoint, table)
    report.target = await _against_destination(rt, dest, checkpoint, table, report, seen)
    if checkpoint.row_filter:
        report.filter = await asyncio.to_thread(_filter_effects, table, checkpoint, report)
    if await asyncio.to_thread(store.get_checkpoint, dest.name) != checkpoint:
        raise CheckpointError(
            f"destination {dest.name} was synced while verify ran: run verify again"
        )
    if repair:
        report.queued = await asyncio.to_thread(_queue, store, dest, report)
    log.info(
        "verify_finished",
        destination=dest.name,
        differences=report.differences,
        queued=report.queued,
    )
    return report


def verify_destination(spec: FloeSpec, dest: Destination, *, repair: bool = False) -> VerifyReport:
    """`verify` with a runtime of its own (the command line)."""

    async def run() -> VerifyReport:
        runtime = Runtime(spec)
        try:
            return await verify(runtime, dest, repair=repair)
        finally:
            await runtime.close()

    return asyncio.run(run())


def _filter_effects(table: Table, checkpoint: Checkpoint, report: VerifyReport) -> dict[str, Any]:
    """The differences in the filter's terms: matching rows the destination lacks
    (entered, not received), rows it holds that the table holds without matching (left,
    not removed), matching rows whose values differ (changed)."""
    side = report.target if report.target.compared else report.digest
    left = 0
    if side.found is not None and checkpoint.snapshot_id is not None:
        extra = side.found.of("extra").to_pylist()
        if extra:
            rows = current_rows(table, checkpoint.snapshot_id, checkpoint.key, extra)
            left = len(set(key_jsons(rows, checkpoint.key)))
    return {
        "filter": checkpoint.row_filter,
        "rows_matching": report.table_rows,
        "entered_not_received": side.count("missing"),
        "left_not_removed": left,
        "changed_not_received": side.count("differing"),
    }


def _checkpoint(store: StateStore, dest: Destination) -> Checkpoint:
    checkpoint = store.get_checkpoint(dest.name)
    if checkpoint is None:
        raise CheckpointError(
            f"destination {dest.name} has not been synced yet: nothing to verify "
            f"(run `floe-egress sync --destination {dest.name}`)"
        )
    if (checkpoint.table, checkpoint.ref) != (dest.source_table, dest.ref):
        raise CheckpointError(
            f"destination {dest.name} was last synced from {checkpoint.table}@{checkpoint.ref}, "
            f"its configuration now says {dest.source_table}@{dest.ref}: the next sync sends "
            "the new table; verify after it"
        )
    return checkpoint


def _snapshot_schema(table: Table, checkpoint: Checkpoint, dest: Destination) -> pa.Schema:
    snapshot = None
    if checkpoint.snapshot_id is not None:
        snapshot = table.snapshot_by_id(checkpoint.snapshot_id)
        if snapshot is None:
            raise InvalidSourceError(
                f"destination {dest.name}: snapshot {checkpoint.snapshot_id} of its checkpoint "
                f"is no longer in table {dest.source_table} (expired, or the table was "
                "replaced); the next sync compares the table with the digest: verify after it"
            )
    return arrow_schema(schema_of(table, snapshot))


def _expected(
    table: Table, checkpoint: Checkpoint, schema: pa.Schema, columns: tuple[str, ...]
) -> Expected:
    key = checkpoint.key
    if checkpoint.snapshot_id is None:  # synced while the table had no snapshot
        keys = pa.schema([schema.field(k) for k in key])
        return Expected(keys.append(pa.field(HASH, pa.uint64())).empty_table(), keys.empty_table())
    bound = None
    if checkpoint.row_filter:
        # What the destination should hold is the subset its filter chose at the
        # checkpoint (a filter changed since takes effect at the next sync).
        snapshot = table.snapshot_by_id(checkpoint.snapshot_id)
        bound = RowFilter.of(checkpoint.row_filter, schema_of(table, snapshot), table)
    return check.expected(table, checkpoint.snapshot_id, key, columns, bound)


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the digest comparison learnt that the destination comparison uses."""

    schema: pa.Schema
    """The table's columns at the checkpoint, as sent (UUIDs as text)."""
    columns: tuple[str, ...]
    """The columns the digest hashes: the key and the sent ones."""
    digest_keys: pa.Table | None
    """The keys the digest holds (None when it cannot be read)."""


def _against_digest(
    store: StateStore, dest: Destination, checkpoint: Checkpoint, table: Table
) -> tuple[VerifyReport, _Seen]:
    """The report with its digest side filled in."""
    schema = _snapshot_schema(table, checkpoint, dest)
    key = checkpoint.key
    state = inspect(store, dest, key, schema, synced=True)
    expected = _expected(table, checkpoint, schema, state.columns)
    side, digest = _digest_side(store, dest, state, expected, key)
    report = VerifyReport(
        destination=dest.name,
        table=dest.source_table,
        mode=dest.mode,
        key=key,
        snapshot_id=checkpoint.snapshot_id,
        table_rows=expected.entries.num_rows,
        invalid_keys=expected.invalid_keys,
        digest=side,
        target=Side("destination", compared=False),
    )
    keys = None if digest is None else digest.select(list(key))
    return report, _Seen(schema, state.columns, keys)


def _digest_side(
    store: StateStore,
    dest: Destination,
    state: DigestState,
    expected: Expected,
    key: tuple[str, ...],
) -> tuple[Side, pa.Table | None]:
    if state.before_digests:
        note = "no digest yet (synced by an earlier version): the next sync builds it"
        return Side("digest", compared=False, note=note), None
    if state.trouble is not None:
        note = f"{state.trouble}; the next sync sends every row once and rebuilds it"
        return Side("digest", compared=True, note=note, trouble=True), None
    try:
        digest = load(store, dest.name, key)
    except DigestDamagedError as exc:
        # A cycle reads the segments only when it needs them (A unreadable, a resync).
        note = f"{exc}; `floe-egress resync {dest.name}` rebuilds it with one full send"
        return Side("digest", compared=True, note=note, trouble=True), None
    side = _side("digest", dest, expected, digest, key)
    side.keys = digest.num_rows
    stored = state.stored
    if stored is not None and any(s.kind == "reserved" for s in stored.segments):
        side.note = (
            "a cycle is delivering to this destination, or one was cut short: the keys it "
            "wrote count as differing until a cycle commits"
        )
    return side, digest


def _side(
    name: str, dest: Destination, expected: Expected, actual: pa.Table, key: tuple[str, ...]
) -> Side:
    counted = COUNTED[name][dest.mode]
    not_counted: dict[Category, str] = {
        c: WHY_NOT_COUNTED[(dest.mode, c)] for c in check.CATEGORIES if c not in counted
    }
    found = check.differences(expected, actual, key)
    return Side(name, compared=True, found=found, counted=counted, not_counted=not_counted)


async def _against_destination(
    rt: Runtime,
    dest: Destination,
    checkpoint: Checkpoint,
    table: Table,
    report: VerifyReport,
    seen: _Seen,
) -> Side:
    if dest.mode not in COUNTED["destination"]:
        note = "append mode keeps an event log: compared through the digest only"
        return Side("destination", compared=False, note=note)
    key = checkpoint.key
    sink = await rt.sink(dest, key)
    if not isinstance(sink, ReadBackSink):
        note = f"{dest.sink_type} destinations cannot be read back: compared through the digest"
        return Side("destination", compared=False, note=note)
    if dest.mode == "update" and seen.digest_keys is None:
        note = "update mode compares the keys the digest holds, and it cannot be read"
        return Side("destination", compared=False, note=note)
    schema = seen.schema
    unreadable = sink.unreadable(_select(schema, seen.columns))
    columns = tuple(c for c in seen.columns if c not in unreadable)
    expected = await asyncio.to_thread(_expected, table, checkpoint, schema, columns)
    if dest.mode == "update" and seen.digest_keys is not None:
        expected = check.only_keys(expected, seen.digest_keys, key)
    parts: list[pa.Table] = []

    def consume(rows: pa.Table) -> None:
        parts.append(check.observed([rows], key, columns))

    read = await sink.read_back(_select(schema, columns), consume)
    actual = pa.concat_tables(parts) if parts else pa.table({})
    side = await asyncio.to_thread(_side, "destination", dest, expected, actual, key)
    side.keys = read
    side.columns_not_compared = unreadable
    report.target_where = redact(sink.location)
    return side


def _select(schema: pa.Schema, columns: tuple[str, ...]) -> pa.Schema:
    return pa.schema([schema.field(c) for c in columns])


def _queue(store: StateStore, dest: Destination, report: VerifyReport) -> int:
    ops: dict[str, str] = {}
    for side in (report.digest, report.target):
        if side.found is None:
            continue
        for category in side.counted:
            op = REPAIR_OP[category]
            for k in side.found.key_jsons(category):
                if k not in ops or _PRECEDENCE[op] < _PRECEDENCE[ops[k]]:
                    ops[k] = op
    return store.queue_repairs(dest.name, ops.items())


__all__ = ["verify", "verify_destination"]
