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
    keys_touched,
    ops_by_key,
    resolve_key,
    rows_at,
    schema_of,
    snapshot_of_ref,
)
from floe_egress.changes.keys import key_jsons
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.changes.source import arrow_schema
from floe_egress.config.filters import same_filter
from floe_egress.config.models import Destination
from floe_egress.daemon.digest import (
    Tally,
    inspect,
    load_for_compare,
)
from floe_egress.daemon.plans import plan_change_set
from floe_egress.daemon.runtime import Runtime
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
        and not explicit
        and not same_filter(checkpoint.row_filter, dest.filter)
    )
    if refiltered and checkpoint is not None:
        # What the destination should hold changed: compare the new subset with the
        # digest of what it holds (as when A cannot be read).
        readable = False
        full_reason = (
            f"the filter changed from {_shown(checkpoint.row_filter)} to {_shown(dest.filter)}"
        )
    change_set, tally = plan_change_set(
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
                row_filter=dest.filter,
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
    if tally.held_keys is not None:
        held = max(held, tally.held_keys) if row_filter is None else tally.held_keys
    elif row_filter is not None and change_set.counts.deleted and state.trusted:
        # The destination holds the subset, not the table: its digest says how many
        # rows (read only when the cycle deletes, for the delete guard).
        held = load_for_compare(
            store, dest.name, key, work_dir=rt.work_dir / "destinations" / dest.name
        ).num_rows
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


def _shown(row_filter: str | None) -> str:
    return repr(row_filter) if row_filter else "none"
