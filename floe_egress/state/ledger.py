"""The mirror-mode ledger: what each destination was last sent, one row hash per key.

It can hold millions of rows per destination, so writes go through the cursor's bulk
methods and reads come back in bounded batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from floe_egress.state.cursor import Cursor, Transactions
from floe_egress.state.faults import Faults
from floe_egress.state.queries import count_rows, last_per_key
from floe_egress.state.store import LedgerEntry


class Ledger:
    """The ledger table of one store; `faults` is called before each write (faults.py)."""

    def __init__(self, db: Transactions, faults: Faults | None) -> None:
        self._db = db
        self._faults = faults

    def apply(
        self,
        cur: Cursor,
        destination: str,
        upserts: Sequence[LedgerEntry],
        deletes: Sequence[str],
        *,
        replace: bool,
    ) -> None:
        """A cycle's ledger changes, in the caller's transaction: `upserts` (distinct
        keys) after removing `deletes`, or after removing every key when `replace`."""
        if replace:
            cur.execute("DELETE FROM ledger WHERE destination = ?", (destination,))
        else:
            cur.delete_keys("ledger", destination, deletes)
        self._write(cur, destination, upserts, emptied=replace)

    def reserve(self, destination: str, entries: Sequence[LedgerEntry]) -> None:
        distinct = last_per_key(entries)
        if distinct:
            with self._db.transaction() as cur:
                self._write(cur, destination, distinct, emptied=False)

    def _write(
        self, cur: Cursor, destination: str, entries: Sequence[LedgerEntry], *, emptied: bool
    ) -> None:
        if self._faults is not None:
            self._faults("ledger_write", cur)
        cur.write_ledger(destination, entries, emptied=emptied)

    def lookup(self, destination: str, key_jsons: Iterable[str]) -> dict[str, int]:
        keys = list(dict.fromkeys(key_jsons))
        if not keys:
            return {}
        with self._db.transaction(write=False) as cur:
            return {k: int(h) for k, h in cur.select_ledger(destination, keys)}

    def scan(self, destination: str, batch_size: int) -> Iterator[list[LedgerEntry]]:
        """Every entry of `destination` in key order, `batch_size` at a time.

        Each batch is its own short read, so no transaction stays open while the caller
        works: entries written meanwhile may or may not be seen.
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
