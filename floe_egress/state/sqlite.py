"""SQLite backend: the default. WAL, a busy timeout for a second process, file mode 0600."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from floe_egress.errors import CheckpointError
from floe_egress.state.sql import Cursor, SqlStore

BUSY_TIMEOUT_MS = 30_000


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


class SqliteStore(SqlStore):
    dialect = "sqlite"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn = self._open()
        self.migrate()

    @property
    def url_redacted(self) -> str:
        return f"sqlite:///{self.path}"

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            file = Path(self.path)
            try:
                if not file.parent.exists():
                    file.parent.mkdir(parents=True, mode=0o700)
                if not file.exists():
                    os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise CheckpointError(
                    f"cannot create the state store {self.url_redacted}: {exc.strerror}"
                ) from exc
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise CheckpointError(
                f"cannot open the state store {self.url_redacted}: {exc}"
            ) from exc
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise CheckpointError(f"state store {self.url_redacted}: {exc}") from exc
            try:
                yield _SqliteCursor(self._conn.cursor())
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise CheckpointError(f"state store {self.url_redacted}: {exc}") from exc

    def _lock_for_migration(self, cur: Cursor) -> None:
        """BEGIN IMMEDIATE already holds the write lock."""

    def _false(self) -> str:
        return "0"

    def close(self) -> None:
        with self._lock:
            self._conn.close()
