"""Helpers for the state store tests: raw SQL beside the store, and a child process."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Literal

import psycopg2

from floe_egress.state import RunRecord, open_store
from floe_egress.state.urls import sqlite_path

PG_SCHEMA = "egress_state"


@dataclass(frozen=True)
class Backend:
    """Where a test's state store lives; nothing exists there until it is opened."""

    kind: Literal["sqlite", "postgres"]
    url: str

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run `sql` (with ? placeholders) on a connection of its own, autocommitted."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(sqlite_path(self.url))) as lite, lite:
                return lite.execute(sql, params).fetchall()
        pg = psycopg2.connect(self.url.split("?", 1)[0])
        try:
            pg.autocommit = True
            with pg.cursor() as cur:
                cur.execute(f"SET search_path TO {PG_SCHEMA}")
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        finally:
            pg.close()


def run(destination: str, *, started: float = 1.0, to_snapshot: int | None = 1) -> RunRecord:
    return RunRecord(destination, started, started + 0.5, "ok", "append", None, to_snapshot)


def open_and_record(url: str, barrier: Any, destination: str) -> None:
    """Child process: open the store at the same moment as the others, then write."""
    barrier.wait(timeout=30)
    store = open_store(url)
    try:
        store.record_run(run(destination, started=time.time()))
    finally:
        store.close()
