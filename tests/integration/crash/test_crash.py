"""SIGKILL a `floe-egress sync` process anywhere in its cycle, start it again: the API
ends equal to the table, nothing is lost, the checkpoint reaches the table's current
snapshot, and what was delivered but not checkpointed is sent again (at-least-once).

Kill points: (a) during change capture, (b) between batches (the API kills its client
at the n-th request; requests go one at a time), (c) after delivery and before the
checkpoint transaction, (d) after a delay from the start or from the first delivery,
wherever the process then is. The destination is in mirror mode and the table receives
updates, inserts and deletes between runs.

The sequences restart a new process; the single-crash cases run the next sync through
`cli.main` in the test process (the same code on the state the killed process left,
without paying the interpreter start again).
"""

from __future__ import annotations

import pytest

from tests.fixtures.crash_harness import (
    checkpoint_snapshot,
    expected_records,
    expire_leases,
    idempotency_keys,
    posts,
    sent_keys,
)
from tests.fixtures.crash_points import (
    AfterDelivery,
    AtPost,
    BeforeCheckpoint,
    Crash,
    DuringCatalogRead,
    KillPoint,
    Rig,
    Timed,
)
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.crash.conftest import ROWS, Restart, restart_process


def change_table(world: World) -> None:
    """10 updates and 10 inserts in one upsert, then 10 deletes."""
    updates = [(i, f"moved{i}@example.com", "team") for i in range(1, 11)]
    inserts = [(i, f"new{i}@example.com", "pro") for i in range(1001, 1011)]
    world.reload().upsert(customers(updates + inserts), join_cols=["customer_id"])
    world.reload().delete("customer_id > 40 and customer_id <= 50")


def current_snapshot(world: World) -> int:
    snapshot = world.reload().current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


def restart_and_check(
    rig: Rig, crash: Crash, kill: KillPoint, restart: Restart = restart_process
) -> None:
    """Run `floe-egress sync` again after `crash`; the API must equal the table."""
    committed = checkpoint_snapshot(rig.state_url) == current_snapshot(rig.world)
    if kill.before_commit:
        assert not committed, "a cycle killed before its commit must not move the checkpoint"
    expire_leases(rig.state_url)
    before = len(rig.server.snapshot()[1])
    finished = restart(rig)
    assert finished.returncode == 0, finished.stderr
    [result] = finished.results()
    assert result["status"] == ("noop" if committed else "ok"), result
    records, log = rig.server.snapshot()
    assert records == expected_records(rig.world)
    assert checkpoint_snapshot(rig.state_url) == current_snapshot(rig.world)
    resent = posts(log[before:])
    if committed:
        assert resent == [], "a committed range is not sent again"
    elif crash.applied:
        assert set(sent_keys(crash.applied)) <= set(sent_keys(resent)), (
            "what the killed process delivered is delivered again"
        )
        assert idempotency_keys(crash.applied) <= idempotency_keys(resent), (
            "the resent batches carry the same idempotency keys"
        )
    if kill.delivered_all:
        assert sent_keys(resent) == sent_keys(crash.requests), "the whole range is resent"


SEQUENCE_KILLS: list[KillPoint] = [AtPost(2, applied=True), BeforeCheckpoint()]


@pytest.mark.slow
@pytest.mark.parametrize("kill", SEQUENCE_KILLS, ids=lambda k: k.id)
def test_killed_sync_restarts_and_the_api_equals_the_table(rig: Rig, kill: KillPoint) -> None:
    """Killed in the first (full) sync, restarted; then killed in a sync of updates,
    inserts and deletes, restarted."""
    rig.world.table.append(customers(initial_rows(ROWS)))
    restart_and_check(rig, kill.crash(rig), kill)
    change_table(rig.world)
    restart_and_check(rig, kill.crash(rig), kill)


DIFF_KILLS: list[KillPoint] = [
    DuringCatalogRead(),
    AtPost(1, applied=False),
    AfterDelivery(),
    Timed(1.5),
    Timed(0.0, "first-post"),
    Timed(0.02, "first-post"),
    Timed(0.05, "first-post"),
]


@pytest.mark.parametrize("kill", DIFF_KILLS, ids=lambda k: k.id)
def test_killed_diff_sync_restarts_and_the_api_equals_the_table(
    seeded: Rig, kill: KillPoint, restart_in_process: Restart
) -> None:
    """After a first sync, the table gets updates, inserts and deletes; the sync of that
    range is killed, and the next sync (run in this process) repairs it."""
    change_table(seeded.world)
    restart_and_check(seeded, kill.crash(seeded), kill, restart_in_process)


@pytest.mark.postgres
def test_killed_before_the_checkpoint_on_postgres_state(seeded_pg: Rig) -> None:
    kill = BeforeCheckpoint()
    change_table(seeded_pg.world)
    restart_and_check(seeded_pg, kill.crash(seeded_pg), kill)


def diverging(rig: Rig) -> dict[str, tuple[object, object]]:
    """Keys where the API and the table disagree: (API record, table record)."""
    records, _ = rig.server.snapshot()
    table = expected_records(rig.world)
    return {
        k: (records.get(k), table.get(k))
        for k in sorted(records.keys() | table.keys())
        if records.get(k) != table.get(k)
    }


def test_table_changes_between_a_crash_and_the_restart_reach_the_api(
    seeded: Rig, restart_in_process: Restart
) -> None:
    """Killed after delivering A->B (inserts 1001-1005, updates 1-5); before the restart
    the table deletes 1001-1005 and puts 1-5 back as they were in A. The API must end
    equal to the table: no phantom rows, no stale values."""
    rig = seeded
    in_a = expected_records(rig.world)
    updates = [(i, f"b{i}@example.com", "team") for i in range(1, 6)]
    inserts = [(i, f"b{i}@example.com", "pro") for i in range(1001, 1006)]
    rig.world.reload().upsert(customers(updates + inserts), join_cols=["customer_id"])
    AfterDelivery().crash(rig)
    rig.world.reload().delete("customer_id > 1000")
    back = [(i, in_a[str(i)]["email"], in_a[str(i)]["plan_tier"]) for i in range(1, 6)]
    rig.world.reload().upsert(customers(back), join_cols=["customer_id"])
    expire_leases(rig.state_url)
    finished = restart_in_process(rig)
    assert finished.returncode == 0, finished.stderr
    assert diverging(rig) == {}, "API record, table record by key"


def test_sync_right_after_a_crash_syncs_or_says_it_did_not(
    seeded: Rig, restart_in_process: Restart
) -> None:
    change_table(seeded.world)
    AtPost(1, applied=False).crash(seeded)
    finished = restart_in_process(seeded)
    [result] = finished.results()
    synced = result["status"] == "ok" and diverging(seeded) == {}
    assert synced or finished.returncode != 0, (
        f"exit {finished.returncode} with status {result['status']}: {result['error']}"
    )


def test_rows_of_a_crashed_range_whose_snapshot_expired_are_still_deleted(
    seeded: Rig, restart_in_process: Restart
) -> None:
    """Killed after delivering inserts 1001-1005 (A->B'); before the restart the table
    deletes them and B' (with A) expires, so the interrupted range cannot be read again
    and the restart compares the table with the digest. Mirror mode must still delete
    1001-1005 at the API: the keys a delivery may send are reserved in the digest before
    they are sent."""
    rig = seeded
    synced = current_snapshot(rig.world)
    inserts = [(i, f"b{i}@example.com", "pro") for i in range(1001, 1006)]
    rig.world.reload().append(customers(inserts))
    crashed_target = current_snapshot(rig.world)
    crash = AfterDelivery().crash(rig)
    assert {("upsert", i) for i in range(1001, 1006)} <= set(sent_keys(crash.applied))
    rig.world.reload().delete("customer_id > 1000")
    expire = rig.world.reload().maintenance.expire_snapshots()
    expire.by_ids([synced, crashed_target]).commit()
    expire_leases(rig.state_url)
    finished = restart_in_process(rig)
    assert finished.returncode == 0, finished.stderr
    [result] = finished.results()
    assert result["plan"] == "digest", result
    assert result["deleted"] == 5, result
    assert diverging(rig) == {}, "API record, table record by key"
