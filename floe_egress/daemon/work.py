"""What one cycle will deliver, worked out before anything is sent.

- the change set A→B (A: the checkpoint, or a resync request; none: full);
- rows to send again at their state in B: failed rows that are not parked, keys
  `verify --repair` queued, and the keys of an interrupted delivery (a cycle that
  started sending A→B' and never committed: if the table has moved on to B, keys that
  A→B' changed may not appear in A→B at all, yet the destination holds their B' values);
- when A cannot be read (expired, the table replaced): only what differs between B and
  the digest of what the destination holds (daemon/digest.py), deletes included;
- the digest side of the cycle (what to reserve, whether its segment replaces the
  digest): a digest that cannot be trusted (lost, damaged, another fingerprint) makes
  the cycle send every row once, as does an explicit `resync`; in a mode that drops
  some ops (an insert-mode update, an upsert-mode delete) the digest keeps what it
  said of the keys those ops would have touched;
- update mode: a full send to a destination synced before sends every row as an
  update (as inserts the mode would drop them all, the changes of the range too).

This module decides; the rows are computed in changes/ (`capture`, `compare`,
`ops_by_key`, `keys_touched`, `rows_at`).

Synchronous: pyiceberg and the state store block; the cycle calls it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import structlog
from pyiceberg.table import Table

from floe_egress.changes import (
    ChangeSet,
    capture,
    keys_touched,
    ops_by_key,
    resolve_key,
    rows_at,
    schema_of,
    snapshot_of_ref,
)
from floe_egress.changes import digest as digests
from floe_egress.changes.capture import DEFAULT_BATCH_ROWS
from floe_egress.changes.digest_spill import Spilled
from floe_egress.changes.keys import key_jsons
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import arrow_schema
from floe_egress.config.filters import same_filter
from floe_egress.config.models import Destination
from floe_egress.daemon.digest import (
    DigestState,
    Tally,
    as_entries,
    inspect,
    keys_of,
    load_for_compare,
)
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import DigestDamagedError
from floe_egress.sinks.mapping import filter_for_mode
from floe_egress.state.store import Attempt, Checkpoint, ResyncRequest, StateStore

log = structlog.get_logger("floe_egress.cycle")


@dataclass(slots=True)
class Workload:
    change_set: ChangeSet
    key: tuple[str, ...]
    checkpoint: Checkpoint | None
    resend: pa.Table
    """Rows sent again at their state in B (failed rows, an interrupted delivery)."""
    retry_keys: list[str]
    """key_json of the failed rows this cycle retries (resolved unless they fail again)."""
    digest: Tally
    held_rows: int
    """Rows the destination holds, as far as we know (for the delete guard)."""
    override: frozenset[str] = frozenset()
    """Keys whose change-set rows are replaced by their `resend` rows."""
    resync_requested_at: float | None = None
    """The resync request this cycle carries out (cleared by its commit)."""
    force_requested_at: float | None = None
    """A pending `sync --force` made while another process held the destination."""
    repairs_seen: float | None = None
    """The newest repair key (`verify --repair`) this cycle sends (cleared by its commit)."""
    pointer: str = ""
    """The metadata file of the table as read (what the daemon's polls compare)."""

    @property
    def schema(self) -> pa.Schema:
        return self.change_set.schema

    @property
    def has_rows(self) -> bool:
        return bool(not self.change_set.is_noop or self.resend.num_rows)

    def batches(self) -> Iterator[pa.Table]:
        for batch in self.change_set.batches():
            rows = pa.Table.from_batches([batch], schema=self.schema)
            if self.override:
                keep = [k not in self.override for k in key_jsons(rows, self.key)]
                rows = rows.filter(pa.array(keep, pa.bool_()))
            yield rows
        if self.resend.num_rows:
            yield self.resend


def summary_total(snapshot: Any) -> int:
    if snapshot is None or snapshot.summary is None:
        return 0
    value = snapshot.summary.additional_properties.get("total-records", "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def _start(
    store: StateStore, dest: Destination, key: tuple[str, ...], resync: ResyncRequest | None
) -> tuple[int | None, str]:
    """A and, when A is none, why."""
    checkpoint = store.get_checkpoint(dest.name)
    if resync is not None:
        reason = "full resync requested" if resync.from_snapshot is None else ""
        return resync.from_snapshot, reason
    if checkpoint is None:
        return None, "first sync of this destination"
    if (checkpoint.table, checkpoint.ref) != (dest.source_table, dest.ref):
        return None, (
            f"the source changed from {checkpoint.table}@{checkpoint.ref} to "
            f"{dest.source_table}@{dest.ref}"
        )
    if checkpoint.key != key:
        log.warning("key_changed_full_resync", old=checkpoint.key, new=key)
        return None, f"the key changed from {list(checkpoint.key)} to {list(key)}: full resync"
    return checkpoint.snapshot_id, ""


def prepare_work(rt: Runtime, dest: Destination) -> Workload:
    store = rt.store
    table = rt.load_table(dest)
    head = snapshot_of_ref(table, dest.ref)
    head_id = head.snapshot_id if head else None
    b_schema = schema_of(table, head)
    key = resolve_key(table, b_schema, dest.primary_key)
    # Bound now: a filter that no longer fits the table stops the cycle before anything.
    row_filter = RowFilter.of(dest.filter, b_schema, table) if dest.filter else None
    resync = store.pending_resync(dest.name)
    checkpoint = store.get_checkpoint(dest.name)
    from_snapshot, full_reason = _start(store, dest, key, resync)
    attempts = [
        a
        for a in store.pending_attempts(dest.name)
        if (a.from_snapshot, a.to_snapshot) != (from_snapshot, head_id)
    ]
    lost = [a for a in attempts if not _readable(table, a)]
    if lost:
        from_snapshot, full_reason = (
            None,
            (
                f"a delivery up to snapshot {lost[0].to_snapshot} was interrupted and its range "
                "can no longer be read (expired snapshots): full resync"
            ),
        )
        attempts = [a for a in attempts if a not in lost]
    state = inspect(store, dest, key, arrow_schema(b_schema), synced=checkpoint is not None)
    explicit = resync is not None and resync.from_snapshot is None
    readable = from_snapshot is not None and table.snapshot_by_id(from_snapshot) is not None
    same_key = checkpoint is None or checkpoint.key == key
    refiltered = (
        checkpoint is not None
        and resync is None
        and not same_filter(checkpoint.row_filter, dest.filter)
    )
    if refiltered and checkpoint is not None:
        # What the destination should hold changed: compare the new subset with the
        # digest of what it holds (as when A cannot be read).
        readable = False
        full_reason = (
            f"the filter changed from {_shown(checkpoint.row_filter)} to {_shown(dest.filter)}"
        )
    change_set, tally = _plan(
        rt,
        dest,
        table,
        key,
        state,
        from_snapshot,
        full_reason,
        readable,
        explicit,
        same_key,
        row_filter,
        refiltered,
    )
    if dest.mode == "update" and change_set.plan == "full" and checkpoint is not None:
        change_set = change_set.as_updates()
    schema = change_set.schema

    wanted: dict[str, str] = {}
    override: set[str] = set()
    retry_keys: list[str] = []
    failed = store.failed_rows(dest.name) if store.failed_row_count(dest.name) else []
    repairs = store.pending_repairs(dest.name)
    if failed or attempts or repairs:
        sent_ops = ops_by_key(change_set, lambda rows: filter_for_mode(rows, dest.mode))
        for row in failed:
            sent_op = sent_ops.get(row.key_json)
            if row.parked:
                if sent_op in ("insert", "update") and change_set.plan == "digest":
                    # The digest lacks (or holds an older version of) a row the destination
                    # refused, so comparing with it would send a parked row again each
                    # time: it stays parked (`floe-egress failures --retry` sends it).
                    override.add(row.key_json)
                elif sent_op is not None:  # delivered by the change set: resolved if it works
                    retry_keys.append(row.key_json)
                continue
            retry_keys.append(row.key_json)
            if sent_op is None or (row.op == "insert" and sent_op == "update"):
                # Not sent by this change set in a form the mode delivers, or an insert the
                # destination never got that the change set would send as an update.
                wanted[row.key_json] = row.op
                if sent_op is not None:
                    override.add(row.key_json)
        for repair in repairs:  # like a failed row: sent at its state in B
            sent_op = sent_ops.get(repair.key_json)
            if repair.key_json in wanted:
                continue
            if sent_op is None or (repair.op == "insert" and sent_op == "update"):
                wanted[repair.key_json] = repair.op
                if sent_op is not None:
                    override.add(repair.key_json)
        touched: set[str] = set()
        for attempt in attempts:
            touched |= keys_touched(
                table,
                ref=dest.ref,
                from_snapshot=attempt.from_snapshot,
                to_snapshot=attempt.to_snapshot,
                key=key,
            )
        extra = {k: "update" for k in touched if k not in sent_ops and k not in wanted}
        if attempts:
            log.warning(
                "interrupted_delivery_resent",
                ranges=[(a.from_snapshot, a.to_snapshot) for a in attempts],
                keys=len(extra),
            )
        wanted.update(extra)
    resend = schema.empty_table()
    if wanted and change_set.to_snapshot is not None:
        resend = rows_at(table, change_set.to_snapshot, key, wanted, schema, row_filter)

    held = summary_total(table.snapshot_by_id(from_snapshot)) if from_snapshot else 0
    if row_filter is not None and state.stored is not None:
        # The destination holds the subset, not the table: the digest's entries say how
        # many (at most: keys written in several segments count more than once).
        held = sum(s.rows for s in state.stored.segments if s.kind == "held")
    if tally.held_keys is not None:
        held = max(held, tally.held_keys) if row_filter is None else tally.held_keys
    return Workload(
        change_set,
        key,
        checkpoint,
        resend,
        retry_keys,
        tally,
        held,
        override=frozenset(override),
        resync_requested_at=resync.requested_at if resync is not None else None,
        force_requested_at=store.pending_force(dest.name),
        repairs_seen=max((r.queued_at for r in repairs), default=None),
        pointer=table.metadata_location,
    )


def _readable(table: Table, attempt: Attempt) -> bool:
    if table.snapshot_by_id(attempt.to_snapshot) is None:
        return False
    return attempt.from_snapshot is None or table.snapshot_by_id(attempt.from_snapshot) is not None


def _plan(
    rt: Runtime,
    dest: Destination,
    table: Table,
    key: tuple[str, ...],
    state: DigestState,
    from_snapshot: int | None,
    full_reason: str,
    readable: bool,
    explicit: bool,
    same_key: bool,
    row_filter: RowFilter | None,
    refiltered: bool,
) -> tuple[ChangeSet, Tally]:
    """The change set, and how the cycle keeps the digest (see the module doc)."""
    store = rt.store
    work_dir = rt.work_dir / "destinations" / dest.name
    tally = Tally(store, dest.name, key, state, replace=False, work_dir=work_dir)
    digest: pa.Table | Spilled | None = None
    trouble = state.trouble
    # The digest's keys are good for deletes even when its hashes are not (another
    # fingerprint); a changed key makes them keys of another kind.
    if state.stored is not None and same_key:
        try:
            if explicit or not readable or trouble is not None:
                digest = load_for_compare(store, dest.name, key, work_dir=work_dir)
        except DigestDamagedError as exc:
            trouble = str(exc)
    if trouble is not None or explicit:
        # Send every row once; the digest's keys (if any can be read) give the deletes.
        if explicit:
            why = "full resync requested"
        elif not same_key:
            why = full_reason
        else:
            why = f"{trouble}: sending every row once"
        if trouble is not None:
            log.warning("digest_not_trusted", reason=trouble)
            tally.rebuilt = trouble
        tally.replace = True
        tally.drop_ledger = True
        if digest is not None and digest.num_rows:
            span = _span(table, dest, key, None)
            tally.held_keys = digest.num_rows
            if dest.mode not in ("mirror", "append"):
                # The mode drops some ops (an insert-mode update, an upsert-mode delete):
                # the destination still holds those keys as the digest says.
                tally.base = digest if isinstance(digest, Spilled) else as_entries(digest)
            return digests.compare(
                span, state.columns, digest, reason=why, everything=True, spill_dir=str(work_dir)
            ), tally
        return _capture(table, dest, key, None, why), tally
    if state.before_digests:
        tally.replace = tally.drop_ledger = True
        if readable and from_snapshot is not None:
            tally.base = _built_from(table, from_snapshot, key, state, store, dest, row_filter)
        if tally.base is None:
            why = "the destination has no digest yet (an earlier version kept none)"
            return _capture(table, dest, key, None, why), tally
    if not readable and digest is not None and (digest.num_rows or refiltered):
        span = _span(table, dest, key, from_snapshot)
        tally.held_keys = digest.num_rows
        why = full_reason or (
            f"snapshot {from_snapshot} is no longer in the metadata of table "
            f"{dest.source_table} (expired, or the table was replaced)"
        )
        why += ": only what differs from the digest of what the destination holds is sent"
        return digests.compare(
            span, state.columns, digest, reason=why, spill_dir=str(work_dir)
        ), tally
    if refiltered:
        # A cannot be compared with (the filter changed) and there is no digest: send
        # the subset as a first sync would.
        from_snapshot = None
    change_set = _capture(table, dest, key, from_snapshot, full_reason)
    if change_set.plan == "full" and from_snapshot is not None and change_set.to_snapshot:
        # A is listed but cannot be read (its data files are gone): what the destination
        # holds is in the digest, as when A expired.
        try:
            digest = (
                load_for_compare(store, dest.name, key, work_dir=work_dir)
                if state.trusted and same_key
                else None
            )
        except DigestDamagedError as exc:
            log.warning("digest_not_trusted", reason=str(exc))
            tally.rebuilt = str(exc)
        if digest is not None and digest.num_rows:
            tally.held_keys = digest.num_rows
            span = _span(table, dest, key, from_snapshot)
            why = f"{change_set.reason}: only what differs from the digest is sent"
            return digests.compare(
                span, state.columns, digest, reason=why, spill_dir=str(work_dir)
            ), tally
    if change_set.plan == "full":
        tally.replace = True
    return change_set, tally


def _span(
    table: Table, dest: Destination, key: tuple[str, ...], from_snapshot: int | None
) -> SnapshotRange:
    return SnapshotRange.of(
        table,
        ref=dest.ref,
        from_snapshot=from_snapshot,
        key=key,
        to_snapshot=None,
        batch_rows=DEFAULT_BATCH_ROWS,
        row_filter=dest.filter,
    )


def _capture(
    table: Table, dest: Destination, key: tuple[str, ...], from_snapshot: int | None, why: str
) -> ChangeSet:
    """The change set A→B of the rows the destination's filter matches. Only append mode
    sends what a deleted row held; every other mode deletes by key."""
    return capture(
        table,
        ref=dest.ref,
        from_snapshot=from_snapshot,
        key=key,
        full_reason=why,
        old_rows=dest.mode == "append",
        row_filter=dest.filter,
    )


def _shown(row_filter: str | None) -> str:
    return repr(row_filter) if row_filter else "none"


def _built_from(
    table: Table,
    snapshot_id: int,
    key: tuple[str, ...],
    state: DigestState,
    store: StateStore,
    dest: Destination,
    row_filter: RowFilter | None,
) -> pa.Table | None:
    """What a destination synced before digests existed holds: the rows of the snapshot
    it confirmed, its failed rows with values unknown (None when that snapshot lacks a
    column the digest hashes)."""
    try:
        base = digests.snapshot_entries(table, snapshot_id, key, state.columns, row_filter)
    except (ValueError, KeyError):  # a column added since: compare from scratch
        return None
    failed = [r.key_json for r in store.failed_rows(dest.name)]
    if failed:
        unknown = digests.unknown_entries(keys_of(failed, key, base.schema), key)
        base = pa.concat_tables([base, unknown.cast(base.schema)])
    log.info("digest_built_from_checkpoint", snapshot=snapshot_id, keys=base.num_rows)
    return base
