"""The mirror-mode ledger of earlier versions: one row hash per key sent.

The digest (digest.py) replaced it. A destination that still has ledger rows gets its
digest built from them once (its keys, for the deletes of a mirror resync), after which
that commit drops them; until then they are only read, in bounded batches.
"""

from __future__ import annotations

from collections.abc import Iterator

from floe_egress.state.cursor import Transactions
from floe_egress.state.queries import count_rows
from floe_egress.state.store import LedgerEntry


class Ledger:
    """The ledger table of one store, read only."""

    def __init__(self, db: Transactions) -> None:
        self._db = db

    def scan(self, destination: str, batch_size: int) -> Iterator[list[LedgerEntry]]:
        """Every entry of `destination` in key order, `batch_size` at a time.

        Each batch is its own short read, so no transaction stays open while the caller
        works.
        """
        # Every key_json is a JSON object, so it sorts after the empty string.
        after = ""
        while True:
            with self._db.transaction(write=False) as cur:
                cur.execute(
                    "SELECT key_json, row_hash FROM ledger WHERE destination = ? "
                    "AND key_json > ? ORDER BY key_json LIMIT ?",
                    (destination, after, batch_size),
                )
                rows = cur.fetchall()
            if not rows:
                return
            yield [LedgerEntry(k, int(h)) for k, h in rows]
            after = rows[-1][0]

    def size(self, destination: str) -> int:
        with self._db.transaction(write=False) as cur:
            return count_rows(cur, "ledger", destination)
