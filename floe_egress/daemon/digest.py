"""The digest of what a destination holds, as a cycle uses and keeps it.

Before the cycle (`inspect`): its fingerprint (what the hashes mean: the sink type, the
field mapping, the value conversion, the key, the hashed columns and their types, the
hash function) and whether the stored digest can be trusted. It cannot when it is lost
(a checkpoint but no digest, or fewer held segments than its meta row says), damaged (a
segment whose bytes do not match their sha256, or that does not decode), or made with
another fingerprint; each is said in `trouble`, and the cycle then sends every row once
and replaces the digest. A digest an earlier version never kept is built from the table
at the checkpoint instead, which the destination confirmed.

During the cycle (`Tally`): before each write, the keys it may deliver are reserved (a
segment of their own, in the store, before anything is sent); after it, what the
destination confirmed is noted, failed rows left out; in update mode the rows the
table inserts are noted too, although the mode never sends them (`unsent`). At the
commit (`Tally.update`), one held segment with the cycle's changes, which replaces every
earlier one after a full send, and every 32 segments folds them into one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from floe_egress.changes import digest as digests
from floe_egress.changes.digest_spill import SPILL_ROWS, Spilled
from floe_egress.changes.keys import key_json, key_jsons, keys_table, parse_key_json
from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import Destination, SyncMode
from floe_egress.errors import DigestDamagedError
from floe_egress.sinks.base import DeliveryReport
from floe_egress.state.store import DigestUpdate, StateStore, StoredDigest

log = structlog.get_logger("floe_egress.digest")

BEFORE_DIGESTS = ""
"""The fingerprint migration 4 gives destinations synced before digests existed."""
DAMAGED = "damaged"
"""The fingerprint a commit leaves when it found a segment damaged while folding: the
next cycle does not trust the digest and rebuilds it by one full send."""
COMPACT_AFTER = 32
"""Held segments a digest may have before a commit folds them into one."""


def fingerprint(
    dest: Destination, key: Sequence[str], schema: pa.Schema, columns: Sequence[str]
) -> str:
    parts = {
        "sink_type": dest.sink_type,
        "field_mapping": sorted((dest.field_mapping or {}).items()),
        "decimals": dest.sink_config.get("decimals"),
        "key": list(key),
        **digests.fingerprint_parts(schema, columns),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class DigestState:
    """What a cycle knows of the digest before it starts."""

    fingerprint: str
    columns: tuple[str, ...]
    stored: StoredDigest | None
    trouble: str | None = None
    """Why the stored digest cannot be trusted (the cycle sends every row once)."""
    before_digests: bool = False
    """The destination was synced before digests existed: build it from the checkpoint."""

    @property
    def trusted(self) -> bool:
        return self.trouble is None and not self.before_digests


def inspect(
    store: StateStore,
    dest: Destination,
    key: Sequence[str],
    schema: pa.Schema,
    *,
    synced: bool,
) -> DigestState:
    """The digest's state for a cycle of `dest` (B's `schema`; `synced`: it has a
    checkpoint). Reads only the meta and the segment list, not the segments."""
    columns = tuple(digests.hashed_columns(schema.names, key, dest.field_mapping))
    fp = fingerprint(dest, key, schema, columns)
    stored = store.read_digest(dest.name, data=False)
    trouble: str | None = None
    before = False
    if stored is None:
        if synced:
            trouble = "the digest of what the destination holds is missing"
    elif stored.fingerprint == BEFORE_DIGESTS:
        before = True
    elif stored.fingerprint == DAMAGED:
        trouble = "a segment of the digest was found damaged when it was last folded"
    elif stored.fingerprint is not None and stored.fingerprint != fp:
        trouble = (
            "the field mapping, the sink type, the value conversion, the key or the "
            "columns' types changed since the digest was written"
        )
    else:
        held = sum(1 for s in stored.segments if s.kind == "held")
        if held < stored.held_segments:
            trouble = (
                f"the digest lost {stored.held_segments - held} of its "
                f"{stored.held_segments} segments"
            )
    return DigestState(fp, columns, stored, trouble, before)


def spill_dir(work_dir: Path | None) -> str | None:
    """The directory spill files go under: the destination's work directory (the
    system's temporary directory may be memory), created when needed."""
    if work_dir is None:
        return None
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(work_dir)


def load(store: StateStore, destination: str, key: Sequence[str]) -> pa.Table:
    """The effective digest (see changes.digest.effective); DigestDamagedError when a segment
    does not read back as it was written."""
    stored = store.read_digest(destination, data=True)
    if stored is None:
        return pa.table({})
    segments: list[tuple[bool, pa.Table]] = []
    for segment in stored.segments:
        if hashlib.sha256(segment.data).hexdigest() != segment.sha256:
            raise DigestDamagedError(
                f"destination {destination}: digest segment {segment.seq} does not match "
                "its checksum"
            )
        try:
            entries = digests.decode(segment.data)
        except Exception as exc:  # anything pyarrow says about unreadable bytes
            raise DigestDamagedError(
                f"destination {destination}: digest segment {segment.seq} cannot be read "
                f"({type(exc).__name__})"
            ) from None
        segments.append((segment.kind == "reserved", entries))
    del stored  # the segments' bytes, before the fold needs its memory
    return digests.effective(segments, key)


def load_for_compare(
    store: StateStore,
    destination: str,
    key: Sequence[str],
    *,
    spill_rows: int | None = None,
    work_dir: Path | None = None,
) -> pa.Table | Spilled:
    """The effective digest, in Arrow (`load`) or, when its segments hold more than
    `spill_rows` entries (default SPILL_ROWS), `Spilled`: folded in DuckDB on disk, its
    segments never decoded into Arrow (see changes.digest_spill)."""
    limit = SPILL_ROWS if spill_rows is None else spill_rows
    listed = store.read_digest(destination, data=False)
    if listed is None or sum(s.rows for s in listed.segments) <= limit:
        return load(store, destination, key)
    spilled = Spilled(key, spill_dir(work_dir))
    try:
        # Copied to files part by part: a large segment is most of the digest.
        for segment in listed.segments:
            label = f"destination {destination}: digest segment {segment.seq}"
            path = spilled.segment_path()
            with open(path, "wb") as out:
                sha256 = store.copy_digest_segment(destination, segment.seq, out)
            if sha256 != segment.sha256:
                raise DigestDamagedError(f"{label} does not match its checksum")
            spilled.add_segment_file(segment.kind == "reserved", path, label=label)
        try:
            spilled.fold()
        except DigestDamagedError as exc:
            raise DigestDamagedError(f"destination {destination}: {exc}") from None
    except BaseException:
        spilled.close()
        raise
    return spilled


def keys_of(rows: Sequence[str], key: Sequence[str], schema: pa.Schema) -> pa.Table:
    """Key JSON texts as a key table typed by `schema`."""
    fields = pa.schema([schema.field(k).with_nullable(True) for k in key])
    return keys_table([parse_key_json(k) for k in rows], fields)


@dataclass(slots=True)
class Tally:
    """The digest side of one cycle: reservations before writes, confirmations after."""

    store: StateStore
    destination: str
    key: tuple[str, ...]
    state: DigestState
    replace: bool
    """This cycle's held segment replaces every earlier one (a full send, or a digest
    built from the checkpoint)."""
    base: pa.Table | Spilled | None = None
    """Entries the digest starts from when it is rebuilt (before-digests upgrade), or
    the digest it keeps (a full send in a mode that drops some ops)."""
    drop_ledger: bool = False
    rebuilt: str | None = None
    """Why this cycle rebuilds a digest it could not trust (it sends every row once)."""
    held_keys: int | None = None
    """Keys the destination holds by the digest, when it was read (for the delete guard)."""
    confirmed: list[pa.Table] = field(default_factory=list)
    work_dir: Path | None = None
    """Where a digest too large for memory is folded on disk (see changes.digest_spill)."""
    noted: list[pa.Table] = field(default_factory=list)
    """Entries of rows the mode does not send (see `unsent`)."""

    @property
    def pending(self) -> bool:
        """Whether the commit has something to write to the digest."""
        return self.replace or self.base is not None or bool(self.confirmed or self.noted)

    def unsent(self, rows: pa.Table, mode: SyncMode) -> None:
        """Rows (with their op column) before the mode drops what it does not send.

        Update mode never sends an insert: the key is one the destination holds of its
        own, or one it lacks. Its row is noted all the same, so that when A cannot be
        read, a later change of that key compares as the update A→B would have sent,
        not as an insert the mode drops. Nothing is sent, so nothing is reserved."""
        if mode != "update" or not rows.num_rows:
            return
        inserts = rows.filter(pc.equal(rows.column(OP_COLUMN), "insert"))
        if inserts.num_rows:
            self.noted.append(digests.entries(inserts, self.key, self.state.columns))

    def reserve(self, rows: pa.Table) -> pa.Table:
        """Before `rows` (with their op column) are written: reserve their upserts in
        the store; returns the entries of every row (deletes as gone)."""
        ops = rows.column("_floe_op")
        deleting = pc.equal(ops, "delete")
        upserts = rows.filter(pc.invert(deleting))
        gone = rows.filter(deleting)
        ahead = digests.entries(upserts, self.key, self.state.columns)
        if ahead.num_rows:
            self.store.reserve_digest(self.destination, digests.encode(ahead), ahead.num_rows)
        return pa.concat_tables([ahead, digests.gone_entries(gone, self.key).cast(ahead.schema)])

    def delivered(self, entries: pa.Table, report: DeliveryReport) -> None:
        """After a write: its entries but for the rows the destination refused."""
        if report.failed and entries.num_rows:
            refused = {_key_json(f.key, self.key) for f in report.failed}
            keep = [k not in refused for k in key_jsons(entries, self.key)]
            entries = entries.filter(pa.array(keep, pa.bool_()))
        if entries.num_rows:
            self.confirmed.append(entries)

    def update(self) -> DigestUpdate:
        """The commit's digest change (folded into one segment every COMPACT_AFTER)."""
        # Later parts win key by key: what was confirmed over what was only noted.
        spilled = self.base if isinstance(self.base, Spilled) else None
        first = [self.base] if isinstance(self.base, pa.Table) else []
        parts = first + self.noted + self.confirmed
        stored = self.state.stored
        held = 0 if stored is None else sum(1 for s in stored.segments if s.kind == "held")
        replace = self.replace
        stamp = self.state.fingerprint
        if spilled is None and not replace and held + 1 > COMPACT_AFTER:
            try:
                current = load_for_compare(
                    self.store, self.destination, self.key, work_dir=self.work_dir
                )
                if isinstance(current, Spilled):
                    spilled = current
                else:
                    parts = [as_entries(current), *parts]
                replace = True
            except DigestDamagedError as exc:
                # The checkpoint must still move (the writes were confirmed): the
                # segment is added unfolded and the next cycle rebuilds the digest.
                log.warning("digest_not_trusted", destination=self.destination, reason=str(exc))
                stamp = DAMAGED
        if spilled is not None:
            # Folded by DuckDB on disk: a digest too large for the fast path's memory.
            data, rows = spilled.compacted(parts)
            return DigestUpdate(stamp, data, rows, replace=True, drop_ledger=self.drop_ledger)
        if not parts:
            return DigestUpdate(stamp, None, replace=replace, drop_ledger=self.drop_ledger)
        delta = pa.concat_tables(parts, promote_options="permissive")
        if len(parts) > 1 or replace:
            delta = as_entries(digests.effective([(False, p) for p in parts], self.key))
        return DigestUpdate(
            stamp,
            digests.encode(delta),
            delta.num_rows,
            replace=replace,
            drop_ledger=self.drop_ledger,
        )


def as_entries(effective: pa.Table) -> pa.Table:
    """An effective digest as held entries (an unsure key keeps its hash unknown)."""
    if not effective.num_rows:
        return effective
    hashes = effective.column(digests.HASH)
    unsure = effective.column(digests.UNSURE)
    known = pc.if_else(unsure, pa.nulls(len(hashes), pa.uint64()), hashes)
    keys = effective.drop_columns([digests.HASH, digests.UNSURE])
    return keys.append_column(digests.HASH, known).append_column(
        digests.GONE, pa.array([False] * effective.num_rows, pa.bool_())
    )


def _key_json(values: dict[str, object], key: Sequence[str]) -> str:
    return key_json({k: values.get(k) for k in key})


__all__ = [
    "BEFORE_DIGESTS",
    "DAMAGED",
    "DigestState",
    "Tally",
    "as_entries",
    "fingerprint",
    "inspect",
    "keys_of",
    "load",
    "spill_dir",
]
