"""A destination's connection check: one `SELECT 1` through the driver, without dlt.

Building a dlt pipeline and its sql_client costs about 0.6 s (most of it importing dlt)
before the first query: a cycle with nothing to send would pay it for the check alone.
The drivers here are the ones dlt loads through, connected with the same URL and
timeouts, so what the check refuses is what the load would refuse; their exceptions are
classified by failures.py like dlt's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CONNECT_TIMEOUT = 15
"""Seconds to wait for a server that does not answer (dlt's default for PostgreSQL)."""


KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10}
"""TCP keepalives for a connection kept between cycles: one a NAT or load balancer
dropped while idle fails within a minute instead of hanging the next query."""


def connect_postgres(url: str, *, keepalives: bool = False) -> Any:
    """A psycopg2 connection to `url` (postgresql://..., as libpq takes it), with dlt's
    connect timeout (and, if asked, TCP keepalives) unless the URL sets them."""
    import psycopg2

    query = dict(parse_qsl(urlsplit(url).query))
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if keepalives:
        options.update(KEEPALIVES)
    return psycopg2.connect(url, **{k: v for k, v in options.items() if k not in query})


def postgres(url: str) -> None:
    """`SELECT 1` through psycopg2, as dlt's postgres destination connects."""
    conn = connect_postgres(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        conn.close()


def sqlalchemy_url(url: str) -> None:
    """MySQL/MariaDB through SQLAlchemy and its driver (pymysql), as dlt's sqlalchemy
    destination connects: the URL's query options apply the same way."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    finally:
        engine.dispose()


def sqlite(path: Path) -> None:
    _file_database(sqlite3.connect, path)


def duckdb(path: Path) -> None:
    import duckdb as driver

    _file_database(driver.connect, path)


def _file_database(connect: Callable[[str], Any], path: Path) -> None:
    """`SELECT 1` in the database file at `path` (created, as the sink would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(str(path))
    try:
        conn.execute("SELECT 1")
    finally:
        conn.close()


__all__ = ["CONNECT_TIMEOUT", "connect_postgres", "duckdb", "postgres", "sqlalchemy_url", "sqlite"]
