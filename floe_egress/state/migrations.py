"""Versioned schema migrations: a list of statements per dialect and version.

`apply` runs at every open, inside one transaction whose caller already holds the
migration lock (PostgreSQL: an advisory transaction lock; SQLite: BEGIN IMMEDIATE), so
two processes opening a fresh store at once apply each version exactly once.
Add a migration by appending a `Migration`; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from floe_egress.clock import Clock
from floe_egress.errors import StateSetupError
from floe_egress.state.cursor import Cursor

Dialect = Literal["sqlite", "postgresql"]

_TYPES: Mapping[Dialect, Mapping[str, str]] = {
    "sqlite": {
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "float": "REAL",
        "bool": "INTEGER",
        "blob": "BLOB",
    },
    "postgresql": {
        "id": "BIGSERIAL PRIMARY KEY",
        "float": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "blob": "BYTEA",
    },
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    statements: Mapping[Dialect, tuple[str, ...]]


def _for_both(*templates: str) -> dict[Dialect, tuple[str, ...]]:
    """The same DDL in both dialects, with {id}, {float} and {bool} filled in per dialect."""
    return {d: tuple(t.format(**types) for t in templates) for d, types in _TYPES.items()}


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        _for_both(
            """CREATE TABLE checkpoints (
                destination TEXT PRIMARY KEY,
                source_table TEXT NOT NULL,
                ref TEXT NOT NULL,
                snapshot_id BIGINT,
                snapshot_timestamp_ms BIGINT,
                key_json TEXT NOT NULL,
                updated_at {float} NOT NULL
            )""",
            """CREATE TABLE runs (
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
            )""",
            "CREATE INDEX runs_by_destination ON runs (destination, id)",
            """CREATE TABLE failed_rows (
                destination TEXT NOT NULL,
                key_json TEXT NOT NULL,
                op TEXT NOT NULL,
                reason TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                first_seen {float} NOT NULL,
                last_seen {float} NOT NULL,
                parked {bool} NOT NULL,
                PRIMARY KEY (destination, key_json)
            )""",
            """CREATE TABLE ledger (
                destination TEXT NOT NULL,
                key_json TEXT NOT NULL,
                row_hash BIGINT NOT NULL,
                PRIMARY KEY (destination, key_json)
            )""",
            """CREATE TABLE resync_requests (
                destination TEXT PRIMARY KEY,
                from_snapshot BIGINT,
                requested_at {float} NOT NULL
            )""",
            """CREATE TABLE leases (
                destination TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at {float} NOT NULL
            )""",
        ),
    ),
    # The ranges cycles started delivering: a cycle cut short leaves its range behind,
    # and later cycles resend its keys until one commits (see daemon/work.py).
    Migration(
        2,
        _for_both(
            """CREATE TABLE attempts (
                destination TEXT NOT NULL,
                from_snapshot BIGINT,
                to_snapshot BIGINT NOT NULL,
                started_at {float} NOT NULL,
                PRIMARY KEY (destination, to_snapshot)
            )""",
            # `sync --force` for a destination another process (the daemon) holds: the
            # holder's next cycle overrides the delete guard once.
            """CREATE TABLE force_requests (
                destination TEXT PRIMARY KEY,
                requested_at {float} NOT NULL
            )""",
        ),
    ),
    # The invalid keys a run found (null or held by more than one row): a sample, as a
    # JSON list of {key, reason, rows}, for `status`. NULL for older runs.
    Migration(3, _for_both("ALTER TABLE runs ADD COLUMN invalid_sample TEXT")),
    # The digest of what each destination holds (state/digest.py); it replaces the
    # mirror-mode ledger, which stays only until a destination's digest is built from it.
    Migration(
        4,
        _for_both(
            """CREATE TABLE digest_segments (
                destination TEXT NOT NULL,
                seq BIGINT NOT NULL,
                kind TEXT NOT NULL,
                rows BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                data {blob} NOT NULL,
                PRIMARY KEY (destination, seq)
            )""",
            """CREATE TABLE digest_meta (
                destination TEXT PRIMARY KEY,
                fingerprint TEXT NOT NULL,
                held_segments INTEGER NOT NULL,
                updated_at {float} NOT NULL
            )""",
            # Destinations synced before: an empty fingerprint says "build the digest from
            # the table at the checkpoint" (daemon/digest.py BEFORE_DIGESTS).
            """INSERT INTO digest_meta (destination, fingerprint, held_segments, updated_at)
            SELECT destination, '', 0, 0 FROM checkpoints""",
        ),
    ),
    # Keys `verify --repair` found differing: the next cycle sends them at their state
    # in B (a delete when B no longer holds them), then its commit clears them.
    Migration(
        5,
        _for_both(
            """CREATE TABLE repairs (
                destination TEXT NOT NULL,
                key_json TEXT NOT NULL,
                op TEXT NOT NULL,
                queued_at {float} NOT NULL,
                PRIMARY KEY (destination, key_json)
            )""",
        ),
    ),
    # The destination's `filter:` as of its checkpoint (canonical text; NULL: none): a
    # changed filter makes the next cycle compare the new subset with the digest.
    Migration(6, _for_both("ALTER TABLE checkpoints ADD COLUMN row_filter TEXT")),
)
LATEST = MIGRATIONS[-1].version

_TRACKING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, applied_at {float} NOT NULL)"
)


def current_version(cur: Cursor) -> int:
    cur.execute("SELECT max(version) FROM schema_migrations")
    row = cur.fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def apply(cur: Cursor, dialect: Dialect, where: str, clock: Clock) -> int:
    """Bring the schema to LATEST and return the version it was at before.

    Raises StateSetupError when the store was written by a newer floe-egress.
    """
    cur.execute(_TRACKING.format(**_TYPES[dialect]))
    before = current_version(cur)
    if before > LATEST:
        raise StateSetupError(
            f"the state store {where} has schema version {before}, newer than this "
            f"floe-egress knows (version {LATEST}): upgrade floe-egress on this host"
        )
    for migration in MIGRATIONS:
        if migration.version <= before:
            continue
        for statement in migration.statements[dialect]:
            cur.execute(statement)
        cur.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (migration.version, clock.time()),
        )
    return before
