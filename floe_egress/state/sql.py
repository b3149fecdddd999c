"""The state store over SQL, shared by the SQLite and PostgreSQL backends.

`SqlStore` writes checkpoints, runs, failed rows and requests itself; the digest
(digest.py), the ledger of earlier versions (ledger.py) and the leases (leases.py) are
objects it owns, and the SQL text it shares with them is in queries.py.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from floe_egress.clock import Clock
from floe_egress.state import migrations
from floe_egress.state.cursor import Cursor
from floe_egress.state.digest import Digests
from floe_egress.state.faults import Faults
from floe_egress.state.leases import Leases
from floe_egress.state.ledger import Ledger
from floe_egress.state.marks import read_marks
from floe_egress.state.migrations import Dialect
from floe_egress.state.queries import (
    RUN_COLUMNS,
    UPSERT_CHECKPOINT,
    UPSERT_FAILED_ROW,
    count_rows,
    insert_run,
    int_or_none,
    last_per_key,
    run_from_row,
)
from floe_egress.state.repairs import Repairs
from floe_egress.state.store import (
    Attempt,
    Checkpoint,
    CycleCommit,
    FailedRowRecord,
    LedgerEntry,
    PollMarks,
    RepairKey,
    ResyncRequest,
    RunRecord,
    StoredDigest,
)


class SqlStore(ABC):
    """A `StateStore` over any `Cursor`; subclasses open transactions.

    A subclass calls `super().__init__(clock=..., faults=...)` first, then migrates.
    `clock` stamps what the store records (requests, attempts, failed rows); leases use
    the database's. `faults` (tests only, see faults.py) breaks transactions on purpose.
    """

    dialect: Dialect
    now_sql: str
    """The database's clock as Unix seconds (a float)."""

    def __init__(self, *, clock: Clock, faults: Faults | None) -> None:
        self._clock = clock
        self._digests = Digests(self, faults)
        self._ledger = Ledger(self)
        self._leases = Leases(self, self.now_sql)
        self._repairs = Repairs(self, clock)

    @abstractmethod
    def transaction(self, *, write: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor in one transaction: committed on exit, rolled back on any error.

        Database errors leave it as CheckpointError. `write=False` may skip write locks.
        """

    @abstractmethod
    def _prepare_migration(self, cur: Cursor) -> None:
        """Serialise concurrent migrations; runs first in the migration transaction."""

    @property
    @abstractmethod
    def url_redacted(self) -> str: ...

    @abstractmethod
    def close(self) -> None: ...

    # --- schema -----------------------------------------------------------------------

    def migrate(self) -> None:
        with self.transaction() as cur:
            self._prepare_migration(cur)
            migrations.apply(cur, self.dialect, self.url_redacted, self._clock)

    def ping(self) -> None:
        with self.transaction(write=False) as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    # --- checkpoints and runs ---------------------------------------------------------

    def get_checkpoint(self, destination: str) -> Checkpoint | None:
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT source_table, ref, snapshot_id, snapshot_timestamp_ms, key_json, "
                "updated_at, row_filter FROM checkpoints WHERE destination = ?",
                (destination,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return Checkpoint(
            destination=destination,
            table=row[0],
            ref=row[1],
            snapshot_id=int_or_none(row[2]),
            snapshot_timestamp_ms=int_or_none(row[3]),
            key=tuple(json.loads(row[4])),
            updated_at=float(row[5]),
            row_filter=row[6],
        )

    def record_run(self, run: RunRecord) -> int:
        with self.transaction() as cur:
            return insert_run(cur, run)

    def runs(self, destination: str, limit: int = 20) -> list[RunRecord]:
        """The newest `limit` runs of `destination`, newest first."""
        with self.transaction(write=False) as cur:
            cur.execute(
                f"SELECT id, {RUN_COLUMNS} FROM runs WHERE destination = ? "
                "ORDER BY id DESC LIMIT ?",
                (destination, limit),
            )
            rows = cur.fetchall()
        return [run_from_row(r) for r in rows]

    def last_run(self, destination: str) -> RunRecord | None:
        runs = self.runs(destination, limit=1)
        return runs[0] if runs else None

    def commit_cycle(self, commit: CycleCommit) -> None:
        cp = commit.checkpoint
        now = self._clock.time()
        failed = last_per_key(commit.failed)
        limit = commit.max_attempts
        parked_at_once = limit <= 1
        with self.transaction() as cur:
            cur.execute(
                UPSERT_CHECKPOINT,
                (
                    cp.destination,
                    cp.table,
                    cp.ref,
                    cp.snapshot_id,
                    cp.snapshot_timestamp_ms,
                    json.dumps(list(cp.key)),
                    cp.updated_at,
                    cp.row_filter,
                ),
            )
            insert_run(cur, commit.run)
            cur.executemany(
                UPSERT_FAILED_ROW,
                [
                    (cp.destination, f.key_json, f.op, f.reason, now, now, parked_at_once, limit)
                    for f in failed
                ],
            )
            cur.delete_keys("failed_rows", cp.destination, commit.resolved)
            if commit.digest is not None:
                self._digests.apply(cur, cp.destination, commit.digest, now)
            if commit.clear_resync is not None:
                cur.execute(
                    "DELETE FROM resync_requests WHERE destination = ? AND requested_at = ?",
                    (cp.destination, commit.clear_resync),
                )
            cur.execute("DELETE FROM attempts WHERE destination = ?", (cp.destination,))
            if commit.clear_force is not None:
                cur.execute(
                    "DELETE FROM force_requests WHERE destination = ? AND requested_at = ?",
                    (cp.destination, commit.clear_force),
                )
            if commit.clear_repairs is not None:
                Repairs.clear(cur, cp.destination, commit.clear_repairs)

    def unpark_failed_rows(self, destination: str) -> int:
        """Make parked rows eligible for the next cycle again (an operator's retry)."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE failed_rows SET parked = ? WHERE destination = ? AND parked = ? "
                "RETURNING key_json",
                (False, destination, True),
            )
            return len(cur.fetchall())

    # --- attempts ---------------------------------------------------------------------

    def begin_attempt(self, destination: str, from_snapshot: int | None, to_snapshot: int) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO attempts (destination, from_snapshot, to_snapshot, started_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (destination, to_snapshot) DO NOTHING",
                (destination, from_snapshot, to_snapshot, self._clock.time()),
            )

    def request_force(self, destination: str) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO force_requests (destination, requested_at) VALUES (?, ?) "
                "ON CONFLICT (destination) DO UPDATE SET requested_at = excluded.requested_at",
                (destination, self._clock.time()),
            )

    def pending_force(self, destination: str) -> float | None:
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT requested_at FROM force_requests WHERE destination = ?", (destination,)
            )
            row = cur.fetchone()
        return None if row is None else float(row[0])

    def pending_attempts(self, destination: str) -> list[Attempt]:
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT from_snapshot, to_snapshot, started_at FROM attempts "
                "WHERE destination = ? ORDER BY started_at",
                (destination,),
            )
            rows = cur.fetchall()
        return [Attempt(destination, int_or_none(r[0]), int(r[1]), float(r[2])) for r in rows]

    def poll_marks(self, destination: str) -> PollMarks:
        return read_marks(self, destination)

    def failed_rows(
        self, destination: str, *, include_parked: bool = True, limit: int | None = None
    ) -> list[FailedRowRecord]:
        where = "" if include_parked else " AND parked = FALSE"
        bound = "" if limit is None else f" LIMIT {int(limit)}"
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT key_json, op, reason, attempts, first_seen, last_seen, parked "
                f"FROM failed_rows WHERE destination = ?{where} "
                f"ORDER BY first_seen, key_json{bound}",
                (destination,),
            )
            rows = cur.fetchall()
        return [
            FailedRowRecord(
                destination=destination,
                key_json=r[0],
                op=r[1],
                reason=r[2],
                attempts=int(r[3]),
                first_seen=float(r[4]),
                last_seen=float(r[5]),
                parked=bool(r[6]),
            )
            for r in rows
        ]

    def failed_row_count(self, destination: str) -> int:
        with self.transaction(write=False) as cur:
            return count_rows(cur, "failed_rows", destination)

    def parked_row_count(self, destination: str) -> int:
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT count(*) FROM failed_rows WHERE destination = ? AND parked = ?",
                (destination, True),
            )
            row = cur.fetchone()
        return 0 if row is None else int(row[0])

    # --- resync requests --------------------------------------------------------------

    def request_resync(self, destination: str, from_snapshot: int | None) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO resync_requests (destination, from_snapshot, requested_at) "
                "VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
                "from_snapshot = excluded.from_snapshot, requested_at = excluded.requested_at",
                (destination, from_snapshot, self._clock.time()),
            )

    def pending_resync(self, destination: str) -> ResyncRequest | None:
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT from_snapshot, requested_at FROM resync_requests WHERE destination = ?",
                (destination,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return ResyncRequest(destination, int_or_none(row[0]), float(row[1]))

    # --- digest, repairs, ledger and leases (objects of their own) ---------------------

    def read_digest(self, destination: str, *, data: bool = True) -> StoredDigest | None:
        return self._digests.read(destination, data=data)

    def copy_digest_segment(self, destination: str, seq: int, out: BinaryIO) -> str | None:
        return self._digests.copy(destination, seq, out)

    def reserve_digest(self, destination: str, data: bytes, rows: int) -> None:
        self._digests.reserve(destination, data, rows)

    def queue_repairs(self, destination: str, keys: Iterable[tuple[str, str]]) -> int:
        return self._repairs.queue(destination, keys)

    def pending_repairs(self, destination: str) -> list[RepairKey]:
        return self._repairs.pending(destination)

    def ledger_scan(
        self, destination: str, batch_size: int = 50_000
    ) -> Iterator[list[LedgerEntry]]:
        return self._ledger.scan(destination, batch_size)

    def ledger_size(self, destination: str) -> int:
        return self._ledger.size(destination)

    def acquire_lease(self, destination: str, owner: str, ttl_seconds: float) -> bool:
        return self._leases.acquire(destination, owner, ttl_seconds)

    def take_over_lease(
        self, destination: str, dead_owner: str, owner: str, ttl_seconds: float
    ) -> bool:
        return self._leases.take_over(destination, dead_owner, owner, ttl_seconds)

    def release_lease(self, destination: str, owner: str) -> None:
        self._leases.release(destination, owner)

    def lease_holder(self, destination: str) -> str | None:
        return self._leases.holder(destination)
