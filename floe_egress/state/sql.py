"""The state store over SQL, shared by the SQLite and PostgreSQL backends.

Leases compare expiry times with the DATABASE clock (`now_sql`), never the caller's,
so daemons whose clocks disagree still agree on who holds a destination.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from floe_egress.state import migrations
from floe_egress.state.cursor import Cursor
from floe_egress.state.migrations import Dialect
from floe_egress.state.store import (
    Attempt,
    Checkpoint,
    CycleCommit,
    FailedRowRecord,
    FailedRowUpdate,
    LedgerEntry,
    ResyncRequest,
    RunRecord,
)

_Keyed = TypeVar("_Keyed", FailedRowUpdate, LedgerEntry)
_RUN_COLUMNS = (
    "destination, started_at, finished_at, status, plan, from_snapshot, to_snapshot, "
    "inserted, updated, deleted, invalid, failed, error"
)
_UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (destination, source_table, ref, snapshot_id, "
    "snapshot_timestamp_ms, key_json, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (destination) DO UPDATE SET source_table = excluded.source_table, "
    "ref = excluded.ref, snapshot_id = excluded.snapshot_id, "
    "snapshot_timestamp_ms = excluded.snapshot_timestamp_ms, "
    "key_json = excluded.key_json, updated_at = excluded.updated_at"
)
_UPSERT_FAILED_ROW = (
    "INSERT INTO failed_rows (destination, key_json, op, reason, attempts, "
    "first_seen, last_seen, parked) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
    "ON CONFLICT (destination, key_json) DO UPDATE SET op = excluded.op, "
    "reason = excluded.reason, attempts = failed_rows.attempts + 1, "
    "last_seen = excluded.last_seen, parked = (failed_rows.attempts + 1 >= ?)"
)


class SqlStore(ABC):
    """A `StateStore` over any `Cursor`; subclasses open transactions."""

    dialect: Dialect
    now_sql: str
    """The database's clock as Unix seconds (a float)."""

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
            migrations.apply(cur, self.dialect, self.url_redacted)

    def ping(self) -> None:
        with self.transaction(write=False) as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    # --- checkpoints and runs ---------------------------------------------------------

    def get_checkpoint(self, destination: str) -> Checkpoint | None:
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT source_table, ref, snapshot_id, snapshot_timestamp_ms, key_json, "
                "updated_at FROM checkpoints WHERE destination = ?",
                (destination,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return Checkpoint(
            destination=destination,
            table=row[0],
            ref=row[1],
            snapshot_id=_int_or_none(row[2]),
            snapshot_timestamp_ms=_int_or_none(row[3]),
            key=tuple(json.loads(row[4])),
            updated_at=float(row[5]),
        )

    def record_run(self, run: RunRecord) -> int:
        with self.transaction() as cur:
            return _insert_run(cur, run)

    def runs(self, destination: str, limit: int = 20) -> list[RunRecord]:
        """The newest `limit` runs of `destination`, newest first."""
        with self.transaction(write=False) as cur:
            cur.execute(
                f"SELECT id, {_RUN_COLUMNS} FROM runs WHERE destination = ? "
                "ORDER BY id DESC LIMIT ?",
                (destination, limit),
            )
            rows = cur.fetchall()
        return [_run_from_row(r) for r in rows]

    def last_run(self, destination: str) -> RunRecord | None:
        runs = self.runs(destination, limit=1)
        return runs[0] if runs else None

    def commit_cycle(self, commit: CycleCommit) -> None:
        cp = commit.checkpoint
        now = time.time()
        failed = _last_per_key(commit.failed)
        upserts = _last_per_key(commit.ledger_upserts)
        limit = commit.max_attempts
        parked_at_once = limit <= 1
        with self.transaction() as cur:
            cur.execute(
                _UPSERT_CHECKPOINT,
                (
                    cp.destination,
                    cp.table,
                    cp.ref,
                    cp.snapshot_id,
                    cp.snapshot_timestamp_ms,
                    json.dumps(list(cp.key)),
                    cp.updated_at,
                ),
            )
            _insert_run(cur, commit.run)
            cur.executemany(
                _UPSERT_FAILED_ROW,
                [
                    (cp.destination, f.key_json, f.op, f.reason, now, now, parked_at_once, limit)
                    for f in failed
                ],
            )
            cur.delete_keys("failed_rows", cp.destination, commit.resolved)
            if commit.ledger_replace:
                cur.execute("DELETE FROM ledger WHERE destination = ?", (cp.destination,))
            else:
                cur.delete_keys("ledger", cp.destination, commit.ledger_deletes)
            cur.write_ledger(cp.destination, upserts, emptied=commit.ledger_replace)
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
                (destination, from_snapshot, to_snapshot, time.time()),
            )

    def request_force(self, destination: str) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO force_requests (destination, requested_at) VALUES (?, ?) "
                "ON CONFLICT (destination) DO UPDATE SET requested_at = excluded.requested_at",
                (destination, time.time()),
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
        return [Attempt(destination, _int_or_none(r[0]), int(r[1]), float(r[2])) for r in rows]

    def failed_rows(
        self, destination: str, *, include_parked: bool = True
    ) -> list[FailedRowRecord]:
        where = "" if include_parked else " AND parked = FALSE"
        with self.transaction(write=False) as cur:
            cur.execute(
                "SELECT key_json, op, reason, attempts, first_seen, last_seen, parked "
                f"FROM failed_rows WHERE destination = ?{where} ORDER BY first_seen, key_json",
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
        return self._count("failed_rows", destination)

    # --- resync requests --------------------------------------------------------------

    def request_resync(self, destination: str, from_snapshot: int | None) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO resync_requests (destination, from_snapshot, requested_at) "
                "VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
                "from_snapshot = excluded.from_snapshot, requested_at = excluded.requested_at",
                (destination, from_snapshot, time.time()),
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
        return ResyncRequest(destination, _int_or_none(row[0]), float(row[1]))

    # --- ledger -----------------------------------------------------------------------

    def reserve_ledger(self, destination: str, entries: Sequence[LedgerEntry]) -> None:
        distinct = _last_per_key(entries)
        if distinct:
            with self.transaction() as cur:
                cur.write_ledger(destination, distinct, emptied=False)

    def ledger_lookup(self, destination: str, key_jsons: Iterable[str]) -> dict[str, int]:
        keys = list(dict.fromkeys(key_jsons))
        if not keys:
            return {}
        with self.transaction(write=False) as cur:
            return {k: int(h) for k, h in cur.select_ledger(destination, keys)}

    def ledger_scan(
        self, destination: str, batch_size: int = 50_000
    ) -> Iterator[list[LedgerEntry]]:
        """Every ledger entry of `destination` in key order, `batch_size` at a time.

        Each batch is its own short read, so no transaction stays open while the caller
        works: entries written meanwhile may or may not be seen.
        """
        # Every key_json is a JSON object, so it sorts after the empty string.
        after = ""
        while True:
            with self.transaction(write=False) as cur:
                cur.execute(
                    "SELECT key_json, row_hash FROM ledger WHERE destination = ? "
                    "AND key_json > ? ORDER BY key_json LIMIT ?",
                    (destination, after, batch_size),
                )
                rows = cur.fetchall()
            if not rows:
                return
            yield [LedgerEntry(k, int(h)) for k, h in rows]
            after = rows[-1][0]

    def ledger_size(self, destination: str) -> int:
        return self._count("ledger", destination)

    # --- leases -----------------------------------------------------------------------

    def acquire_lease(self, destination: str, owner: str, ttl_seconds: float) -> bool:
        # One atomic upsert: it inserts, renews our own lease or takes an expired one;
        # otherwise its WHERE leaves the row alone and RETURNING yields nothing.
        with self.transaction() as cur:
            cur.execute(
                f"INSERT INTO leases (destination, owner, expires_at) "
                f"VALUES (?, ?, {self.now_sql} + ?) "
                f"ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, "
                f"expires_at = excluded.expires_at "
                f"WHERE leases.owner = excluded.owner OR leases.expires_at < {self.now_sql} "
                f"RETURNING owner",
                (destination, owner, float(ttl_seconds)),
            )
            return cur.fetchone() is not None

    def take_over_lease(
        self, destination: str, dead_owner: str, owner: str, ttl_seconds: float
    ) -> bool:
        with self.transaction() as cur:
            cur.execute(
                f"UPDATE leases SET owner = ?, expires_at = {self.now_sql} + ? "
                f"WHERE destination = ? AND owner = ? RETURNING owner",
                (owner, float(ttl_seconds), destination, dead_owner),
            )
            return cur.fetchone() is not None

    def release_lease(self, destination: str, owner: str) -> None:
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM leases WHERE destination = ? AND owner = ?", (destination, owner)
            )

    def lease_holder(self, destination: str) -> str | None:
        with self.transaction(write=False) as cur:
            cur.execute(
                f"SELECT owner FROM leases WHERE destination = ? AND expires_at >= {self.now_sql}",
                (destination,),
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])

    # --- helpers ----------------------------------------------------------------------

    def _count(self, table: str, destination: str) -> int:
        with self.transaction(write=False) as cur:
            cur.execute(f"SELECT count(*) FROM {table} WHERE destination = ?", (destination,))
            row = cur.fetchone()
        return 0 if row is None else int(row[0])


RUNS_KEPT = 1000
"""Runs kept per destination (the newest)."""


def _insert_run(cur: Cursor, run: RunRecord) -> int:
    cur.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "RETURNING id",
        (
            run.destination,
            run.started_at,
            run.finished_at,
            run.status,
            run.plan,
            run.from_snapshot,
            run.to_snapshot,
            run.inserted,
            run.updated,
            run.deleted,
            run.invalid,
            run.failed,
            run.error,
        ),
    )
    row = cur.fetchone()
    assert row is not None, "INSERT ... RETURNING returned no row"
    # The history is bounded: a destination synced every few seconds would otherwise
    # add millions of rows a year. Usually this deletes the one run that fell off.
    cur.execute(
        "DELETE FROM runs WHERE destination = ? AND id <= (SELECT id FROM runs "
        "WHERE destination = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (run.destination, run.destination, RUNS_KEPT),
    )
    return int(row[0])


def _run_from_row(r: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=int(r[0]),
        destination=r[1],
        started_at=float(r[2]),
        finished_at=float(r[3]),
        status=r[4],
        plan=r[5],
        from_snapshot=_int_or_none(r[6]),
        to_snapshot=_int_or_none(r[7]),
        inserted=int(r[8]),
        updated=int(r[9]),
        deleted=int(r[10]),
        invalid=int(r[11]),
        failed=int(r[12]),
        error=r[13],
    )


def _last_per_key(items: Sequence[_Keyed]) -> list[_Keyed]:
    """One item per key_json, the last one winning (a key twice in one bulk upsert is an
    error in PostgreSQL and would count a failed row's attempt twice)."""
    return list({item.key_json: item for item in items}.values())


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
