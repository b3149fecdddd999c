"""Keys queued by `floe-egress verify --repair` for the next cycle of a destination.

Each is a key (canonical key JSON) with the op that makes the destination right again:
`insert` (the destination lacks it), `update` (it holds other values), `delete` (it
holds a key the table does not). The cycle reads them like failed rows, sends their
rows as they are in B, and its commit removes the ones it read (`clear`); keys queued
while it ran stay for the next one.
"""

from __future__ import annotations

from collections.abc import Iterable

from floe_egress.clock import Clock
from floe_egress.state.cursor import Cursor, Transactions
from floe_egress.state.store import RepairKey


class Repairs:
    def __init__(self, db: Transactions, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def queue(self, destination: str, keys: Iterable[tuple[str, str]]) -> int:
        """Queue `(key_json, op)` pairs (a key queued again takes the new op); returns
        how many."""
        now = self._clock.time()
        rows = [(destination, key, op, now) for key, op in dict(keys).items()]
        if not rows:
            return 0
        with self._db.transaction() as cur:
            cur.executemany(
                "INSERT INTO repairs (destination, key_json, op, queued_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (destination, key_json) DO UPDATE SET op = excluded.op, "
                "queued_at = excluded.queued_at",
                rows,
            )
        return len(rows)

    def pending(self, destination: str) -> list[RepairKey]:
        with self._db.transaction(write=False) as cur:
            cur.execute(
                "SELECT key_json, op, queued_at FROM repairs WHERE destination = ? "
                "ORDER BY queued_at, key_json",
                (destination,),
            )
            rows = cur.fetchall()
        return [RepairKey(str(k), str(op), float(at)) for k, op, at in rows]

    @staticmethod
    def clear(cur: Cursor, destination: str, queued_until: float) -> None:
        """In a commit: the keys queued up to `queued_until` (those the cycle read)."""
        cur.execute(
            "DELETE FROM repairs WHERE destination = ? AND queued_at <= ?",
            (destination, queued_until),
        )


__all__ = ["Repairs"]
