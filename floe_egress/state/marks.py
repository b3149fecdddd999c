"""A destination's poll marks (store.PollMarks): everything a cycle reads from the store
besides the table, in one statement, so that an idle poll costs one round trip."""

from __future__ import annotations

from floe_egress.state.cursor import Transactions
from floe_egress.state.queries import int_or_none
from floe_egress.state.store import PollMarks

_MARKS = """SELECT
    (SELECT snapshot_id FROM checkpoints WHERE destination = ?),
    (SELECT updated_at FROM checkpoints WHERE destination = ?),
    (SELECT fingerprint FROM digest_meta WHERE destination = ?),
    (SELECT held_segments FROM digest_meta WHERE destination = ?),
    (SELECT updated_at FROM digest_meta WHERE destination = ?),
    (SELECT count(*) FROM digest_segments WHERE destination = ? AND kind = 'held'),
    (SELECT count(*) FROM digest_segments WHERE destination = ? AND kind = 'reserved'),
    (SELECT count(*) FROM resync_requests WHERE destination = ?)
        + (SELECT count(*) FROM force_requests WHERE destination = ?)
        + (SELECT count(*) FROM repairs WHERE destination = ?)
        + (SELECT count(*) FROM attempts WHERE destination = ?),
    (SELECT count(*) FROM failed_rows WHERE destination = ? AND parked = FALSE),
    (SELECT min(last_seen) FROM failed_rows WHERE destination = ? AND parked = FALSE)"""
_PLACES = _MARKS.count("?")


def read_marks(db: Transactions, destination: str) -> PollMarks:
    with db.transaction(write=False) as cur:
        cur.execute(_MARKS, (destination,) * _PLACES)
        row = cur.fetchone()
    assert row is not None, "a SELECT of scalar subqueries returned no row"
    (snapshot, cp_at, fingerprint, held_segments, digest_at) = row[:5]
    (held, reserved, requests, failed, failed_at) = row[5:]
    return PollMarks(
        checkpoint=None if cp_at is None else (int_or_none(snapshot), float(cp_at)),
        digest=None
        if fingerprint is None
        else (str(fingerprint), int(held_segments), float(digest_at)),
        digest_held=int(held),
        digest_reserved=int(reserved),
        requests=int(requests),
        failed=int(failed),
        failed_last_seen=None if failed_at is None else float(failed_at),
    )


__all__ = ["read_marks"]
