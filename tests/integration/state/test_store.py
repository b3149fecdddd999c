"""The StateStore contract, on both backends (see conftest.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from floe_egress.errors import CheckpointError
from floe_egress.state import (
    Checkpoint,
    CycleCommit,
    DigestUpdate,
    FailedRowUpdate,
    RunRecord,
    StateStore,
    migrations,
    open_store,
)
from floe_egress.state.postgres import PostgresStore
from floe_egress.state.urls import redact_url
from tests.integration.state.helpers import (
    Backend,
    ClockAhead,
    contend,
    open_in_processes,
    open_in_threads,
    open_losing_connection,
    run,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def checkpoint(destination: str = "crm", snapshot_id: int | None = 1) -> Checkpoint:
    return Checkpoint(
        destination=destination,
        table="gold.customers",
        ref="main",
        snapshot_id=snapshot_id,
        snapshot_timestamp_ms=1_700_000_000_000,
        key=("tenant", "id"),
        updated_at=1_700_000_001.25,
    )


def commit(snapshot_id: int | None = 1, destination: str = "crm", **changes: Any) -> CycleCommit:
    return CycleCommit(
        checkpoint=checkpoint(destination, snapshot_id),
        run=run(destination, to_snapshot=snapshot_id),
        **changes,
    )


def key(i: int) -> str:
    return f'{{"id":{i}}}'  # what floe_egress.changes.keys.key_json makes of {"id": i}


def segments_of(store: StateStore, destination: str = "crm") -> list[tuple[str, bytes]]:
    """(kind, bytes) of each digest segment of `destination`, in order."""
    stored = store.read_digest(destination)
    return [] if stored is None else [(s.kind, s.data) for s in stored.segments]


def held(data: bytes, rows: int = 1, *, replace: bool = False) -> DigestUpdate:
    return DigestUpdate("fp-1", data, rows, replace=replace)


# --- checkpoints --------------------------------------------------------------------------


@pytest.mark.parametrize("snapshot_id", [INT64_MAX, INT64_MIN, -1, None])
def test_checkpoint_round_trips_signed_64_bit_snapshot_ids(
    store: StateStore, snapshot_id: int | None
) -> None:
    assert store.get_checkpoint("crm") is None
    store.commit_cycle(commit(snapshot_id))

    assert store.get_checkpoint("crm") == checkpoint("crm", snapshot_id)


def test_checkpoint_keeps_the_filter_it_was_synced_with(store: StateStore) -> None:
    written = dataclasses.replace(checkpoint(), row_filter="plan = 'pro' and mrr > 1000")
    store.commit_cycle(CycleCommit(checkpoint=written, run=run("crm", to_snapshot=1)))
    assert store.get_checkpoint("crm") == written
    store.commit_cycle(commit(2))
    found = store.get_checkpoint("crm")
    assert found is not None and found.row_filter is None, "the filter was removed"


def test_commit_moves_the_checkpoint_of_its_destination_only(store: StateStore) -> None:
    store.commit_cycle(commit(1, "crm"))
    store.commit_cycle(commit(2, "erp"))
    store.commit_cycle(commit(3, "crm"))

    assert store.get_checkpoint("crm") == checkpoint("crm", 3)
    assert store.get_checkpoint("erp") == checkpoint("erp", 2)


# --- commit_cycle is all or nothing -------------------------------------------------------


@pytest.mark.parametrize("failure", ["value_out_of_range", "connection_lost"])
def test_a_failing_commit_writes_nothing(backend: Backend, store: StateStore, failure: str) -> None:
    store.commit_cycle(
        commit(
            1,
            failed=[FailedRowUpdate(key(1), "upsert", "422 invalid email")],
            digest=held(b"first segment"),
        )
    )
    store.request_resync("crm", None)
    store.reserve_digest("crm", b"reserved before the failing commit", 3)
    before = (store.failed_rows("crm"), segments_of(store), store.runs("crm"))

    committer = store
    record = run("crm", to_snapshot=2)
    if failure == "value_out_of_range":
        record = dataclasses.replace(record, inserted=2**64)
    else:
        committer = open_losing_connection(backend)
    failing = dataclasses.replace(
        commit(
            2,
            failed=[
                FailedRowUpdate(key(1), "upsert", "still invalid"),
                FailedRowUpdate(key(2), "x", "y"),
            ],
            resolved=[key(1)],
            digest=held(b"second segment", replace=True),
            clear_resync=1.0,
        ),
        run=record,
    )
    with pytest.raises(CheckpointError, match="state store"):
        committer.commit_cycle(failing)

    if committer is not store:
        committer.close()
    after = open_store(backend.url)
    try:
        assert after.get_checkpoint("crm") == checkpoint("crm", 1)
        assert (after.failed_rows("crm"), segments_of(after), after.runs("crm")) == before
        assert after.pending_resync("crm") is not None
    finally:
        after.close()


@pytest.mark.postgres
def test_postgres_store_reconnects_after_losing_a_connection(pg_database: str) -> None:
    store = open_losing_connection(Backend("postgres", pg_database))
    with pytest.raises(CheckpointError):
        store.commit_cycle(commit(1, digest=held(b"segment")))

    store.commit_cycle(commit(2, digest=held(b"segment")))
    assert store.get_checkpoint("crm") == checkpoint("crm", 2)
    store.close()


@pytest.mark.postgres
def test_postgres_store_recovers_after_one_failed_call_when_the_server_drops_connections(
    pg_database: str,
) -> None:
    store = PostgresStore(pg_database)
    holders = 4
    barrier = threading.Barrier(holders)

    def hold_a_connection(_: int) -> None:
        with store.transaction():
            barrier.wait(timeout=30)

    with ThreadPoolExecutor(holders) as pool:
        list(pool.map(hold_a_connection, range(holders)))
    admin = Backend("postgres", pg_database)
    others = "datname = current_database() AND pid <> pg_backend_pid()"
    admin.raw(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}")
    deadline = time.monotonic() + 10
    while admin.raw(f"SELECT count(*) FROM pg_stat_activity WHERE {others}") != [(0,)]:
        assert time.monotonic() < deadline, "backends did not exit"
        time.sleep(0.05)

    with pytest.raises(CheckpointError):
        store.ping()
    store.ping()
    store.close()


# --- failed rows --------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_failed_rows_count_attempts_and_park_at_max_attempts(
    store: StateStore, max_attempts: int
) -> None:
    seen: list[tuple[int, bool, str]] = []
    for attempt in range(1, max_attempts + 2):
        failure = FailedRowUpdate(key(7), "upsert", f"422 attempt {attempt}")
        store.commit_cycle(commit(attempt, failed=[failure], max_attempts=max_attempts))
        (row,) = store.failed_rows("crm")
        seen.append((row.attempts, row.parked, row.reason))

    expected = [(n, n >= max_attempts, f"422 attempt {n}") for n in range(1, max_attempts + 2)]
    assert seen == expected
    assert store.failed_rows("crm", include_parked=False) == []
    assert store.failed_row_count("crm") == 1


def test_failed_row_keeps_first_seen_and_moves_last_seen(store: StateStore) -> None:
    store.commit_cycle(commit(1, failed=[FailedRowUpdate(key(1), "upsert", "a")]))
    (first,) = store.failed_rows("crm")
    time.sleep(0.01)
    store.commit_cycle(commit(2, failed=[FailedRowUpdate(key(1), "delete", "b")]))
    (second,) = store.failed_rows("crm")

    assert second.first_seen == first.first_seen
    assert second.last_seen > first.last_seen
    assert (second.op, second.reason, second.attempts) == ("delete", "b", 2)


def test_resolved_rows_leave_failed_rows(store: StateStore) -> None:
    failures = [FailedRowUpdate(key(i), "upsert", "rejected") for i in range(4)]
    store.commit_cycle(commit(1, failed=failures))
    store.commit_cycle(commit(2, resolved=[key(0), key(2), key(99)]))

    assert [r.key_json for r in store.failed_rows("crm")] == [key(1), key(3)]
    assert store.failed_row_count("crm") == 2
    assert store.failed_row_count("erp") == 0


def test_a_key_failing_twice_in_one_commit_counts_one_attempt(store: StateStore) -> None:
    twice = [FailedRowUpdate(key(1), "upsert", "first"), FailedRowUpdate(key(1), "upsert", "last")]
    store.commit_cycle(commit(1, failed=twice))

    (row,) = store.failed_rows("crm")
    assert (row.attempts, row.reason) == (1, "last")


# --- runs ---------------------------------------------------------------------------------


def test_runs_newest_first_with_last_run(store: StateStore) -> None:
    first = store.record_run(run("crm", started=10.0))
    store.record_run(run("erp", started=11.0))
    store.commit_cycle(CycleCommit(checkpoint("crm", 5), run("crm", started=12.0, to_snapshot=5)))
    third = store.record_run(
        RunRecord("crm", 13.0, 14.5, "failed", "diff", 5, 6, 1, 2, 3, 4, 5, "sink down")
    )

    runs = store.runs("crm")
    assert [r.started_at for r in runs] == [13.0, 12.0, 10.0]
    assert runs[0].run_id == third
    assert runs[-1].run_id == first
    assert (runs[0].status, runs[0].error, runs[0].duration_seconds) == ("failed", "sink down", 1.5)
    assert (runs[0].inserted, runs[0].updated, runs[0].deleted) == (1, 2, 3)
    assert (runs[0].invalid, runs[0].failed, runs[0].from_snapshot) == (4, 5, 5)
    assert [r.started_at for r in store.runs("crm", limit=2)] == [13.0, 12.0]
    assert store.last_run("crm") == runs[0]
    assert store.last_run("unknown") is None


def test_runs_keep_the_newest_per_destination(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from floe_egress.state import queries

    monkeypatch.setattr(queries, "RUNS_KEPT", 5)
    for i in range(8):
        store.record_run(run("crm", started=float(i)))
        store.record_run(run("erp", started=100.0 + i))
    store.commit_cycle(CycleCommit(checkpoint("crm", 5), run("crm", started=8.0, to_snapshot=5)))

    assert [r.started_at for r in store.runs("crm", limit=50)] == [8.0, 7.0, 6.0, 5.0, 4.0]
    assert [r.started_at for r in store.runs("erp", limit=50)] == [
        107.0,
        106.0,
        105.0,
        104.0,
        103.0,
    ]


# --- resync requests ----------------------------------------------------------------------


def test_resync_request_is_replaced_and_cleared_by_a_commit(store: StateStore) -> None:
    assert store.pending_resync("crm") is None
    store.request_resync("crm", None)
    full = store.pending_resync("crm")
    store.request_resync("crm", INT64_MIN)
    from_snapshot = store.pending_resync("crm")
    store.commit_cycle(commit(1))
    kept = store.pending_resync("crm")
    assert kept is not None
    store.commit_cycle(commit(2, clear_resync=kept.requested_at - 1))
    newer_survives = store.pending_resync("crm")
    store.commit_cycle(commit(3, clear_resync=kept.requested_at))

    assert full is not None
    assert full.from_snapshot is None
    assert abs(full.requested_at - time.time()) < 60
    assert from_snapshot is not None
    assert from_snapshot.from_snapshot == INT64_MIN
    assert kept == from_snapshot
    assert newer_survives == kept, "a request made after the cycle read its own is kept"
    assert store.pending_resync("crm") is None


def test_repair_keys_are_queued_then_cleared_by_the_commit_that_sent_them(
    store: StateStore,
) -> None:
    empty = store.pending_repairs("crm")
    store.queue_repairs("crm", [(key(1), "insert"), (key(2), "update"), (key(3), "delete")])
    store.queue_repairs("crm", [(key(2), "insert")])
    store.queue_repairs("other", [(key(1), "update")])
    read = store.pending_repairs("crm")
    store.commit_cycle(commit(1))
    kept_without_clear = store.pending_repairs("crm")
    store.queue_repairs("crm", [(key(4), "update")])  # while a cycle runs
    store.commit_cycle(commit(2, clear_repairs=max(r.queued_at for r in read)))

    assert empty == []
    assert {(r.key_json, r.op) for r in read} == {
        (key(1), "insert"),
        (key(2), "insert"),
        (key(3), "delete"),
    }
    assert kept_without_clear == read
    assert [(r.key_json, r.op) for r in store.pending_repairs("crm")] == [(key(4), "update")]
    assert [(r.key_json, r.op) for r in store.pending_repairs("other")] == [(key(1), "update")]


# --- digest -------------------------------------------------------------------------------

ODD_KEYS = [
    json.dumps({"id": 'quote " comma , newline \n tab \t backslash \\'}),
    json.dumps({"name": "Zoë 東京 🚀"}, ensure_ascii=False),
    json.dumps({"id": ""}),
]


def test_digest_segments_accumulate_replace_and_lose_their_reservations_at_commit(
    store: StateStore,
) -> None:
    big = os.urandom(8 * 2**20)  # a digest of a few million keys is a blob of this size
    store.commit_cycle(commit(1, destination="erp", digest=held(b"erp")))
    store.commit_cycle(commit(1, digest=held(big, 1_000_000, replace=True)))
    store.reserve_digest("crm", b"what write 1 may deliver", 10)
    store.reserve_digest("crm", b"what write 2 may deliver", 20)
    assert segments_of(store) == [
        ("held", big),
        ("reserved", b"what write 1 may deliver"),
        ("reserved", b"what write 2 may deliver"),
    ]

    store.commit_cycle(commit(2, digest=held(b"cycle 2")))
    assert segments_of(store) == [("held", big), ("held", b"cycle 2")]
    stored = store.read_digest("crm")
    assert stored is not None
    assert (stored.fingerprint, stored.held_segments) == ("fp-1", 2)
    assert [s.rows for s in stored.segments] == [1_000_000, 1]
    assert [s.seq for s in stored.segments] == sorted(s.seq for s in stored.segments)

    store.commit_cycle(commit(3, digest=DigestUpdate("fp-2", b"all of it", 5, replace=True)))
    assert segments_of(store) == [("held", b"all of it")]
    assert segments_of(store, "erp") == [("held", b"erp")], "other destinations keep theirs"
    no_data = store.read_digest("crm", data=False)
    assert no_data is not None
    assert [(s.kind, s.data, s.rows) for s in no_data.segments] == [("held", b"", 5)]
    assert (no_data.fingerprint, no_data.held_segments) == ("fp-2", 1)


def test_a_commit_without_a_segment_still_drops_the_reservations(store: StateStore) -> None:
    store.commit_cycle(commit(1, digest=held(b"base")))
    store.reserve_digest("crm", b"a write that failed", 3)
    store.commit_cycle(commit(2, digest=DigestUpdate("fp-1", None)))
    assert segments_of(store) == [("held", b"base")]
    store.commit_cycle(commit(3))
    assert segments_of(store) == [("held", b"base")], "a commit without a digest leaves it"


def test_reserved_segments_are_written_at_once_and_outlive_a_lost_cycle(
    store: StateStore, backend: Backend
) -> None:
    assert store.read_digest("crm") is None
    store.reserve_digest("crm", b"keys a crashed first cycle may have sent", 7)
    other = open_store(backend.url)
    try:
        stored = other.read_digest("crm")
    finally:
        other.close()
    assert stored is not None
    assert (stored.fingerprint, stored.held_segments) == (None, 0)
    assert [(s.kind, s.data) for s in stored.segments] == [
        ("reserved", b"keys a crashed first cycle may have sent")
    ]


def test_a_segment_keeps_the_checksum_of_its_bytes(store: StateStore) -> None:
    data = b"\x00\x01 binary \xff"
    store.commit_cycle(commit(1, digest=held(data)))
    stored = store.read_digest("crm")
    assert stored is not None
    assert stored.segments[0].sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("batch_size", [7, 50_000])
def test_a_ledger_of_an_earlier_version_is_read_in_key_order_then_dropped(
    backend: Backend, store: StateStore, batch_size: int
) -> None:
    keys = [key(i) for i in range(20)] + ODD_KEYS
    for i, k in enumerate(keys):
        backend.raw(
            "INSERT INTO ledger (destination, key_json, row_hash) VALUES (?, ?, ?)",
            ("crm", k, i - 10),
        )
    backend.raw(
        "INSERT INTO ledger (destination, key_json, row_hash) VALUES ('erp', ?, 1)", (key(1),)
    )
    assert store.ledger_size("crm") == len(keys)
    batches = list(store.ledger_scan("crm", batch_size=batch_size))
    assert all(0 < len(b) <= batch_size for b in batches)
    assert [e.key_json for b in batches for e in b] == sorted(keys)

    store.commit_cycle(commit(1, digest=DigestUpdate("fp-1", b"built", 21, drop_ledger=True)))
    assert store.ledger_size("crm") == 0
    assert store.ledger_size("erp") == 1


# --- leases -------------------------------------------------------------------------------


def test_lease_is_exclusive_until_it_expires(store: StateStore) -> None:
    assert store.acquire_lease("crm", "daemon-a", 0.5)
    assert not store.acquire_lease("crm", "daemon-b", 0.5)
    assert store.lease_holder("crm") == "daemon-a"
    assert store.acquire_lease("erp", "daemon-b", 0.5)

    time.sleep(0.6)
    assert store.lease_holder("crm") is None
    assert store.acquire_lease("crm", "daemon-b", 10)
    assert not store.acquire_lease("crm", "daemon-a", 10)
    assert store.lease_holder("crm") == "daemon-b"


def test_renewing_a_lease_keeps_it(store: StateStore) -> None:
    assert store.acquire_lease("crm", "daemon-a", 0.5)
    time.sleep(0.3)
    assert store.acquire_lease("crm", "daemon-a", 0.5)
    time.sleep(0.3)

    assert not store.acquire_lease("crm", "daemon-b", 0.5)
    assert store.lease_holder("crm") == "daemon-a"


def test_only_the_holder_releases_a_lease(store: StateStore) -> None:
    assert store.acquire_lease("crm", "daemon-a", 30)
    store.release_lease("crm", "daemon-b")
    assert store.lease_holder("crm") == "daemon-a"

    store.release_lease("crm", "daemon-a")
    assert store.lease_holder("crm") is None
    assert store.acquire_lease("crm", "daemon-b", 30)


def test_lease_expiry_uses_the_database_clock(store: StateStore, backend: Backend) -> None:
    assert store.acquire_lease("crm", "daemon-a", 30)
    ahead = open_store(backend.url, clock=ClockAhead(3600))
    try:
        assert not ahead.acquire_lease("crm", "daemon-b-clock-an-hour-ahead", 30)
        assert ahead.lease_holder("crm") == "daemon-a"
    finally:
        ahead.close()


def test_the_store_stamps_what_it_records_with_its_clock(backend: Backend) -> None:
    ahead = open_store(backend.url, clock=ClockAhead(3600))
    try:
        ahead.request_resync("crm", None)
        ahead.request_force("crm")
        ahead.begin_attempt("crm", None, 1)
        resync, attempts = ahead.pending_resync("crm"), ahead.pending_attempts("crm")
        ahead.commit_cycle(commit(1, failed=[FailedRowUpdate(key(1), "upsert", "422")]))
        failed = ahead.failed_rows("crm")
        assert resync is not None
        stamps = {
            "resync": resync.requested_at,
            "force": ahead.pending_force("crm"),
            "attempt": attempts[0].started_at,
            "failed first_seen": failed[0].first_seen,
            "failed last_seen": failed[0].last_seen,
            "migration": backend.raw("SELECT min(applied_at) FROM schema_migrations")[0][0],
        }
    finally:
        ahead.close()

    hours_ahead = {name: round((at - time.time()) / 3600) for name, at in stamps.items()}
    assert hours_ahead == dict.fromkeys(stamps, 1)


@pytest.fixture(params=["one shared store", "a store per thread"])
def contenders(request: pytest.FixtureRequest, backend: Backend) -> Iterator[list[StateStore]]:
    threads = 12  # more than the PostgreSQL pool's 8 connections
    if request.param == "one shared store":
        shared = open_store(backend.url)
        yield [shared] * threads
        shared.close()
        return
    stores = [open_store(backend.url) for _ in range(threads)]
    yield stores
    for s in stores:
        s.close()


def test_lease_contention_from_many_threads_has_one_winner(contenders: list[StateStore]) -> None:
    for round_ in range(2):
        destination = f"dest-{round_}"
        winners = contend(contenders, destination, ttl=0.2)
        assert len(winners) == 1, f"free lease: {winners}"
        assert contenders[0].lease_holder(destination) == winners[0]

        time.sleep(0.3)
        winners = contend(contenders, destination, ttl=30)
        assert len(winners) == 1, f"expired lease: {winners}"
        assert contenders[0].lease_holder(destination) == winners[0]


# --- migrations and opening ---------------------------------------------------------------

ALL_VERSIONS = [(m.version,) for m in migrations.MIGRATIONS]


def test_opening_twice_migrates_once_and_keeps_data(backend: Backend) -> None:
    first = open_store(backend.url)
    first.commit_cycle(commit(INT64_MAX))
    first.close()
    second = open_store(backend.url)
    try:
        assert second.get_checkpoint("crm") == checkpoint("crm", INT64_MAX)
    finally:
        second.close()

    assert backend.raw("SELECT version FROM schema_migrations ORDER BY version") == ALL_VERSIONS


def test_an_older_store_gains_the_invalid_sample_of_runs_and_keeps_its_runs(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as before:
        before.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
        before.setattr(migrations, "LATEST", 2)
        open_store(backend.url).close()
    assert backend.raw("SELECT max(version) FROM schema_migrations") == [(2,)]
    backend.raw(  # a run as floe-egress wrote it before
        "INSERT INTO runs (destination, started_at, finished_at, status, plan, inserted, "
        "updated, deleted, invalid, failed) VALUES ('crm', 10.0, 10.5, 'ok', 'full', 1, 0, "
        "0, 3, 0)"
    )

    store = open_store(backend.url)
    try:
        sample = ({"key": {"id": 3}, "reason": "duplicate_key", "rows": 2},)
        store.record_run(
            dataclasses.replace(run("crm", started=11.0), invalid=2, invalid_sample=sample)
        )
        newest, oldest = store.runs("crm")
    finally:
        store.close()
    assert backend.raw("SELECT version FROM schema_migrations ORDER BY version") == ALL_VERSIONS
    assert (newest.invalid, newest.invalid_sample) == (2, sample)
    assert (oldest.started_at, oldest.invalid, oldest.invalid_sample) == (10.0, 3, ())


def test_an_older_store_marks_its_destinations_as_synced_before_digests(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as before:
        before.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        before.setattr(migrations, "LATEST", 3)
        open_store(backend.url).close()
    # A checkpoint as that version wrote it (today's commit writes later columns).
    backend.raw(
        "INSERT INTO checkpoints (destination, source_table, ref, snapshot_id, "
        "snapshot_timestamp_ms, key_json, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("crm", "gold.customers", "main", 7, 0, '["id"]', 1.0),
    )

    store = open_store(backend.url)
    try:
        stored = store.read_digest("crm")
        fresh = store.read_digest("erp")
    finally:
        store.close()
    assert stored is not None
    assert (stored.fingerprint, stored.held_segments, stored.segments) == ("", 0, ())
    assert fresh is None, "a destination never synced has no digest yet"


def test_a_newer_schema_asks_to_upgrade(backend: Backend) -> None:
    open_store(backend.url).close()
    backend.raw("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (999, 0.0))

    with pytest.raises(CheckpointError, match=r"schema version 999.*upgrade floe-egress"):
        open_store(backend.url)


@pytest.mark.parametrize("open_at_once", [open_in_threads, open_in_processes])
def test_concurrent_first_opens_migrate_once(
    backend: Backend, open_at_once: Callable[[str, int], None]
) -> None:
    open_at_once(backend.url, 4)

    assert backend.raw("SELECT version FROM schema_migrations ORDER BY version") == ALL_VERSIONS
    assert backend.raw("SELECT count(*) FROM runs") == [(4,)]


def test_ping_answers_and_a_closed_store_says_so(store: StateStore) -> None:
    store.ping()
    store.close()

    with pytest.raises(CheckpointError, match="closed"):
        store.ping()


# --- files and URLs -----------------------------------------------------------------------


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state" / "state.db"
    store = open_store(f"sqlite:///{path}")
    store.commit_cycle(commit(1, digest=held(b"segment")))

    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in path.parent.iterdir()}
    store.close()
    assert modes["state.db"] == 0o600
    assert modes["state.db-wal"] == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700


def test_sqlite_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///rel/state.db").close()

    assert (tmp_path / "rel" / "state.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://floe:s3cret-Pw@127.0.0.1:1/state",
        "postgres://floe:s3cret-Pw@127.0.0.1:1/state?schema=x",
        "postgresql://floe:s3cret-Pw@bad@127.0.0.1:1/state",
        "postgresql://floe:s3cret%2FPw@127.0.0.1:1/state",
        "postgresql://floe@127.0.0.1:1/state?password=s3cret-Pw&sslmode=disable",
        "postgresql://floe:s3cret-Pw@127.0.0.1:notaport/state",
        "postgresql://floe:s3cret%zzPw@127.0.0.1/state",
        "mysql://floe:s3cret-Pw@127.0.0.1/state",
    ],
)
def test_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        open_store(url)

    shown = "".join(traceback.format_exception(caught.value))
    assert "s3cret" not in shown
    assert "***" in str(caught.value)
    assert "127.0.0.1" in str(caught.value) or "floe:***@" in str(caught.value)


@pytest.mark.postgres
def test_url_redacted_hides_the_password(pg_database: str) -> None:
    url = pg_database.replace("postgresql://postgres@", "postgresql://postgres:s3cret-Pw@")
    store = open_store(url)  # trust authentication ignores the password
    try:
        assert "s3cret" not in store.url_redacted
        assert store.url_redacted == redact_url(url)
        assert "postgres:***@127.0.0.1" in store.url_redacted
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_search_path_option_must_name_an_existing_schema(
    pg_database: str,
) -> None:
    with pytest.raises(CheckpointError, match="search_path names no existing schema"):
        open_store(f"{pg_database}?options=-csearch_path%3Dmissing")

    open_store(f"{pg_database}?schema=present").close()
    store = open_store(f"{pg_database}?options=-csearch_path%3Dpresent")
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///", "names no file"),
        ("sqlite:/state.db", "names no file"),
        ("sqlite:///state.db?mode=ro", "query parameters"),
        ("postgresql://u@h/db?schema=Bad-Name", "not a plain lowercase identifier"),
        ("redis://localhost/0", "unsupported scheme 'redis'"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        open_store(url)


def test_attempts_accumulate_until_a_commit_clears_them(backend: Backend) -> None:
    store = open_store(backend.url)
    try:
        assert store.pending_attempts("crm") == []
        store.begin_attempt("crm", 1, INT64_MAX)
        store.begin_attempt("crm", 1, INT64_MAX)
        store.begin_attempt("crm", None, 5)
        attempts = store.pending_attempts("crm")
        assert [(a.from_snapshot, a.to_snapshot) for a in attempts] == [(1, INT64_MAX), (None, 5)]
        store.begin_attempt("other", 1, 2)
        store.commit_cycle(commit(5))
        assert store.pending_attempts("crm") == []
        assert len(store.pending_attempts("other")) == 1
    finally:
        store.close()


def test_a_lease_is_taken_over_only_from_the_named_dead_owner(backend: Backend) -> None:
    store = open_store(backend.url)
    try:
        assert store.acquire_lease("crm", "host:1:dead", 60)
        assert not store.take_over_lease("crm", "host:2:other", "me", 60)
        assert store.lease_holder("crm") == "host:1:dead"
        assert store.take_over_lease("crm", "host:1:dead", "me", 60)
        assert store.lease_holder("crm") == "me"
    finally:
        store.close()
