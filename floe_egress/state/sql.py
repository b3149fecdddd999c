"""The state store over SQL, shared by the SQLite and PostgreSQL backends.

SQL is written with `?` placeholders and the dialect's differences (placeholder, the
database clock, booleans) are filled in by the backend. Leases use the database's
clock, never the caller's, so daemons with skewed clocks still agree.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from floe_egress.errors import CheckpointError
from floe_egress.state.migrations import LATEST, MIGRATIONS, Dialect, statements, tracking_table
from floe_egress.state.store import (
    Checkpoint,
    CycleCommit,
    FailedRowRecord,
    LedgerEntry,
    ResyncRequest,
    RunRecord,
)

_CHUNK = 500
_RUN_COLUMNS = (
    "destination, started_at, finished_at, status, plan, from_snapshot, to_snapshot, "
    "inserted, updated, deleted, invalid, failed, error"
)


class Cursor(ABC):
    """The few DB-API calls the store needs, with `?` placeholders."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def fetchone(self) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def fetchall(self) -> list[tuple[Any, ...]]: ...


class SqlStore(ABC):
    dialect: Dialect
    now_sql: str

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction: committed on exit, rolled back on error."""

    @abstractmethod
    def _lock_for_migration(self, cur: Cursor) -> None: ...

    @property
    @abstractmethod
    def url_redacted(self) -> str: ...

    def _where(self) -> str:
        return f"in the state store {self.url_redacted}"

    # --- schema -----------------------------------------------------------------------

    def migrate(self) -> None:
        with self.transaction() as cur:
            self._lock_for_migration(cur)
            cur.execute(tracking_table(self.dialect))
            cur.execute("SELECT max(version) FROM schema_migrations")
            row = cur.fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > LATEST:
                raise CheckpointError(
                    f"the state store {self.url_redacted} has schema version {current}, newer "
                    f"than this floe-egress knows ({LATEST}): upgrade floe-egress"
                )
            for version, sql in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements(sql, self.dialect):
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    def schema_version(self) -> int:
        with self.transaction() as cur:
            cur.execute("SELECT max(version) FROM schema_migrations")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def ping(self) -> None:
        with self.transaction() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    # --- checkpoints and runs -----------------------------------------------------------

    def get_checkpoint(self, destination: str) -> Checkpoint | None:
        with self.transaction() as cur:
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
            snapshot_id=None if row[2] is None else int(row[2]),
            snapshot_timestamp_ms=None if row[3] is None else int(row[3]),
            key=tuple(json.loads(row[4])),
            updated_at=float(row[5]),
        )

    def _insert_run(self, cur: Cursor, run: RunRecord) -> int:
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
        assert row is not None
        return int(row[0])

    def record_run(self, run: RunRecord) -> int:
        with self.transaction() as cur:
            return self._insert_run(cur, run)

    def runs(self, destination: str, limit: int = 20) -> list[RunRecord]:
        with self.transaction() as cur:
            cur.execute(
                f"SELECT id, {_RUN_COLUMNS} FROM runs WHERE destination = ? "
                "ORDER BY id DESC LIMIT ?",
                (destination, limit),
            )
            rows = cur.fetchall()
        return [
            RunRecord(
                run_id=int(r[0]),
                destination=r[1],
                started_at=float(r[2]),
                finished_at=float(r[3]),
                status=r[4],
                plan=r[5],
                from_snapshot=None if r[6] is None else int(r[6]),
                to_snapshot=None if r[7] is None else int(r[7]),
                inserted=int(r[8]),
                updated=int(r[9]),
                deleted=int(r[10]),
                invalid=int(r[11]),
                failed=int(r[12]),
                error=r[13],
            )
            for r in rows
        ]

    def last_run(self, destination: str) -> RunRecord | None:
        runs = self.runs(destination, limit=1)
        return runs[0] if runs else None

    def commit_cycle(self, commit: CycleCommit) -> None:
        cp = commit.checkpoint
        now = time.time()
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO checkpoints (destination, source_table, ref, snapshot_id, "
                "snapshot_timestamp_ms, key_json, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (destination) DO UPDATE SET source_table = excluded.source_table, "
                "ref = excluded.ref, snapshot_id = excluded.snapshot_id, "
                "snapshot_timestamp_ms = excluded.snapshot_timestamp_ms, "
                "key_json = excluded.key_json, updated_at = excluded.updated_at",
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
            self._insert_run(cur, commit.run)
            if commit.failed:
                cur.executemany(
                    "INSERT INTO failed_rows (destination, key_json, op, reason, attempts, "
                    "first_seen, last_seen, parked) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
                    "ON CONFLICT (destination, key_json) DO UPDATE SET op = excluded.op, "
                    "reason = excluded.reason, attempts = failed_rows.attempts + 1, "
                    "last_seen = excluded.last_seen, "
                    f"parked = {self._parked_sql('failed_rows.attempts + 1')}",
                    [
                        (
                            cp.destination,
                            f.key_json,
                            f.op,
                            f.reason,
                            now,
                            now,
                            self._bool(commit.max_attempts <= 1),
                            commit.max_attempts,
                        )
                        for f in commit.failed
                    ],
                )
            self._delete_keys(cur, "failed_rows", cp.destination, commit.resolved)
            if commit.ledger_replace:
                cur.execute("DELETE FROM ledger WHERE destination = ?", (cp.destination,))
            else:
                self._delete_keys(cur, "ledger", cp.destination, commit.ledger_deletes)
            if commit.ledger_upserts:
                self._upsert_ledger(cur, cp.destination, commit.ledger_upserts)
            if commit.clear_resync:
                cur.execute("DELETE FROM resync_requests WHERE destination = ?", (cp.destination,))

    def _parked_sql(self, attempts: str) -> str:
        # The 8th parameter of the failed-row insert is max_attempts.
        return f"({attempts} >= ?)"

    def _bool(self, value: bool) -> Any:
        return value

    def _delete_keys(self, cur: Cursor, table: str, destination: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            cur.execute(
                f"DELETE FROM {table} WHERE destination = ? AND key_json IN ({marks})",
                (destination, *chunk),
            )

    def _upsert_ledger(self, cur: Cursor, destination: str, entries: Sequence[LedgerEntry]) -> None:
        cur.executemany(
            "INSERT INTO ledger (destination, key_json, row_hash) VALUES (?, ?, ?) "
            "ON CONFLICT (destination, key_json) DO UPDATE SET row_hash = excluded.row_hash",
            [(destination, e.key_json, e.row_hash) for e in entries],
        )

    # --- failed rows ----------------------------------------------------------------------

    def failed_rows(
        self, destination: str, *, include_parked: bool = True
    ) -> list[FailedRowRecord]:
        where = "" if include_parked else f" AND parked = {self._false()}"
        with self.transaction() as cur:
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

    def _false(self) -> str:
        return "FALSE"

    def failed_row_count(self, destination: str) -> int:
        with self.transaction() as cur:
            cur.execute("SELECT count(*) FROM failed_rows WHERE destination = ?", (destination,))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    # --- resync requests ------------------------------------------------------------------

    def request_resync(self, destination: str, from_snapshot: int | None) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO resync_requests (destination, from_snapshot, requested_at) "
                "VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
                "from_snapshot = excluded.from_snapshot, requested_at = excluded.requested_at",
                (destination, from_snapshot, time.time()),
            )

    def pending_resync(self, destination: str) -> ResyncRequest | None:
        with self.transaction() as cur:
            cur.execute(
                "SELECT from_snapshot, requested_at FROM resync_requests WHERE destination = ?",
                (destination,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return ResyncRequest(destination, None if row[0] is None else int(row[0]), float(row[1]))

    # --- ledger ---------------------------------------------------------------------------

    def ledger_lookup(self, destination: str, key_jsons: Iterable[str]) -> dict[str, int]:
        keys = list(key_jsons)
        found: dict[str, int] = {}
        with self.transaction() as cur:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                cur.execute(
                    f"SELECT key_json, row_hash FROM ledger WHERE destination = ? "
                    f"AND key_json IN ({marks})",
                    (destination, *chunk),
                )
                found.update((k, int(h)) for k, h in cur.fetchall())
        return found

    def ledger_scan(
        self, destination: str, batch_size: int = 50_000
    ) -> Iterator[list[LedgerEntry]]:
        after = ""
        while True:
            with self.transaction() as cur:
                cur.execute(
                    "SELECT key_json, row_hash FROM ledger WHERE destination = ? AND key_json > ? "
                    "ORDER BY key_json LIMIT ?",
                    (destination, after, batch_size),
                )
                rows = cur.fetchall()
            if not rows:
                return
            yield [LedgerEntry(k, int(h)) for k, h in rows]
            after = rows[-1][0]

    def ledger_size(self, destination: str) -> int:
        with self.transaction() as cur:
            cur.execute("SELECT count(*) FROM ledger WHERE destination = ?", (destination,))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    # --- leases ---------------------------------------------------------------------------

    def acquire_lease(self, destination: str, owner: str, ttl_seconds: float) -> bool:
        with self.transaction() as cur:
            cur.execute(
                f"INSERT INTO leases (destination, owner, expires_at) "
                f"VALUES (?, ?, {self.now_sql} + ?) "
                f"ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, "
                f"expires_at = excluded.expires_at "
                f"WHERE leases.owner = excluded.owner OR leases.expires_at < {self.now_sql} "
                f"RETURNING owner",
                (destination, owner, ttl_seconds),
            )
            return cur.fetchone() is not None

    def release_lease(self, destination: str, owner: str) -> None:
        with self.transaction() as cur:
            cur.execute(
                "DELETE FROM leases WHERE destination = ? AND owner = ?", (destination, owner)
            )

    def lease_holder(self, destination: str) -> str | None:
        with self.transaction() as cur:
            cur.execute(
                f"SELECT owner FROM leases WHERE destination = ? AND expires_at >= {self.now_sql}",
                (destination,),
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])
