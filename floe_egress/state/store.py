"""The state store seam: checkpoints, run history, failed rows, the digest and leases.

Two backends implement `StateStore` with the same schema and migrations:
`floe_egress.state.sqlite` (default) and `floe_egress.state.postgres`. All methods are
synchronous (the daemon calls them through `asyncio.to_thread`). `commit_cycle` is the
only way a checkpoint moves, and it writes everything of one cycle in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Literal, Protocol

RunStatus = Literal["ok", "noop", "failed"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last snapshot of `table` (at `ref`) whose changes the destination confirmed."""

    destination: str
    table: str
    ref: str
    snapshot_id: int | None
    snapshot_timestamp_ms: int | None
    key: tuple[str, ...]
    updated_at: float
    """Unix time of the commit that wrote this checkpoint."""
    row_filter: str | None = None
    """The destination's filter as of this checkpoint (as written); None: none."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    destination: str
    started_at: float
    finished_at: float
    status: RunStatus
    plan: str
    from_snapshot: int | None
    to_snapshot: int | None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    invalid: int = 0
    failed: int = 0
    error: str | None = None
    run_id: int | None = None
    invalid_sample: tuple[dict[str, Any], ...] = ()
    """Some of the invalid keys: `{"key": {...}, "reason": "null_key" | "duplicate_key",
    "rows": n}`, JSON values only."""

    @property
    def duration_seconds(self) -> float:
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """As `status` and the status page show it (without the destination)."""
        data = {k: v for k, v in asdict(self).items() if k != "destination"}
        data["invalid_sample"] = list(self.invalid_sample)
        data["duration_seconds"] = round(self.duration_seconds, 3)
        return data


@dataclass(frozen=True, slots=True)
class FailedRowRecord:
    destination: str
    key_json: str
    """The row key as canonical JSON (sorted keys): the identity of a failed row."""
    op: str
    reason: str
    attempts: int
    first_seen: float
    last_seen: float
    parked: bool
    """True once attempts reached the destination's max_attempts: no longer retried."""

    def to_json(self) -> dict[str, Any]:
        """As `failures --json` and the status page show it."""
        return {
            "key": json.loads(self.key_json),
            "op": self.op,
            "reason": self.reason,
            "attempts": self.attempts,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "parked": self.parked,
        }


@dataclass(frozen=True, slots=True)
class FailedRowUpdate:
    """A row that failed in this cycle (attempts are counted by the store)."""

    key_json: str
    op: str
    reason: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A row of the mirror-mode ledger of earlier versions (read once, when a destination's
    digest is first built from it)."""

    key_json: str
    row_hash: int


@dataclass(frozen=True, slots=True)
class DigestSegment:
    """One segment of a destination's digest (state/digest.py): Parquet bytes the store
    keeps without looking inside."""

    seq: int
    kind: str
    """`held` (confirmed by a commit) or `reserved` (written before a write was sent)."""
    rows: int
    sha256: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredDigest:
    """A destination's digest as stored: its segments in order, what the meta row says."""

    fingerprint: str | None
    """What the held segments were computed with; None before the first commit."""
    held_segments: int
    """How many held segments the last commit left (fewer found: one went missing)."""
    segments: tuple[DigestSegment, ...]


@dataclass(frozen=True, slots=True)
class DigestUpdate:
    """What a committing cycle does to the digest: every reserved segment goes, and its
    own held segment (if any) is added, after every earlier one when `replace`."""

    fingerprint: str
    data: bytes | None
    rows: int = 0
    replace: bool = False
    drop_ledger: bool = False
    """Forget the destination's ledger of an earlier version (its keys are now in the
    digest)."""


@dataclass(frozen=True, slots=True)
class RepairKey:
    """A key `verify --repair` queued for the next cycle (state/repairs.py)."""

    key_json: str
    op: str
    """`insert`, `update` or `delete`: what the destination needs for this key."""
    queued_at: float


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    destination: str
    from_snapshot: int | None
    """None: a full resync; otherwise diff from this snapshot."""
    requested_at: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """A range A→B whose delivery started and has not been committed."""

    destination: str
    from_snapshot: int | None
    to_snapshot: int
    started_at: float


@dataclass(frozen=True, slots=True)
class PollMarks:
    """What a cycle of a destination reads from the store besides the table, in one
    query (state/marks.py): a poll compares them with what they were after the last
    cycle to tell whether a cycle of an unchanged table would do anything."""

    checkpoint: tuple[int | None, float] | None
    """The checkpoint's snapshot id and when it was written; None before the first."""
    digest: tuple[str, int, float] | None
    """The digest's meta row: its fingerprint, held segments and when it was written."""
    digest_held: int
    """Held digest segments present."""
    digest_reserved: int
    """Reserved digest segments left (a delivery that has not committed)."""
    requests: int
    """Pending resync and force requests, repair keys and interrupted attempts."""
    failed: int
    """Failed rows not parked: each cycle retries them."""
    failed_last_seen: float | None
    """When the least recently tried of those was last tried."""


@dataclass(slots=True)
class CycleCommit:
    """Everything one successful cycle writes, applied in one transaction."""

    checkpoint: Checkpoint
    run: RunRecord
    failed: list[FailedRowUpdate] = field(default_factory=list)
    max_attempts: int = 10
    resolved: list[str] = field(default_factory=list)
    """key_json of previously failed rows now delivered (or no longer in the table)."""
    digest: DigestUpdate | None = None
    clear_resync: float | None = None
    """`requested_at` of the resync request this cycle carried out: that request (and not
    one made while the cycle ran) is cleared. Committing always clears the attempts."""
    clear_force: float | None = None
    """`requested_at` of the force request this cycle used, cleared with it."""
    clear_repairs: float | None = None
    """The newest `queued_at` of the repair keys this cycle sent: those queued up to
    then are cleared."""


class StateStore(Protocol):
    """Durable memory of every destination. Safe to share between threads."""

    @property
    def url_redacted(self) -> str: ...

    def ping(self) -> None:
        """Raise CheckpointError when the store does not answer."""

    def get_checkpoint(self, destination: str) -> Checkpoint | None: ...

    def commit_cycle(self, commit: CycleCommit) -> None:
        """Move the checkpoint, write the run, failed rows and ledger: all or nothing."""

    def record_run(self, run: RunRecord) -> int:
        """Record a run that did not move the checkpoint (failed, or noop); returns its id."""

    def runs(self, destination: str, limit: int = 20) -> list[RunRecord]: ...

    def last_run(self, destination: str) -> RunRecord | None: ...

    def failed_rows(
        self, destination: str, *, include_parked: bool = True, limit: int | None = None
    ) -> list[FailedRowRecord]:
        """Oldest first; at most `limit` of them when given."""

    def failed_row_count(self, destination: str) -> int: ...

    def parked_row_count(self, destination: str) -> int:
        """Failed rows no longer retried (attempts reached max_attempts)."""

    def unpark_failed_rows(self, destination: str) -> int:
        """Make parked rows eligible for retry again; returns how many."""

    def request_resync(self, destination: str, from_snapshot: int | None) -> None: ...

    def pending_resync(self, destination: str) -> ResyncRequest | None: ...

    def request_force(self, destination: str) -> None:
        """The next cycle of `destination`, wherever it runs, overrides the delete guard."""

    def pending_force(self, destination: str) -> float | None:
        """When a force request was made, if one is pending."""

    def queue_repairs(self, destination: str, keys: Iterable[tuple[str, str]]) -> int:
        """Queue `(key_json, op)` pairs for the next cycle to send; returns how many."""

    def pending_repairs(self, destination: str) -> list[RepairKey]: ...

    def read_digest(self, destination: str, *, data: bool = True) -> StoredDigest | None:
        """The digest's segments (their bytes when `data`) and meta, in one transaction."""

    def copy_digest_segment(self, destination: str, seq: int, out: BinaryIO) -> str | None:
        """Write one segment's bytes to `out` a part at a time; their sha256, or None
        when the segment is gone (a large digest, never held whole)."""

    def reserve_digest(self, destination: str, data: bytes, rows: int) -> None:
        """Before a write: a reserved segment with the keys it may deliver, in a
        transaction of its own, so a crash before the commit cannot hide one."""

    def ledger_scan(
        self, destination: str, batch_size: int = 50_000
    ) -> Iterator[list[LedgerEntry]]:
        """The mirror-mode ledger an earlier version kept (read when building a digest)."""

    def ledger_size(self, destination: str) -> int: ...

    def begin_attempt(self, destination: str, from_snapshot: int | None, to_snapshot: int) -> None:
        """Record that delivery of from_snapshot→to_snapshot starts (before the first write).

        Attempts accumulate until a cycle commits: each one's keys are resent until then.
        """

    def pending_attempts(self, destination: str) -> list[Attempt]: ...

    def poll_marks(self, destination: str) -> PollMarks:
        """What a cycle reads besides the table, in one query (see PollMarks)."""

    def acquire_lease(self, destination: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease on `destination` for `owner`; False if another holds it."""

    def take_over_lease(
        self, destination: str, dead_owner: str, owner: str, ttl_seconds: float
    ) -> bool:
        """Take the lease from `dead_owner` (a process known to be gone) if it still holds it."""

    def release_lease(self, destination: str, owner: str) -> None: ...

    def lease_holder(self, destination: str) -> str | None: ...

    def close(self) -> None: ...
