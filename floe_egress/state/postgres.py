"""PostgreSQL backend: the same schema, for several daemons sharing destinations.

The URL is a libpq URL; an optional `schema` query parameter puts the tables in that
schema (created if missing): postgresql://user@host:5432/db?schema=floe_egress
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from floe_egress.errors import CheckpointError
from floe_egress.state.sql import Cursor, SqlStore

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIGRATION_LOCK = 0x666C6F65  # "floe"


def redact_url(url: str) -> str:
    return re.sub(r"(://[^:/@\s]*):[^@/\s]+@", r"\1:***@", url)


class _PgCursor(Cursor):
    def __init__(self, cursor: psycopg2.extensions.cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        psycopg2.extras.execute_batch(
            self._cursor, sql.replace("?", "%s"), [tuple(r) for r in rows], page_size=5000
        )

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor.fetchall()]


class PostgresStore(SqlStore):
    dialect = "postgresql"
    now_sql = "extract(epoch from clock_timestamp())::double precision"

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self._redacted = redact_url(url)
        dsn, self.schema = self._split_schema(url)
        try:
            self._pool = psycopg2.pool.ThreadedConnectionPool(1, max_connections, dsn)
        except psycopg2.Error as exc:
            message = redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise CheckpointError(
                f"cannot connect to the state store {self._redacted}: {message}"
            ) from None
        self._lock = threading.Lock()
        if self.schema:
            with self.transaction() as cur:
                cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.migrate()

    @property
    def url_redacted(self) -> str:
        return self._redacted

    def _split_schema(self, url: str) -> tuple[str, str | None]:
        parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
        query = parse_qsl(parts.query)
        schema = next((v for k, v in query if k == "schema"), None)
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise CheckpointError(f"state.url: schema {schema!r} is not a plain identifier")
        rest = [(k, v) for k, v in query if k != "schema"]
        if schema:
            rest.append(("options", f"-csearch_path={schema}"))
        return urlunsplit(parts._replace(query=urlencode(rest))), schema

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        try:
            conn = self._pool.getconn()
        except psycopg2.Error as exc:
            raise CheckpointError(f"state store {self._redacted}: {redact_url(str(exc))}") from None
        broken = False
        try:
            with conn.cursor() as cur:
                yield _PgCursor(cur)
            conn.commit()
        except psycopg2.Error as exc:
            broken = conn.closed != 0
            if not broken:
                conn.rollback()
            raise CheckpointError(
                f"state store {self._redacted}: {redact_url(str(exc).strip())}"
            ) from exc
        except BaseException:
            if conn.closed == 0:
                conn.rollback()
            raise
        finally:
            self._pool.putconn(conn, close=broken or conn.closed != 0)

    def _lock_for_migration(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def _upsert_ledger(self, cur: Cursor, destination: str, entries: Sequence[Any]) -> None:
        # execute_values sends thousands of rows a statement: ~10x fewer round trips.
        assert isinstance(cur, _PgCursor)
        psycopg2.extras.execute_values(
            cur._cursor,
            "INSERT INTO ledger (destination, key_json, row_hash) VALUES %s "
            "ON CONFLICT (destination, key_json) DO UPDATE SET row_hash = excluded.row_hash",
            [(destination, e.key_json, e.row_hash) for e in entries],
            page_size=10_000,
        )

    def close(self) -> None:
        self._pool.closeall()
