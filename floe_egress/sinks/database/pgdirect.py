"""PostgreSQL writes through the driver, once dlt has made the table: no dlt run per batch.

A dlt run costs about 0.15 s whatever it carries (extract, normalize, load, package
files), and importing dlt 0.45 s: most of a cycle that sends 3,000 changed rows, and
all of the floor of a warm one. Once the table exists and holds rows, and the batch's
columns are exactly the table's, a batch needs none of what dlt adds (DDL, schema
evolution, naming): it is written here with psycopg2 on one connection kept open across
cycles, in one transaction:

- merge:  the CSV file dlt would have COPYed (fastload.py's, the same bytes) is COPYed
          into a temporary table; in mirror mode the rows flagged `_floe_deleted` delete
          their keys; the others `INSERT ... ON CONFLICT (key) DO UPDATE`, which needs
          the unique index on the key (`key_index`, created before the first merge).
- append: the CSV is COPYed into the table itself.

Everything else goes through dlt as before: a missing or empty table (the initial load:
dlt creates the table), a new or missing column (dlt evolves the schema), keys repeated
within the batch, a table without the unique index, names dlt would normalise. Unlike
dlt's COPY, which marks nullable columns FORCE_NULL, an empty string arrives as an empty
string: a batch holding one is written here too (dlt takes it as INSERT ... VALUES).

A failed write rolls back as a whole, so the rows the cycle sends again meet the table
as it was. Errors are the driver's own, classified by failures.py like dlt's.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import pyarrow.csv as pacsv

from floe_egress.sinks.database.fastload import CSV_OPTIONS
from floe_egress.sinks.database.frames import DELETED_COLUMN, Frame, unique_keys
from floe_egress.sinks.database.keys import existing_mask
from floe_egress.sinks.database.ping import connect_postgres

T = TypeVar("T")
TableState = Literal["missing", "empty", "rows"]

_PLAIN = re.compile(r"_?[a-z][a-z0-9]*(_[a-z0-9]+)*")
"""Names dlt's snake_case naming leaves as they are: only those are written here."""


def plain(name: str) -> bool:
    return len(name) <= 63 and _PLAIN.fullmatch(name) is not None


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Client:
    """What keys.existing_mask asks of a client, over a psycopg2 cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def escape_column_name(self, name: str) -> str:
        return quoted(name)

    def execute_sql(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql, params)
        return list(self._cursor.fetchall())


class PgDirect:
    """One destination table, one connection, opened on first use and kept."""

    def __init__(self, url: str, dataset: str, table: str) -> None:
        self.url = url
        self.dataset = dataset
        self.table = table
        self.qualified = f"{quoted(dataset)}.{quoted(table)}"
        self.usable = plain(dataset) and plain(table)
        """False: dlt would normalise the names; every write goes through dlt."""
        self._conn: Any = None
        self._columns: frozenset[str] | None = None
        self._unique: dict[tuple[str, ...], bool] = {}
        self._temp: bool | None = None

    def _cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = connect_postgres(self.url, keepalives=True)
            conn.autocommit = True
            # The CSV is UTF-8 whatever the database's encoding (dlt's COPY says so too)
            conn.set_client_encoding("UTF8")
            self._conn = conn
        return self._conn.cursor()

    def _read(self, query: Callable[[Any], T]) -> T:
        """`query(cursor)`; once more on a new connection if a kept one was found dead
        (the server restarted between cycles): reads change nothing, so they can."""
        import psycopg2

        kept = self._conn is not None and not self._conn.closed
        try:
            with self._cursor() as cur:
                return query(cur)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            dead = self._conn is None or bool(self._conn.closed)
            self._broken()
            if not (kept and dead):
                raise  # a fresh connection failed, or the server answered: not retried
            self.close()
            with self._cursor() as cur:
                return query(cur)
        except Exception:
            self._broken()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def forget(self) -> None:
        """The table may have changed (a dlt run, a failed write): look again next time."""
        self._columns = None
        self._unique.clear()
        self._temp = None

    def _broken(self) -> None:
        """After an error: a connection the server closed is not reused."""
        self.forget()
        if self._conn is not None and self._conn.closed:
            self._conn = None

    # --- what the sink asks before a write -------------------------------------------

    def table_state(self) -> TableState:
        """Asked once per write (but a continuation): what was learnt of the table's
        columns and indexes is looked up again after it, in case the table changed."""
        import psycopg2.errors

        self.forget()

        def query(cur: Any) -> TableState:
            try:
                cur.execute(f"SELECT 1 FROM {self.qualified} LIMIT 1")
            except psycopg2.errors.UndefinedTable:
                return "missing"
            return "rows" if cur.fetchone() else "empty"

        return self._read(query)

    def existing(self, keys: Any) -> Any:
        import psycopg2.errors

        missing = psycopg2.errors.UndefinedTable
        return self._read(
            lambda cur: existing_mask(_Client(cur), self.qualified, keys, missing_table=missing)
        )

    def ensure_index(self, name: str, columns: tuple[str, ...]) -> None:
        cols = ", ".join(quoted(c) for c in columns)
        statement = f"CREATE UNIQUE INDEX IF NOT EXISTS {quoted(name)} ON {self.qualified} ({cols})"
        self._read(lambda cur: cur.execute(statement))
        self._unique.pop(columns, None)

    def _table_columns(self, cur: Any) -> frozenset[str]:
        if self._columns is None:
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (self.dataset, self.table),
            )
            self._columns = frozenset(str(row[0]) for row in cur.fetchall())
        return self._columns

    def _has_unique(self, cur: Any, key: tuple[str, ...]) -> bool:
        """A unique index (or primary key) `ON CONFLICT (key)` can use: on exactly the
        key columns (any order, INCLUDE columns aside), not partial, not on expressions,
        not deferrable, valid and ready."""
        if key not in self._unique:
            cur.execute(
                """SELECT EXISTS (
                     SELECT 1 FROM pg_index i
                     WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indimmediate
                       AND i.indisvalid AND i.indisready
                       AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = %s
                       AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                            JOIN pg_attribute a
                              ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                            WHERE k.n <= i.indnkeyatts)
                           = %s::text[])""",
                (self.qualified, len(key), sorted(key)),
            )
            row = cur.fetchone()
            self._unique[key] = bool(row and row[0])
        return self._unique[key]

    def _may_stage(self, cur: Any) -> bool:
        """May this role create the temporary table a merge stages in? (TEMP can be
        revoked; dlt stages in a schema instead.)"""
        if self._temp is None:
            cur.execute("SELECT has_database_privilege(current_database(), 'TEMP')")
            row = cur.fetchone()
            self._temp = bool(row and row[0])
        return self._temp

    def takes(self, frame: Frame, disposition: str) -> bool:
        """Can this batch be written here, exactly as dlt would have written it?"""
        names = frame.table.column_names
        if not self.usable or not all(plain(n) for n in names):
            return False
        if disposition == "merge" and not (
            frame.primary_key and unique_keys(frame.table, frame.primary_key)
        ):
            return False

        def query(cur: Any) -> bool:
            if self._table_columns(cur) != frozenset(names):
                return False
            if disposition != "merge":
                return True
            return self._has_unique(cur, frame.primary_key) and self._may_stage(cur)

        return self._read(query)

    @staticmethod
    def table_changed(exc: BaseException) -> bool:
        """Did a write fail because the table is not what was looked up (dropped, a
        column or the key index gone)? Then dlt takes the batch instead."""
        import psycopg2.errors as pg

        changed = (pg.UndefinedTable, pg.UndefinedColumn, pg.InvalidColumnReference)
        return isinstance(exc, changed)

    # --- the write --------------------------------------------------------------------

    def load(self, frame: Frame, disposition: Literal["merge", "append"]) -> dict[str, float]:
        """Write the batch in one transaction; the seconds of its steps."""
        buffer = io.BytesIO()
        started = time.perf_counter()
        pacsv.write_csv(frame.table, buffer, write_options=CSV_OPTIONS)
        buffer.seek(0)
        seconds = {"csv": time.perf_counter() - started}
        names = frame.table.column_names
        cols = ", ".join(quoted(n) for n in names)
        copy = "COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)"
        try:
            with self._cursor() as cur:
                cur.execute("BEGIN")
                try:
                    started = time.perf_counter()
                    if disposition == "append":
                        cur.copy_expert(copy.format(self.qualified, cols), buffer)
                        seconds["copy"] = time.perf_counter() - started
                    else:
                        self._merge(cur, frame, cols, copy, buffer, seconds, started)
                    cur.execute("COMMIT")
                except BaseException:
                    if not self._conn.closed:
                        cur.execute("ROLLBACK")
                    raise
        except Exception:
            # Nothing of a failed write is kept: not the connection (a failover may
            # have left it on a read-only server), not what was learnt of the table.
            self.forget()
            self.close()
            raise
        return seconds

    def _merge(
        self,
        cur: Any,
        frame: Frame,
        cols: str,
        copy: str,
        buffer: io.BytesIO,
        seconds: dict[str, float],
        started: float,
    ) -> None:
        stage = quoted("_floe_stage")
        cur.execute(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {self.qualified} WITH NO DATA"
        )
        cur.copy_expert(copy.format(stage, cols), buffer)
        seconds["copy"] = time.perf_counter() - started
        started = time.perf_counter()
        key = [quoted(k) for k in frame.primary_key]
        live = ""
        if DELETED_COLUMN in frame.table.column_names:
            match = " AND ".join(f"t.{k} = s.{k}" for k in key)
            cur.execute(
                f"DELETE FROM {self.qualified} AS t USING {stage} AS s "
                f"WHERE {match} AND s.{quoted(DELETED_COLUMN)}"
            )
            live = f" WHERE NOT {quoted(DELETED_COLUMN)}"
        others = [quoted(n) for n in frame.table.column_names if n not in frame.primary_key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
            if others
            else "DO NOTHING"
        )
        cur.execute(
            f"INSERT INTO {self.qualified} ({cols}) SELECT {cols} FROM {stage}{live} "
            f"ON CONFLICT ({', '.join(key)}) {action}"
        )
        seconds["merge"] = time.perf_counter() - started


__all__ = ["PgDirect", "plain", "quoted"]
