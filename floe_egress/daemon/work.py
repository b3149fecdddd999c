"""What one cycle will deliver, worked out before anything is sent.

- the change set A→B (A: the checkpoint, or a resync request; none: full);
- rows to send again at their state in B: failed rows that are not parked, and the keys
  of an interrupted delivery (a cycle that started sending A→B' and never committed:
  if the table has moved on to B, keys that A→B' changed may not appear in A→B at all,
  yet the destination holds their B' values);
- in mirror mode after a full plan, deletes for keys the destination was sent (the
  ledger) that B no longer has.

Synchronous: pyiceberg and the state store block; the cycle calls it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import structlog
from pyiceberg.table import Table

from floe_egress.changes import (
    OP_COLUMN,
    ChangeSet,
    capture,
    resolve_key,
    schema_of,
    snapshot_of_ref,
)
from floe_egress.changes.keys import key_jsons, keys_table, parse_key_json
from floe_egress.changes.lookup import current_rows
from floe_egress.config.models import Destination
from floe_egress.daemon.runtime import Runtime
from floe_egress.state.store import Attempt, Checkpoint, StateStore

log = structlog.get_logger("floe_egress.cycle")


@dataclass(slots=True)
class Work:
    change_set: ChangeSet
    key: tuple[str, ...]
    checkpoint: Checkpoint | None
    resend: pa.Table
    """Rows sent again at their state in B (failed rows, an interrupted delivery)."""
    retry_keys: list[str]
    """key_json of the failed rows this cycle retries (resolved unless they fail again)."""
    ledger_deletes: pa.Table
    held_rows: int
    """Rows the destination holds, as far as we know (for the delete guard)."""

    @property
    def schema(self) -> pa.Schema:
        return self.change_set.schema

    @property
    def has_rows(self) -> bool:
        return bool(
            not self.change_set.is_noop or self.resend.num_rows or self.ledger_deletes.num_rows
        )

    def batches(self) -> Iterator[pa.Table]:
        for batch in self.change_set.batches():
            yield pa.Table.from_batches([batch], schema=self.schema)
        if self.resend.num_rows:
            yield self.resend
        if self.ledger_deletes.num_rows:
            yield self.ledger_deletes


def summary_total(snapshot: Any) -> int:
    if snapshot is None or snapshot.summary is None:
        return 0
    value = snapshot.summary.additional_properties.get("total-records", "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def _start(store: StateStore, dest: Destination, key: tuple[str, ...]) -> tuple[int | None, str]:
    """A and, when A is none, why."""
    checkpoint = store.get_checkpoint(dest.name)
    resync = store.pending_resync(dest.name)
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
        log.warning("key_changed_full_resync", destination=dest.name, old=checkpoint.key, new=key)
        return None, f"the key changed from {list(checkpoint.key)} to {list(key)}: full resync"
    return checkpoint.snapshot_id, ""


def plan_work(rt: Runtime, dest: Destination) -> Work:
    store = rt.store
    table = rt.load_table(dest)
    head = snapshot_of_ref(table, dest.ref)
    key = resolve_key(table, schema_of(table, head), dest.primary_key)
    from_snapshot, full_reason = _start(store, dest, key)
    attempt = store.pending_attempt(dest.name)
    interrupted = _interrupted(attempt, from_snapshot, head.snapshot_id if head else None)
    if interrupted is not None and table.snapshot_by_id(interrupted.to_snapshot) is None:
        from_snapshot, full_reason = (
            None,
            (
                f"a delivery up to snapshot {interrupted.to_snapshot} was interrupted and that "
                "snapshot has expired since: full resync"
            ),
        )
        interrupted = None
    change_set = capture(
        table, ref=dest.ref, from_snapshot=from_snapshot, key=key, full_reason=full_reason
    )
    schema = change_set.schema

    wanted: dict[str, str] = {}
    retry_keys: list[str] = []
    pending = store.failed_rows(dest.name, include_parked=False)
    if pending or interrupted is not None:
        in_change_set = {k for b in change_set.batches() for k in key_jsons(b, key)}
        retry_keys = [r.key_json for r in pending]
        wanted.update({r.key_json: r.op for r in pending if r.key_json not in in_change_set})
        if interrupted is not None:
            touched = _keys_of_range(table, dest, interrupted, key)
            extra = {k: "update" for k in touched - in_change_set if k not in wanted}
            log.warning(
                "interrupted_delivery_resent",
                destination=dest.name,
                from_snapshot=interrupted.from_snapshot,
                to_snapshot=interrupted.to_snapshot,
                keys=len(extra),
            )
            wanted.update(extra)
    resend = schema.empty_table()
    if wanted and change_set.to_snapshot is not None:
        resend = _at_current_state(table, change_set.to_snapshot, key, wanted, schema)

    ledger_deletes = schema.empty_table()
    held = summary_total(table.snapshot_by_id(from_snapshot)) if from_snapshot else 0
    if dest.mode == "mirror":
        held = store.ledger_size(dest.name)
        if change_set.plan == "full" and held:
            ledger_deletes = _ledger_deletes(store, dest, table, change_set, key, schema)
    return Work(
        change_set,
        key,
        store.get_checkpoint(dest.name),
        resend,
        retry_keys,
        ledger_deletes,
        held,
    )


def _interrupted(
    attempt: Attempt | None, from_snapshot: int | None, head: int | None
) -> Attempt | None:
    """The attempt to replay: it started from the same A and aimed at another B."""
    if attempt is None or attempt.from_snapshot != from_snapshot or attempt.to_snapshot == head:
        return None
    return attempt


def _keys_of_range(
    table: Table, dest: Destination, attempt: Attempt, key: tuple[str, ...]
) -> set[str]:
    touched = capture(
        table,
        ref=dest.ref,
        from_snapshot=attempt.from_snapshot,
        key=key,
        to_snapshot=attempt.to_snapshot,
    )
    return {k for b in touched.batches() for k in key_jsons(b, key)}


def _at_current_state(
    table: Table,
    snapshot_id: int,
    key: tuple[str, ...],
    wanted: Mapping[str, str],
    schema: pa.Schema,
) -> pa.Table:
    """The rows of `wanted` keys as they are in `snapshot_id`: present rows keep an
    insert/update op (default update), keys that are gone become deletes."""
    found = current_rows(table, snapshot_id, key, [parse_key_json(k) for k in wanted])
    found_keys = key_jsons(found, key)
    ops = [wanted[k] if wanted[k] in ("insert", "update") else "update" for k in found_keys]
    found = found.append_column(OP_COLUMN, pa.array(ops, pa.string()))
    parts = [conform(found.select([n for n in schema.names if n in found.column_names]), schema)]
    present = set(found_keys)
    gone = [parse_key_json(k) for k in wanted if k not in present]
    if gone:
        parts.append(_deletes(gone, key, schema))
    return pa.concat_tables(parts)


def _deletes(keys: list[dict[str, Any]], key: tuple[str, ...], schema: pa.Schema) -> pa.Table:
    rows = keys_table(keys, pa.schema([schema.field(k) for k in key]))
    rows = rows.append_column(OP_COLUMN, pa.array(["delete"] * len(keys), pa.string()))
    return conform(rows, schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in order; missing columns are null."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _ledger_deletes(
    store: StateStore,
    dest: Destination,
    table: Table,
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
    for entries in store.ledger_scan(dest.name):
        gone.extend(parse_key_json(e.key_json) for e in entries if e.key_json not in live)
    if not gone:
        return schema.empty_table()
    return _deletes(gone, key, schema)
