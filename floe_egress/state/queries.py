"""SQL text and row conversions shared by the store's parts (any dialect, `?` placeholders)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from floe_egress.state.cursor import Cursor
from floe_egress.state.store import FailedRowUpdate, LedgerEntry, RunRecord

_Keyed = TypeVar("_Keyed", FailedRowUpdate, LedgerEntry)

RUNS_KEPT = 1000
"""Runs kept per destination (the newest)."""

RUN_COLUMNS = (
    "destination, started_at, finished_at, status, plan, from_snapshot, to_snapshot, "
    "inserted, updated, deleted, invalid, failed, error, invalid_sample"
)
UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (destination, source_table, ref, snapshot_id, "
    "snapshot_timestamp_ms, key_json, updated_at, row_filter) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (destination) DO UPDATE SET source_table = excluded.source_table, "
    "ref = excluded.ref, snapshot_id = excluded.snapshot_id, "
    "snapshot_timestamp_ms = excluded.snapshot_timestamp_ms, "
    "key_json = excluded.key_json, updated_at = excluded.updated_at, "
    "row_filter = excluded.row_filter"
)
UPSERT_FAILED_ROW = (
    "INSERT INTO failed_rows (destination, key_json, op, reason, attempts, "
    "first_seen, last_seen, parked) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
    "ON CONFLICT (destination, key_json) DO UPDATE SET op = excluded.op, "
    "reason = excluded.reason, attempts = failed_rows.attempts + 1, "
    "last_seen = excluded.last_seen, parked = (failed_rows.attempts + 1 >= ?)"
)


def insert_run(cur: Cursor, run: RunRecord) -> int:
    """Add `run` to the history (dropping runs beyond RUNS_KEPT); returns its id."""
    cur.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
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
            json.dumps(list(run.invalid_sample)) if run.invalid_sample else None,
        ),
    )
    row = cur.fetchone()
    assert row is not None, "INSERT ... RETURNING returned no row"
    # The history is bounded: a destination synced every few seconds would otherwise
    # add millions of rows a year. Usually this deletes the one run that fell off.
    cur.execute(
        "DELETE FROM runs WHERE destination = ? AND id <= (SELECT id FROM runs "
        "WHERE destination = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (run.destination, run.destination, RUNS_KEPT),
    )
    return int(row[0])


def run_from_row(r: Sequence[Any]) -> RunRecord:
    """The RunRecord of a row of `id, RUN_COLUMNS`."""
    return RunRecord(
        run_id=int(r[0]),
        destination=r[1],
        started_at=float(r[2]),
        finished_at=float(r[3]),
        status=r[4],
        plan=r[5],
        from_snapshot=int_or_none(r[6]),
        to_snapshot=int_or_none(r[7]),
        inserted=int(r[8]),
        updated=int(r[9]),
        deleted=int(r[10]),
        invalid=int(r[11]),
        failed=int(r[12]),
        error=r[13],
        invalid_sample=tuple(json.loads(r[14])) if r[14] else (),
    )


def count_rows(cur: Cursor, table: str, destination: str) -> int:
    cur.execute(f"SELECT count(*) FROM {table} WHERE destination = ?", (destination,))
    row = cur.fetchone()
    return 0 if row is None else int(row[0])


def last_per_key(items: Sequence[_Keyed]) -> list[_Keyed]:
    """One item per key_json, the last one winning (a key twice in one bulk upsert is an
    error in PostgreSQL and would count a failed row's attempt twice)."""
    return list({item.key_json: item for item in items}.values())


def int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
