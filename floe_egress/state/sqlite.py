"""SQLite backend, the default: WAL, a busy timeout for a second process, file mode 0600.

One connection per store behind a lock: the daemon's worker threads take turns, and
SQLite itself serialises writers across processes (BEGIN IMMEDIATE + busy_timeout).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from floe_egress.clock import SYSTEM_CLOCK, Clock
from floe_egress.errors import CheckpointError
from floe_egress.state.cursor import Cursor, KeyTable
from floe_egress.state.digest import COPY_CHUNK
from floe_egress.state.faults import Faults
from floe_egress.state.sql import SqlStore
from floe_egress.state.urls import SQLITE_MEMORY

BUSY_TIMEOUT_MS = 30_000
# Below SQLITE_MAX_VARIABLE_NUMBER of every SQLite version (999 before 3.32).
_IN_CHUNK = 900
_DB_ERRORS = (sqlite3.Error, OverflowError, ValueError)


class _SqliteCursor(Cursor):
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, (tuple(r) for r in rows))

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor.fetchall()]

    def delete_keys(self, table: KeyTable, destination: str, keys: Sequence[str]) -> None:
        self._cursor.executemany(
            f"DELETE FROM {table} WHERE destination = ? AND key_json = ?",
            ((destination, k) for k in keys),
        )


class SqliteStore(SqlStore):
    dialect = "sqlite"
    # julianday has millisecond resolution; unixepoch('subsec') needs SQLite 3.42.
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(
        self, path: Path | str, *, clock: Clock = SYSTEM_CLOCK, faults: Faults | None = None
    ) -> None:
        super().__init__(clock=clock, faults=faults)
        self.path = str(path)
        self._lock = threading.RLock()
        self._closed = False
        if self.path != SQLITE_MEMORY:
            _create_private_file(Path(self.path), self.url_redacted)
        self._conn = self._connect()
        try:
            self.migrate()
        except BaseException:
            self._conn.close()
            raise

    @property
    def url_redacted(self) -> str:
        return SQLITE_MEMORY if self.path == SQLITE_MEMORY else f"sqlite:///{self.path}"

    def copy_digest_segment(self, destination: str, seq: int, out: BinaryIO) -> str | None:
        """SQLite reads the blob a part at a time itself (incremental blob I/O): a
        query of part of it would assemble the whole blob for each part."""
        digest = hashlib.sha256()
        with self.transaction(write=False):
            row = self._conn.execute(
                "SELECT rowid FROM digest_segments WHERE destination = ? AND seq = ?",
                (destination, seq),
            ).fetchone()
            if row is None:
                return None
            with self._conn.blobopen("digest_segments", "data", int(row[0]), readonly=True) as blob:
                while chunk := blob.read(COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        return digest.hexdigest()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as exc:
            raise CheckpointError(
                f"cannot open the state store {self.url_redacted}: {exc}; check the path "
                "and that this user may read and write it"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _switch_to_wal(conn, self._clock)
            # In WAL mode NORMAL survives an application crash; a power cut may lose the
            # last commits, which only makes the next cycle resend (at-least-once).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            conn.close()
            raise CheckpointError(
                f"cannot open the state store {self.url_redacted}: {exc}; check that the "
                "file is a SQLite database and that this user may write its directory"
            ) from exc
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        with self._lock:
            if self._closed:
                raise CheckpointError(f"the state store {self.url_redacted} is closed")
            try:
                # IMMEDIATE takes the write lock up front: a deferred transaction that
                # reads and then writes can fail with SQLITE_BUSY without waiting.
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield _SqliteCursor(self._conn.cursor())
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, _DB_ERRORS):
                    raise CheckpointError(
                        f"state store {self.url_redacted}: {type(exc).__name__}: {exc}"
                    ) from exc
                raise

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The connection is gone (closed, or the disk failed); nothing was committed.
            pass

    def _prepare_migration(self, cur: Cursor) -> None:
        """BEGIN IMMEDIATE already excludes every other writer."""

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _create_private_file(file: Path, where: str) -> None:
    """Create the database file 0600 (and missing folders 0700) before SQLite opens it."""
    try:
        missing = [p for p in (file.parent, *file.parent.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise CheckpointError(
            f"cannot create the state store {where}: {exc.strerror} ({exc.filename}); "
            "check that the folder exists or may be created by this user"
        ) from exc


def _switch_to_wal(conn: sqlite3.Connection, clock: Clock) -> None:
    """Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once (without its busy handler) while another process holds the file
    during its own switch or first migration: wait for it like the busy timeout would."""
    deadline = clock.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or clock.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
