"""Leases: which daemon delivers a destination, for how long.

Expiry times are compared with the DATABASE clock (`now_sql`), never the caller's, so
daemons whose clocks disagree still agree on who holds a destination.
"""

from __future__ import annotations

from floe_egress.state.cursor import Transactions


class Leases:
    """The leases table of one store; `now_sql` is its database's clock in Unix seconds."""

    def __init__(self, db: Transactions, now_sql: str) -> None:
        self._db = db
        self._now = now_sql

    def acquire(self, destination: str, owner: str, ttl_seconds: float) -> bool:
        # One atomic upsert: it inserts, renews our own lease or takes an expired one;
        # otherwise its WHERE leaves the row alone and RETURNING yields nothing.
        with self._db.transaction() as cur:
            cur.execute(
                f"INSERT INTO leases (destination, owner, expires_at) "
                f"VALUES (?, ?, {self._now} + ?) "
                f"ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, "
                f"expires_at = excluded.expires_at "
                f"WHERE leases.owner = excluded.owner OR leases.expires_at < {self._now} "
                f"RETURNING owner",
                (destination, owner, float(ttl_seconds)),
            )
            return cur.fetchone() is not None

    def take_over(self, destination: str, dead_owner: str, owner: str, ttl_seconds: float) -> bool:
        with self._db.transaction() as cur:
            cur.execute(
                f"UPDATE leases SET owner = ?, expires_at = {self._now} + ? "
                f"WHERE destination = ? AND owner = ? RETURNING owner",
                (owner, float(ttl_seconds), destination, dead_owner),
            )
            return cur.fetchone() is not None

    def release(self, destination: str, owner: str) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM leases WHERE destination = ? AND owner = ?", (destination, owner)
            )

    def holder(self, destination: str) -> str | None:
        with self._db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT owner FROM leases WHERE destination = ? AND expires_at >= {self._now}",
                (destination,),
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])
