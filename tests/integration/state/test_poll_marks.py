"""`poll_marks`: in one query, everything a cycle reads from the store besides the table,
so that a poll can tell whether anything moved or waits (daemon/polls.py)."""

from __future__ import annotations

import dataclasses
import time

from floe_egress.state import (
    Checkpoint,
    CycleCommit,
    DigestUpdate,
    FailedRowUpdate,
    PollMarks,
    StateStore,
)
from tests.integration.state.helpers import run

NOTHING = PollMarks(None, None, 0, 0, 0, 0, None)


def commit(snapshot_id: int, **changes: object) -> CycleCommit:
    checkpoint = Checkpoint("crm", "gold.customers", "main", snapshot_id, 1, ("id",), 100.5)
    return CycleCommit(checkpoint=checkpoint, run=run("crm", to_snapshot=snapshot_id), **changes)


def test_a_destination_never_synced_has_no_marks(store: StateStore) -> None:
    assert store.poll_marks("crm") == NOTHING


def test_a_commit_shows_as_the_checkpoint_and_the_digest(store: StateStore) -> None:
    store.commit_cycle(commit(7, digest=DigestUpdate("fp", b"segment", 3)))
    marks = store.poll_marks("crm")
    assert marks.checkpoint == (7, 100.5)
    assert marks.digest is not None and marks.digest[:2] == ("fp", 1)
    assert (marks.digest_held, marks.digest_reserved) == (1, 0)
    assert store.poll_marks("erp") == NOTHING, "marks are per destination"

    store.reserve_digest("crm", b"a write under way", 2)
    assert store.poll_marks("crm") == dataclasses.replace(marks, digest_reserved=1)


def test_each_request_counts(store: StateStore) -> None:
    store.request_resync("crm", None)
    assert store.poll_marks("crm").requests == 1
    store.request_force("crm")
    assert store.poll_marks("crm").requests == 2
    store.queue_repairs("crm", [('{"id":1}', "insert"), ('{"id":2}', "delete")])
    assert store.poll_marks("crm").requests == 4
    store.begin_attempt("crm", None, 9)
    assert store.poll_marks("crm").requests == 5
    assert store.poll_marks("erp").requests == 0


def test_failed_rows_count_until_parked_with_their_last_try(store: StateStore) -> None:
    before = time.time()
    failed = [
        FailedRowUpdate('{"id":1}', "upsert", "422"),
        FailedRowUpdate('{"id":2}', "upsert", "422"),
    ]
    store.commit_cycle(commit(1, failed=failed, max_attempts=2))
    marks = store.poll_marks("crm")
    assert marks.failed == 2
    assert marks.failed_last_seen is not None and before <= marks.failed_last_seen <= time.time()

    store.commit_cycle(commit(2, failed=failed[:1], max_attempts=2, resolved=['{"id":2}']))
    marks = store.poll_marks("crm")
    assert marks.failed == 0, "a parked row is not retried by cycles"
    assert marks.failed_last_seen is None
