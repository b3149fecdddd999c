"""The change set a cycle sends and how it keeps the digest (daemon/work.py decides
when; this module how): the range A→B of the rows the destination's filter matches,
or, when A cannot be used (expired, a changed filter, an untrusted digest, a resync),
a comparison of B with the digest of what the destination holds."""

from __future__ import annotations

import pyarrow as pa
import structlog
from pyiceberg.table import Table

from floe_egress.changes import ChangeSet, capture
from floe_egress.changes import digest as digests
from floe_egress.changes.capture import DEFAULT_BATCH_ROWS
from floe_egress.changes.digest_spill import Spilled
from floe_egress.changes.ranges import SnapshotRange
from floe_egress.changes.rowfilter import RowFilter
from floe_egress.config.models import Destination
from floe_egress.daemon.digest import DigestState, Tally, as_entries, keys_of, load_for_compare
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import DigestDamagedError
from floe_egress.state.store import StateStore

log = structlog.get_logger("floe_egress.cycle")


def plan_change_set(
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


__all__ = ["plan_change_set"]
