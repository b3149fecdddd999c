"""PostgreSQL backend: the same schema, for several daemons sharing destinations.

The URL is a libpq URL (see `floe_egress.state.urls`); `?schema=NAME` puts the tables
in their own schema. Connections come from a small pool that blocks when every
connection is busy, so any number of worker threads may share one store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from floe_egress.clock import SYSTEM_CLOCK, Clock
from floe_egress.errors import CheckpointError, StateSetupError
from floe_egress.state.cursor import Cursor, KeyTable
from floe_egress.state.faults import Faults
from floe_egress.state.sql import SqlStore
from floe_egress.state.urls import postgres_dsn, redact_url, scrub

_MIGRATION_LOCK = 0x666C6F65  # "floe": one key per database, shared by every schema
_ARRAY_CHUNK = 100_000
_COPY_CHUNK = 5_000
# psycopg2 raises ValueError for a NUL character in a string: a value PostgreSQL cannot
# store, like the errors the server reports.
_DB_ERRORS = (psycopg2.Error, ValueError)
Connection = psycopg2.extensions.connection


class _PgCursor(Cursor):
    def __init__(self, cursor: psycopg2.extensions.cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        # The shared SQL has no literal % or ?, so swapping placeholders is safe.
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        psycopg2.extras.execute_batch(
            self._cursor, sql.replace("?", "%s"), [tuple(r) for r in rows], page_size=1000
        )

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor.fetchall()]

    # A join with unnest() lets the planner pick a hash join for many keys and index
    # lookups for a few; `key_json = ANY(array)` filtered the whole destination instead.
    def delete_keys(self, table: KeyTable, destination: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _ARRAY_CHUNK):
            self._cursor.execute(
                f"DELETE FROM {table} AS t USING unnest(%s::text[]) AS k(key_json) "
                "WHERE t.destination = %s AND t.key_json = k.key_json",
                (list(keys[start : start + _ARRAY_CHUNK]), destination),
            )


class _Pool:
    """Up to `size` connections; `acquire` waits while all of them are in use."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Connection:
        self._slots.acquire()
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = psycopg2.connect(self._dsn)
                # COPY sends UTF-8 bytes, whatever the server's default encoding.
                conn.set_client_encoding("UTF8")
            return conn
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: Connection) -> None:
        with self._lock:
            if conn.closed or self._closed:
                conn.close()
            else:
                self._idle.append(conn)
        self._slots.release()

    def discard_idle(self) -> None:
        """Close the idle connections: after one was lost (typically a server restart)
        the others are likely dead too, and each would fail one call before going."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresStore(SqlStore):
    dialect = "postgresql"
    now_sql = "extract(epoch from clock_timestamp())::double precision"

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        clock: Clock = SYSTEM_CLOCK,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(clock=clock, faults=faults)
        self._url = url
        self._redacted = redact_url(url)
        dsn, self.schema = postgres_dsn(url)
        self._pool = _Pool(dsn, max_connections)
        self._closed = False
        try:
            self.migrate()
        except BaseException:
            self._pool.close()
            raise

    @property
    def url_redacted(self) -> str:
        return self._redacted

    def _error(self, exc: BaseException) -> CheckpointError:
        message = scrub(str(exc).strip(), self._url) or type(exc).__name__
        return CheckpointError(f"state store {self._redacted}: {message}")

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        if self._closed:
            raise CheckpointError(f"the state store {self._redacted} is closed")
        try:
            conn = self._pool.acquire()
        except psycopg2.Error as exc:
            # Not chained: the driver's exception may carry connection details.
            raise CheckpointError(
                f"cannot connect to the state store {self._redacted}: "
                f"{scrub(str(exc).strip(), self._url)}; check that PostgreSQL runs there "
                "and accepts this user"
            ) from None
        try:
            with conn.cursor() as cur:
                yield _PgCursor(cur)
            conn.commit()
        except BaseException as exc:
            _rollback_or_close(conn)
            if conn.closed:
                self._pool.discard_idle()
            if isinstance(exc, _DB_ERRORS):
                raise self._error(exc) from exc
            raise
        finally:
            self._pool.release(conn)

    def _prepare_migration(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        if self.schema:
            # Under the lock: two concurrent CREATE SCHEMA IF NOT EXISTS can both fail.
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        cur.execute("SELECT current_schema()")
        row = cur.fetchone()
        if row is None or row[0] is None:
            raise StateSetupError(
                f"the state store {self._redacted}: search_path names no existing schema; "
                "create the schema, or use ?schema=NAME to have floe-egress create it"
            )

    def close(self) -> None:
        self._closed = True
        self._pool.close()


def _rollback_or_close(conn: Connection) -> None:
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg2.Error:
        # A connection that cannot roll back is unusable: the pool must not reuse it.
        conn.close()
