"""The digest of what each destination holds, as the store keeps it: segments.

A segment is an opaque blob (Parquet, written and read by `floe_egress.changes.digest`:
the store never looks inside) of one of two kinds:

- `held`: what the destination confirmed, written by the cycle's commit in the same
  transaction as the checkpoint. Later segments override earlier ones key by key.
- `reserved`: what a write may deliver, written in a transaction of its own before the
  write is sent. A commit removes every reserved segment: by then the cycle has sent
  (again) every key a cycle cut short may have left behind.

`digest_meta` says which fingerprint the held segments were written with and how many
there are, so a segment gone missing is noticed; each segment carries the sha256 of
its bytes, so a damaged one is too. The digest is never trusted when either is off.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from floe_egress.state.cursor import Cursor, Transactions
from floe_egress.state.faults import Faults
from floe_egress.state.store import DigestSegment, DigestUpdate, StoredDigest

COPY_CHUNK = 16 * 2**20
"""Bytes of a segment read at once by `Digests.copy`."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Digests:
    """The digest tables of one store; `faults` is called before each segment write."""

    def __init__(self, db: Transactions, faults: Faults | None) -> None:
        self._db = db
        self._faults = faults

    def read(self, destination: str, *, data: bool) -> StoredDigest | None:
        """Every segment of `destination` in order, read in one transaction (without
        their bytes unless `data`); None when it has neither segments nor meta."""
        with self._db.transaction(write=False) as cur:
            cur.execute(
                "SELECT fingerprint, held_segments FROM digest_meta WHERE destination = ?",
                (destination,),
            )
            meta = cur.fetchone()
            cur.execute(
                f"SELECT seq, kind, rows, sha256, {'data' if data else 'NULL'} "
                "FROM digest_segments WHERE destination = ? ORDER BY seq",
                (destination,),
            )
            rows = cur.fetchall()
        if meta is None and not rows:
            return None
        segments = tuple(
            DigestSegment(int(seq), str(kind), int(count), str(sha), bytes(blob or b""))
            for seq, kind, count, sha, blob in rows
        )
        return StoredDigest(
            fingerprint=None if meta is None else str(meta[0]),
            held_segments=0 if meta is None else int(meta[1]),
            segments=segments,
        )

    def copy(self, destination: str, seq: int, out: BinaryIO) -> str | None:
        """Write one segment's bytes to `out`, COPY_CHUNK bytes at a time (a large
        segment is most of a digest: it is never held whole); its sha256, or None when
        it is gone."""
        digest = hashlib.sha256()
        with self._db.transaction(write=False) as cur:
            start = 1
            while True:  # no length(data) first: SQLite would read the whole blob for it
                cur.execute(
                    "SELECT substr(data, ?, ?) FROM digest_segments "
                    "WHERE destination = ? AND seq = ?",
                    (start, COPY_CHUNK, destination, seq),
                )
                row = cur.fetchone()
                if row is None:
                    return None
                chunk = bytes(row[0] or b"")
                digest.update(chunk)
                out.write(chunk)
                if len(chunk) < COPY_CHUNK:
                    break
                start += COPY_CHUNK
        return digest.hexdigest()

    def reserve(self, destination: str, data: bytes, rows: int) -> None:
        with self._db.transaction() as cur:
            self._insert(cur, destination, "reserved", data, rows)

    def apply(self, cur: Cursor, destination: str, update: DigestUpdate, now: float) -> None:
        """A cycle's digest change, in the caller's transaction (see the module doc)."""
        if update.replace:
            cur.execute("DELETE FROM digest_segments WHERE destination = ?", (destination,))
        else:
            cur.execute(
                "DELETE FROM digest_segments WHERE destination = ? AND kind = 'reserved'",
                (destination,),
            )
        if update.data is not None:
            self._insert(cur, destination, "held", update.data, update.rows)
        cur.execute(
            "SELECT count(*) FROM digest_segments WHERE destination = ? AND kind = 'held'",
            (destination,),
        )
        row = cur.fetchone()
        held = int(row[0]) if row else 0
        cur.execute(
            "INSERT INTO digest_meta (destination, fingerprint, held_segments, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, held_segments = excluded.held_segments, "
            "updated_at = excluded.updated_at",
            (destination, update.fingerprint, held, now),
        )
        if update.drop_ledger:
            cur.execute("DELETE FROM ledger WHERE destination = ?", (destination,))

    def _insert(self, cur: Cursor, destination: str, kind: str, data: bytes, rows: int) -> None:
        if self._faults is not None:
            self._faults("digest_write", cur)
        cur.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM digest_segments WHERE destination = ?",
            (destination,),
        )
        row = cur.fetchone()
        seq = int(row[0]) if row else 1
        cur.execute(
            "INSERT INTO digest_segments (destination, seq, kind, rows, sha256, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (destination, seq, kind, rows, sha256_of(data), data),
        )


__all__ = ["Digests", "sha256_of"]
