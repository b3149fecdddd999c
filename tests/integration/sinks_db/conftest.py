"""Database sinks against real servers: a fresh database per test, read back directly."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import RetryConfig, SyncMode
from floe_egress.sinks.base import DeliveryReport, WriteContext
from floe_egress.sinks.database.sink import DatabaseSink
from floe_egress.sinks.mapping import filter_for_mode
from floe_egress.sinks.registry import BuildRequest, get_sink_type
from tests.fixtures.world import World

KINDS = ("postgres", "mysql", "sqlite", "duckdb")
TABLE = "customers"


@dataclass
class Db:
    """One destination database: its sink_config and direct access for checks."""

    kind: str
    config: dict[str, Any]
    url: str = ""
    path: Path | None = None

    @property
    def schema(self) -> str:
        return str(self.config.get("dataset") or "")

    def connect(self) -> Any:
        if self.kind == "postgres":
            import psycopg2

            conn = psycopg2.connect(self.url)
            conn.autocommit = True
            return conn
        if self.kind == "mysql":
            import pymysql

            parts = urlsplit(self.url)
            return pymysql.connect(
                host=parts.hostname,
                port=parts.port or 3306,
                user=parts.username,
                password=parts.password or "",
                database=parts.path.strip("/"),
                autocommit=True,
            )
        if self.kind == "sqlite":
            return sqlite3.connect(str(self.path), isolation_level=None)
        import duckdb

        return duckdb.connect(str(self.path))

    def qualified(self, table: str = TABLE) -> str:
        if self.kind == "postgres":
            return f'"{self.schema}"."{table}"'
        if self.kind == "mysql":
            return f"`{table}`"
        if self.kind == "duckdb":
            return f'"{self.schema}"."{table}"'
        return f'"{table}"'

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else []
            return [tuple(r) for r in rows]
        finally:
            conn.close()

    def rows(self, table: str = TABLE, order: Sequence[str] = ("id",)) -> list[dict[str, Any]]:
        """The whole table, as dicts in key order; JSON text parsed, memoryviews as bytes."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            by = ", ".join(_quote(self.kind, c) for c in order)
            cur.execute(f"SELECT * FROM {self.qualified(table)} ORDER BY {by}")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, map(_plain, r), strict=True)) for r in cur.fetchall()]
        finally:
            conn.close()

    def key_indexes(self, table: str = TABLE) -> list[str]:
        """Names of the table's unique indexes."""
        if self.kind == "postgres":
            sql = (
                f"SELECT indexname FROM pg_indexes WHERE schemaname = '{self.schema}' "
                f"AND tablename = '{table}' AND indexdef LIKE 'CREATE UNIQUE%'"
            )
        elif self.kind == "mysql":
            sql = (
                "SELECT DISTINCT index_name FROM information_schema.statistics WHERE "
                f"table_schema = DATABASE() AND table_name = '{table}' AND non_unique = 0"
            )
        elif self.kind == "sqlite":
            sql = (
                "SELECT name FROM sqlite_master WHERE type = 'index' "
                f"AND tbl_name = '{table}' AND sql LIKE 'CREATE UNIQUE%'"
            )
        else:
            sql = f"SELECT index_name FROM duckdb_indexes() WHERE table_name = '{table}'"
        return sorted(str(r[0]) for r in self.execute(sql))

    def columns(self, table: str = TABLE) -> list[str]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT * FROM {self.qualified(table)} WHERE 1 = 0")
            return [d[0] for d in cur.description]
        finally:
            conn.close()


def _quote(kind: str, name: str) -> str:
    return f"`{name}`" if kind == "mysql" else f'"{name}"'


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def parse_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """The same test on PostgreSQL, MariaDB, SQLite and DuckDB."""
    return make_db(request, str(request.param), tmp_path)


def make_db(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Db:
    if kind == "postgres":
        url = request.getfixturevalue("pg_database")
        return Db(kind, {"credentials": url, "dataset": "activation", "table": TABLE}, url=url)
    if kind == "mysql":
        url = request.getfixturevalue("mariadb_database")
        return Db(kind, {"credentials": url, "table": TABLE}, url=url)
    if kind == "sqlite":
        path = tmp_path / "app.sqlite"
        return Db(kind, {"path": str(path), "table": TABLE}, path=path)
    path = tmp_path / "demo.duckdb"
    return Db(kind, {"path": str(path), "dataset": "main", "table": TABLE}, path=path)


@pytest.fixture(params=("postgres", "mysql"))
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """Behaviour of dlt rather than of a database: PostgreSQL and MariaDB suffice."""
    return make_db(request, str(request.param), tmp_path)


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return make_db(request, "postgres", tmp_path)


def changes(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """A change batch: each row dict carries its op under "op"."""
    data = [{**{k: v for k, v in r.items() if k != "op"}, OP_COLUMN: r["op"]} for r in rows]
    if schema is not None:
        schema = schema.append(pa.field(OP_COLUMN, pa.string()))
    return pa.Table.from_pylist(data, schema=schema)


def context(
    mode: SyncMode, to_snapshot: int, batch_index: int = 0, *, from_snapshot: int | None = -1
) -> WriteContext:
    start = to_snapshot - 1 if from_snapshot == -1 else from_snapshot
    return WriteContext("app_db", mode, ("id",), start, to_snapshot, batch_index)


SinkFactory = Callable[..., DatabaseSink]


@pytest.fixture
async def make_sink(tmp_path: Path) -> AsyncIterator[SinkFactory]:
    built: list[DatabaseSink] = []

    def factory(
        db: Db,
        mode: SyncMode = "upsert",
        *,
        key: tuple[str, ...] = ("id",),
        mapping: dict[str, str] | None = None,
        destination: str = "app_db",
        work_dir: Path | None = None,
        **config: Any,
    ) -> DatabaseSink:
        sink_type = get_sink_type(db.kind)
        assert sink_type is not None
        request = BuildRequest(
            destination=destination,
            sink_config=sink_type.config_model.model_validate({**db.config, **config}),
            mode=mode,
            key=key,
            field_mapping=mapping,
            batch_size=None,
            rate_limit=None,
            retry=RetryConfig(),
            work_dir=work_dir or tmp_path / "work" / destination,
        )
        sink = sink_type.build(request)
        assert isinstance(sink, DatabaseSink)
        built.append(sink)
        return sink

    yield factory
    for sink in built:
        await sink.close()


async def send(
    sink: DatabaseSink, batch: pa.Table, to_snapshot: int, batch_index: int = 0
) -> DeliveryReport:
    """Write as the cycle does: filtered by the sink's mode first."""
    filtered = filter_for_mode(batch, sink.mode)
    return await sink.write(filtered, context(sink.mode, to_snapshot, batch_index))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A table and a SQLite state store, the destinations' dlt files under tmp_path."""
    monkeypatch.setenv("FLOE_EGRESS_WORK_DIR", str(tmp_path / "work"))
    return World(tmp_path / "world", f"sqlite:///{tmp_path / 'state.db'}")
