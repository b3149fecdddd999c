"""Versioned schema migrations, one statement list per dialect and version.

Applied at open inside one transaction that also serialises concurrent openers
(PostgreSQL: an advisory transaction lock; SQLite: BEGIN IMMEDIATE).
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "bool": "INTEGER"},
    "postgresql": {"id": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION", "bool": "BOOLEAN"},
}

_V1 = """
CREATE TABLE checkpoints (
    destination TEXT PRIMARY KEY,
    source_table TEXT NOT NULL,
    ref TEXT NOT NULL,
    snapshot_id BIGINT,
    snapshot_timestamp_ms BIGINT,
    key_json TEXT NOT NULL,
    updated_at {float} NOT NULL
);
CREATE TABLE runs (
    id {id},
    destination TEXT NOT NULL,
    started_at {float} NOT NULL,
    finished_at {float} NOT NULL,
    status TEXT NOT NULL,
    plan TEXT NOT NULL,
    from_snapshot BIGINT,
    to_snapshot BIGINT,
    inserted BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    invalid BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX runs_by_destination ON runs (destination, id);
CREATE TABLE failed_rows (
    destination TEXT NOT NULL,
    key_json TEXT NOT NULL,
    op TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_seen {float} NOT NULL,
    last_seen {float} NOT NULL,
    parked {bool} NOT NULL,
    PRIMARY KEY (destination, key_json)
);
CREATE TABLE ledger (
    destination TEXT NOT NULL,
    key_json TEXT NOT NULL,
    row_hash BIGINT NOT NULL,
    PRIMARY KEY (destination, key_json)
);
CREATE TABLE resync_requests (
    destination TEXT PRIMARY KEY,
    from_snapshot BIGINT,
    requested_at {float} NOT NULL
);
CREATE TABLE leases (
    destination TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at {float} NOT NULL
)
"""

MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1),)
LATEST = MIGRATIONS[-1][0]


def statements(version_sql: str, dialect: Dialect) -> list[str]:
    text = version_sql.format(**_TYPES[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]


TRACKING_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, applied_at {float} NOT NULL)"
)


def tracking_table(dialect: Dialect) -> str:
    return TRACKING_TABLE.format(**_TYPES[dialect])
