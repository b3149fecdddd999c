"""Helpers for the state store tests: raw SQL beside the store, and a child process."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Literal

import psycopg2

from floe_egress.state import FaultPoint, RunRecord, StateStore, open_store
from floe_egress.state.cursor import Cursor
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


@dataclass(frozen=True)
class ClockAhead:
    """A Clock `seconds` ahead of this host's (another daemon's, set wrong)."""

    seconds: float

    def time(self) -> float:
        return time.time() + self.seconds

    def monotonic(self) -> float:
        return time.monotonic()


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


class LoseConnection:
    """A `Faults` hook: the connection dies once, just before a digest segment is written
    (inside commit_cycle: after the checkpoint, run and failed rows)."""

    def __init__(self, kind: Literal["sqlite", "postgres"]) -> None:
        self.kind = kind
        self.store: StateStore | None = None
        """SQLite: the store to close (its one connection goes with it)."""
        self.armed = True

    def __call__(self, point: FaultPoint, cur: Cursor) -> None:
        if point != "digest_write" or not self.armed:
            return
        self.armed = False
        if self.kind == "postgres":
            cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        else:
            assert self.store is not None
            self.store.close()


def open_losing_connection(backend: Backend) -> StateStore:
    """A store at `backend.url` whose connection dies at its first digest write."""
    fault = LoseConnection(backend.kind)
    fault.store = open_store(backend.url, faults=fault)
    return fault.store


def contend(stores: list[StateStore], destination: str, ttl: float) -> list[str]:
    """Every store tries to take `destination` at the same moment; returns the winners."""
    barrier = threading.Barrier(len(stores))

    def attempt(index: int) -> str | None:
        barrier.wait(timeout=30)
        owner = f"daemon-{index}"
        return owner if stores[index].acquire_lease(destination, owner, ttl) else None

    with ThreadPoolExecutor(len(stores)) as pool:
        results = list(pool.map(attempt, range(len(stores))))
    return [r for r in results if r is not None]


def open_in_threads(url: str, count: int) -> None:
    barrier = threading.Barrier(count)

    def open_at_once(index: int) -> None:
        barrier.wait(timeout=30)
        store = open_store(url)
        store.record_run(run(f"dest-{index}"))
        store.close()

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(open_at_once, range(count)))


def open_in_processes(url: str, count: int) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    procs = [
        context.Process(target=open_and_record, args=(url, barrier, f"dest-{i}"))
        for i in range(count)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * count
