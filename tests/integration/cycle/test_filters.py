"""A destination's `filter:` end to end, in every mode, to a local REST API and to a
real PostgreSQL table: the destination ends as its mode promises for the filtered table
(the table as if it held only the matching rows), and the counts are exact.

- rows enter and leave the subset through updates of the filtered column;
- matching and non-matching rows are deleted, inserted and changed;
- the filtered column is renamed (the filter follows the new name; one that still
  names the old column stops with the new name in the message);
- the filter changes between cycles: the destination becomes the new subset, and a
  change that would remove most of it stops at the delete guard until `--force`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.types import LongType, UUIDType

from floe_egress.config.models import SyncMode
from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.preview import preview_cycle
from floe_egress.daemon.result import filter_line
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.verify import verify
from tests.fixtures.digest_dests import (
    MODES,
    Counts,
    Dest,
    PostgresDest,
    Record,
    RestDest,
    promised,
)
from tests.fixtures.mode_syncs import Syncs, dest, kind, state_url, sync
from tests.fixtures.world import World, customers, initial_rows

PRO = "plan = 'pro'"
Table = dict[int, dict[str, Any]]

__all__ = ["dest", "kind", "state_url", "sync"]  # the fixtures, used by name


def rows_of(world: World, plan_column: str = "plan") -> Table:
    """customer_id -> {customer_id, email, plan} (the plan column by whatever name)."""
    table = world.reload()
    if table.current_snapshot() is None:
        return {}
    out: Table = {}
    for r in table.scan().to_arrow().to_pylist():
        out[r["customer_id"]] = {
            "customer_id": r["customer_id"],
            "email": r["email"],
            "plan": r[plan_column],
        }
    return out


def where(rows: Table, match: Callable[[dict[str, Any]], bool]) -> Table:
    return {k: r for k, r in rows.items() if match(r)}


def is_pro(row: dict[str, Any]) -> bool:
    return row["plan"] == "pro"


def upsert(world: World, rows: list[tuple[int, str, str]]) -> None:
    world.reload().upsert(customers(rows), join_cols=["customer_id"])


def enter_leave_and_change(world: World, before: Table) -> None:
    """Odd 1-9 (free) become pro: they enter; even 2-10 (pro) become free: they leave;
    12 and 14 (pro) change their email: changed; 13 and 15 (free) too: not sent; 16, 18
    (pro) and 17, 19 (free) are deleted; 61 (pro) and 62 (free) are new."""
    upsert(world, [(i, before[i]["email"], "pro") for i in (1, 3, 5, 7, 9)])
    upsert(world, [(i, before[i]["email"], "free") for i in (2, 4, 6, 8, 10)])
    upsert(world, [(i, f"changed{i}@example.com", before[i]["plan"]) for i in (12, 13, 14, 15)])
    world.reload().delete("customer_id in (16, 17, 18, 19)")
    world.reload().append(customers([(61, "n61@example.com", "pro"), (62, "n62@x.io", "free")]))


def as_held(rows: Table) -> dict[int, Record]:
    return {k: (k, r["email"], r["plan"]) for k, r in rows.items()}


def check(
    dest: Dest, mode: SyncMode, result: CycleResult, held: dict[int, Record], after: Table
) -> dict[int, Record]:
    """The destination is what `mode` promises for the filtered table `after`; the
    counts are exact. Returns what it holds now."""
    promise = promised(mode, held, after)
    got = Counts(result.inserted, result.updated, result.deleted)
    assert dest.held() == promise.held
    assert got == promise.counts, (result.plan, got, promise.counts)
    return promise.held


@pytest.mark.parametrize("mode", MODES)
async def test_rows_enter_and_leave_the_subset(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    world.table.append(customers(initial_rows(60)))
    own: dict[int, Record] = {}
    if mode == "update":  # an update-mode destination holds every row of its own
        own = as_held(rows_of(world))
        if isinstance(dest, RestDest):
            dest.preload(own)
        else:
            await sync("upsert")
    first = await sync(mode, filter=PRO)
    before = rows_of(world)
    subset = where(before, is_pro)
    if mode == "update":  # a first sync inserts, which update mode drops (PostgreSQL's
        # rows came from an unfiltered sync: adding the filter compares with the digest)
        assert first.plan == ("full" if isinstance(dest, RestDest) else "digest")
        assert (first.inserted, first.updated, dest.held()) == (0, 0, own)
    else:
        assert (first.plan, first.inserted) == ("full", 30)
    if mode == "append":
        assert dest.events() == sorted(("insert", r) for r in as_held(subset).values())
    elif mode != "update":
        assert dest.held() == as_held(subset)
    held = dest.held()
    events_before = dest.events()

    enter_leave_and_change(world, before)
    result = await sync(mode, filter=PRO)
    now = rows_of(world)
    after = where(now, is_pro)
    assert result.plan == "diff"
    if mode == "append":
        new = list(dest.events())
        for event in events_before:
            new.remove(event)
        # Entered and new rows are inserts, changed ones updates, left and deleted
        # ones deletes with the values the destination was last sent.
        assert sorted(new) == sorted(
            [("insert", as_held(now)[k]) for k in (1, 3, 5, 7, 9, 61)]
            + [("update", as_held(now)[k]) for k in (12, 14)]
            + [("delete", as_held(before)[k]) for k in (2, 4, 6, 8, 10, 16, 18)]
        )
        assert (result.inserted, result.updated, result.deleted) == (6, 2, 7)
        return
    if mode == "update":  # entering rows are inserts: only 12 and 14 are updated
        assert dest.held() == held | {k: as_held(now)[k] for k in (12, 14)}
        assert (result.inserted, result.updated, result.deleted) == (0, 2, 0)
        return
    check(dest, mode, result, held, after)
    if mode == "mirror":
        assert (result.inserted, result.updated, result.deleted) == (6, 2, 7)


async def test_a_renamed_column_is_followed_by_id(world: World, dest: Dest, sync: Syncs) -> None:
    world.table.append(customers(initial_rows(40)))
    await sync("mirror", filter=PRO)
    held = dest.held()
    table = world.reload()
    with table.update_schema() as update:
        update.rename_column("plan", "tier")
    renamed = {"customer_id": "external_id", "email": "email", "tier": "plan_tier"}
    # Rows change after the rename: 1 (free) enters, 2 (pro) leaves.
    changed = pa.Table.from_pylist(
        [
            {"customer_id": 1, "email": "user1@example.com", "tier": "pro"},
            {"customer_id": 2, "email": "user2@example.com", "tier": "free"},
        ],
        schema=world.reload().schema().as_arrow(),
    )
    world.reload().delete("customer_id in (1, 2)")  # (pyiceberg's upsert reads old names)
    world.reload().append(changed)

    stale = await sync("mirror", ok=False, filter=PRO, field_mapping=renamed)
    assert stale.status == "failed" and stale.error_kind == "permanent"
    assert "column 'plan' was renamed to 'tier'" in str(stale.error)
    assert dest.held() == held, "nothing sent"

    result = await sync("mirror", filter="tier = 'pro'", field_mapping=renamed)
    after = where(rows_of(world, "tier"), is_pro)
    assert dest.held() == as_held(after)
    assert (result.inserted, result.deleted) == (1, 1)


@pytest.mark.parametrize("mode", ["mirror", "upsert"])
async def test_a_changed_filter_makes_the_destination_the_new_subset(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    world.table.append(customers(initial_rows(60)))
    await sync(mode, filter=PRO)
    held = dest.held()
    rows = rows_of(world)

    wider = "plan = 'pro' or customer_id <= 20"  # 10 free rows enter, none leaves
    result = await sync(mode, filter=wider)
    assert result.plan == "digest"
    assert "filter changed" in result.reason
    after = where(rows, lambda r: r["plan"] == "pro" or r["customer_id"] <= 20)
    held = check(dest, mode, result, held, after)
    assert (result.inserted, result.updated, result.deleted) == (10, 0, 0)

    narrower = "customer_id <= 40"  # 10 pro above 40 leave, 10 free 21-40 enter
    result = await sync(mode, filter=narrower)
    after = where(rows, lambda r: r["customer_id"] <= 40)
    check(dest, mode, result, held, after)
    assert (result.inserted, result.updated) == (10, 0)
    assert result.deleted == (10 if mode == "mirror" else 0)


async def test_a_filter_change_that_empties_the_audience_stops_at_the_delete_guard(
    world: World, dest: Dest, sync: Syncs
) -> None:
    world.table.append(customers(initial_rows(60)))
    await sync("mirror", filter=PRO)
    held = dest.held()

    stopped = await sync("mirror", ok=False, filter="plan = 'enterprise'")
    assert stopped.status == "failed"
    assert "--force" in str(stopped.error), stopped.error
    assert dest.held() == held, "nothing deleted"

    forced = await sync("mirror", force=True, filter="plan = 'enterprise'")
    assert (forced.inserted, forced.deleted) == (0, 30)
    assert dest.held() == {}


async def test_plan_counts_what_entered_left_and_changed(
    world: World, dest: Dest, sync: Syncs, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(60)))
    await sync("mirror", filter=PRO)
    held = dest.held()
    enter_leave_and_change(world, rows_of(world))
    loaded = world.load([dest.config("mirror", filter=PRO)])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    planned = await preview_cycle(runtime, loaded.spec.ingestion.destinations[0])
    # 6 inserts: 5 entered (1, 3, 5, 7, 9), 1 new (61); 7 deletes: 5 left (2-10 even),
    # 2 deleted from the table (16, 18); 2 updates (12, 14).
    assert (planned.inserted, planned.updated, planned.deleted) == (6, 2, 7)
    assert planned.filter_effects == {"entered": 5, "left": 5, "changed": 2}
    assert filter_line(planned.filter_effects) == (
        "5 entered the subset, 5 left it, 2 changed in it"
    )
    assert planned.to_json()["filter"] == {"entered": 5, "left": 5, "changed": 2}
    assert dest.held() == held, "a plan sends nothing"
    again = await sync("mirror", filter=PRO)
    assert (again.inserted, again.updated, again.deleted) == (6, 2, 7), "the plan was exact"


async def test_verify_compares_with_the_subset_and_names_the_filter_effects(
    world: World, dest: Dest, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(60)))
    loaded = world.load([dest.config("mirror", filter=PRO)])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    crm = loaded.spec.ingestion.destinations[0]
    assert (await run_cycle(runtime, crm)).inserted == 30

    clean = await verify(runtime, crm)
    assert clean.agrees, clean.lines()
    assert clean.filter is not None and clean.filter["rows_matching"] == 30
    if not isinstance(dest, PostgresDest):
        return  # a REST destination cannot be read back: its digest agrees

    # In the destination table: a matching row lost, a non-matching one left behind,
    # a matching one with other values.
    dest._query(
        "DELETE FROM activation.customers WHERE external_id = 2;"
        "INSERT INTO activation.customers (external_id, email, plan_tier) "
        "VALUES (3, 'user3@example.com', 'free');"
        "UPDATE activation.customers SET email = 'edited@example.com' WHERE external_id = 4"
    )
    report = await verify(runtime, crm)
    assert report.filter == {
        "filter": PRO,
        "rows_matching": 30,
        "entered_not_received": 1,
        "left_not_removed": 1,
        "changed_not_received": 1,
    }
    summary = "1 entered but not received, 1 left but still held, 1 changed but not received"
    assert any(summary in line for line in report.lines()), report.lines()


def leave(world: World, ids: list[int]) -> None:
    rows = rows_of(world)
    upsert(world, [(i, rows[i]["email"], "free") for i in ids])


async def test_rows_written_before_the_filtered_column_existed_are_judged_alike(
    world: World, dest: Dest, sync: Syncs
) -> None:
    world.table.append(customers(initial_rows(4)))  # rows 1-4 have no mrr
    with world.reload().update_schema() as update:
        update.add_column("mrr", LongType())
    later = pa.Table.from_pylist(
        [{"customer_id": i, "email": f"m{i}@x.io", "plan": "pro", "mrr": i} for i in range(5, 11)],
        schema=world.reload().schema().as_arrow(),
    )
    world.reload().append(later)
    unfit = "not (mrr > 7)"  # null mrr matches no comparison, negated or not
    first = await sync("mirror", filter=unfit)
    assert sorted(dest.held()) == [5, 6, 7]
    world.reload().delete("customer_id in (1, 6)")
    second = await sync("mirror", filter=unfit)
    assert sorted(dest.held()) == [5, 7]
    assert (first.inserted, second.deleted) == (3, 1)
    wider = await sync("mirror", filter="mrr <> 9")  # the digest plan judges alike
    assert (wider.plan, sorted(dest.held())) == ("digest", [5, 7, 8, 10])


async def test_a_rename_not_yet_committed_to_data_is_followed(
    world: World, dest: Dest, sync: Syncs
) -> None:
    world.table.append(customers(initial_rows(10)))
    with world.reload().update_schema() as update:
        update.rename_column("plan", "tier")
    renamed = {"customer_id": "external_id", "email": "email", "tier": "plan_tier"}
    stale = await sync("mirror", ok=False, filter=PRO, field_mapping=renamed)
    assert "column 'plan' was renamed to 'tier'" in str(stale.error)
    result = await sync("mirror", filter="tier = 'pro'")
    assert (result.plan, sorted(dest.held())) == ("full", [2, 4, 6, 8, 10])


async def test_a_resync_from_a_snapshot_with_a_new_filter_gives_the_new_subset(
    world: World, dest: Dest, sync: Syncs, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(60)))
    first = await sync("mirror", filter=PRO)
    runtimes[-1].store.request_resync("crm", first.to_snapshot)
    await sync("mirror", filter="customer_id <= 40")
    assert dest.held() == as_held(where(rows_of(world), lambda r: r["customer_id"] <= 40))


async def test_an_interrupted_delivery_resends_only_rows_of_the_subset(
    world: World, dest: Dest, sync: Syncs, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(20)))
    first = await sync("mirror", filter=PRO)
    held = dest.held()
    upsert(world, [(i, f"other{i}@x.io", "free") for i in (1, 3, 5)])  # free rows only
    head = world.reload().current_snapshot()
    assert head is not None and first.to_snapshot is not None
    runtimes[-1].store.begin_attempt("crm", first.to_snapshot, head.snapshot_id)
    world.reload().append(customers([(21, "n21@x.io", "free")]))
    result = await sync("mirror", filter=PRO)
    assert (result.inserted, result.updated, result.deleted) == (0, 0, 0)
    assert dest.held() == held


async def test_the_delete_guard_counts_the_subset_the_destination_holds(
    world: World, dest: Dest, sync: Syncs
) -> None:
    world.table.append(customers(initial_rows(60)))
    await sync("mirror", filter=PRO)  # 30 held
    leave(world, list(range(2, 30, 2)))  # 14 leave: 14 of 30
    assert (await sync("mirror", filter=PRO)).deleted == 14
    leave(world, list(range(30, 54, 2)))  # 12 of the 16 held
    stopped = await sync("mirror", ok=False, filter=PRO)
    assert stopped.status == "failed" and "--force" in str(stopped.error)
    assert "delete 12 of the 16 rows" in str(stopped.error)


async def test_a_filter_on_a_column_it_cannot_compare_is_refused(
    world: World, dest: Dest, sync: Syncs
) -> None:
    with world.reload().update_schema() as update:
        update.add_column("token", UUIDType())
    world.reload().append(
        pa.Table.from_pylist(
            [{"customer_id": 1, "email": "a@x.io", "plan": "pro", "token": None}],
            schema=world.reload().schema().as_arrow(),
        )
    )
    failed = await sync("mirror", ok=False, filter="token is not null")
    assert failed.status == "failed" and failed.error_kind == "permanent"
    assert "column 'token' is uuid" in str(failed.error)


@pytest.mark.parametrize("mode", ["mirror", "upsert", "append"])
async def test_the_append_plan_and_a_full_resync_send_the_subset(
    world: World, dest: Dest, sync: Syncs, runtimes: list[Runtime], mode: SyncMode
) -> None:
    world.table.append(customers(initial_rows(20)))
    await sync(mode, filter=PRO)
    world.reload().append(customers([(21, "a21@x.io", "pro"), (22, "a22@x.io", "free")]))
    appended = await sync(mode, filter=PRO)
    assert (appended.plan, appended.inserted) == ("append", 1)
    subset = where(rows_of(world), is_pro)
    if mode != "append":
        assert dest.held() == as_held(subset)

    leave(world, [2, 4])  # two rows leave, then the destination is resent whole
    runtimes[-1].store.request_resync("crm", None)
    resync = await sync(mode, filter=PRO)
    subset = where(rows_of(world), is_pro)
    assert resync.plan == "full" and "resync" in resync.reason
    assert (resync.inserted + resync.updated) == len(subset)
    if mode == "mirror":
        assert resync.deleted == 2 and dest.held() == as_held(subset)
    elif mode == "upsert":  # upsert never deletes: the two stay as they were sent
        assert dest.held() == as_held(subset) | {
            k: (k, f"user{k}@example.com", "pro") for k in (2, 4)
        }
