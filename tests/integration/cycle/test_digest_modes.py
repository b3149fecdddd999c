"""The digest in each sync mode, end to end: real Iceberg tables, a local REST API and a
real PostgreSQL table. When the synced snapshot A cannot be read (expired, the table
replaced), the cycle compares the table with the digest of what the destination holds:
the destination ends as its mode promises, the counts are the net change, and only
that change reaches the destination.
"""

# Fixtures imported by name are parameters of the tests (and `*`-imported by the
# bounded variant, so no `__all__` may narrow what this module exports).
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from floe_egress.config.models import SyncMode
from tests.fixtures.digest_dests import (
    MODES,
    Counts,
    Dest,
    RestDest,
    Rows,
    promised,
    record,
)
from tests.fixtures.mode_syncs import Syncs, dest, kind, state_url, sync  # noqa: F401
from tests.fixtures.world import World, customers, initial_rows


def expire_all_but_current(world: World) -> None:
    table = world.reload()
    current = table.current_snapshot()
    assert current is not None
    older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current.snapshot_id]
    table.maintenance.expire_snapshots().by_ids(older).commit()


def upsert(world: World, rows: list[tuple[int, str, str]]) -> None:
    world.reload().upsert(customers(rows), join_cols=["customer_id"])


def changes_before_expiry(world: World) -> None:
    """Updates 1-20, inserts 101-120, deletes 51-60."""
    upsert(world, [(i, f"first{i}@example.com", "team") for i in range(1, 21)])
    world.reload().append(customers([(i, f"new{i}@example.com", "pro") for i in range(101, 121)]))
    world.reload().delete("customer_id > 50 and customer_id <= 60")


def changes_after_expiry(world: World, at_a: Rows) -> None:
    """Updates 11-30 (11-20 again) and 101-105 (inserted before the expiry); inserts
    121-130, deleted and inserted again with other values; deletes 41-45 and 116-120
    (inserted before the expiry); 51-53 back with other values, 54 back as it was in A."""
    upsert(world, [(i, f"second{i}@example.com", "free") for i in range(11, 31)])
    upsert(world, [(i, f"again{i}@example.com", "team") for i in range(101, 106)])
    world.reload().append(customers([(i, f"late{i}@example.com", "pro") for i in range(121, 131)]))
    world.reload().delete("(customer_id > 40 and customer_id <= 45) or customer_id > 115")
    world.reload().append(customers([(i, f"again{i}@example.com", "pro") for i in range(121, 131)]))
    back = [(i, f"back{i}@example.com", "pro") for i in range(51, 54)]
    back.append((54, at_a[54]["email"], at_a[54]["plan"]))
    world.reload().append(customers(back))


async def first_sync(world: World, dest: Dest, sync: Syncs, mode: SyncMode) -> dict[int, Any]:
    """60 rows synced; an update-mode destination holds them of its own already (a
    PostgreSQL one got them from an upsert-mode cycle)."""
    world.table.append(customers(initial_rows(60)))
    if mode == "update":
        rows = {k: record(r) for k, r in world.rows().items()}
        if isinstance(dest, RestDest):
            dest.preload(rows)
        else:
            await sync("upsert")
    await sync(mode)
    return dest.held()


def mode_params() -> list[Any]:
    return [pytest.param(m, id=m) for m in MODES]


@pytest.mark.parametrize("mode", mode_params())
async def test_expiry_sends_only_the_net_change(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    """Changes on both sides of an expiry of A: the cycle compares with the digest, the
    destination holds what the mode promises, the counts are the net change, and
    exactly those records reach the REST receiver."""
    held = await first_sync(world, dest, sync, mode)
    events = dest.events()
    at_a = world.rows()
    changes_before_expiry(world)
    expire_all_but_current(world)
    changes_after_expiry(world, at_a)
    sent = {k: record(r) for k, r in at_a.items()}  # an append destination keeps events
    promise = promised(mode, sent if mode == "append" else held, world.rows())
    since = len(dest.api.log) if isinstance(dest, RestDest) else 0

    result = await sync(mode)

    assert result.plan == "digest", result.reason
    assert Counts(result.inserted, result.updated, result.deleted) == promise.counts
    if mode == "append":
        assert sorted(dest.events()) == sorted(events + promise.events)
    else:
        assert dest.held() == promise.held
    if isinstance(dest, RestDest):
        assert dest.posted(since) == promise.counts.total, "exactly the changed rows arrive"
    again = await sync(mode)
    assert (again.plan, again.status) == ("noop", "noop")


def replace_table(world: World, at_a: Rows) -> None:
    """Drop gold.customers and create it again: 1-40 as they were, 41-50 changed, 51-60
    gone, 61-70 new."""
    world.catalog.drop_table("gold.customers")
    table = world.catalog.create_table("gold.customers", schema=customers([]).schema)
    with table.update_schema() as update:
        update.set_identifier_fields("customer_id")
    kept = [(k, r["email"], r["plan"]) for k, r in at_a.items() if k <= 40]
    changed = [(k, f"other{k}@example.com", "team") for k in range(41, 51)]
    new = [(k, f"user{k}@example.com", "pro") for k in range(61, 71)]
    world.reload().append(customers(kept + changed + new))


@pytest.mark.parametrize("mode", mode_params())
async def test_a_replaced_table_sends_only_what_differs(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    held = await first_sync(world, dest, sync, mode)
    events = dest.events()
    at_a = world.rows()
    replace_table(world, at_a)
    sent = {k: record(r) for k, r in at_a.items()}
    promise = promised(mode, sent if mode == "append" else held, world.rows())

    result = await sync(mode)

    assert result.plan == "digest", result.reason
    assert Counts(result.inserted, result.updated, result.deleted) == promise.counts
    if mode == "append":
        assert sorted(dest.events()) == sorted(events + promise.events)
    else:
        assert dest.held() == promise.held


def changes_between(world: World) -> None:
    """Updates 1-5 (their plan), inserts 61-65, deletes 56-60."""
    upsert(world, [(i, f"user{i}@example.com", "gold") for i in range(1, 6)])
    world.reload().append(customers([(i, f"user{i}@example.com", "pro") for i in range(61, 66)]))
    world.reload().delete("customer_id > 55 and customer_id <= 60")


async def then_differences_only(
    world: World,
    dest: Dest,
    sync: Syncs,
    mode: SyncMode,
    *,
    unknown: frozenset[int] = frozenset(),
    **overrides: Any,
) -> None:
    """One more change on each side of an expiry (no email changes: email is part of
    the changed key): the next cycle compares with the digest the last one wrote and
    sends only that. `unknown`: keys the destination holds that the digest does not
    know (rows under an earlier key), left as they are."""
    held, events, before = dest.held(), dest.events(), world.rows()
    stale = {k: held.pop(k) for k in unknown}
    upsert(world, [(2, before[2]["email"], "platinum")])
    expire_all_but_current(world)
    upsert(world, [(3, before[3]["email"], "platinum"), (90, "user90@example.com", "pro")])
    world.reload().delete("customer_id = 4")
    sent = {k: record(r) for k, r in before.items()}
    key = tuple(overrides.get("primary_key", ["customer_id"]))
    promise = promised(mode, sent if mode == "append" else held, world.rows(), key=key)
    result = await sync(mode, **overrides)
    assert result.plan == "digest", result.reason
    assert result.digest_rebuilt is None
    assert Counts(result.inserted, result.updated, result.deleted) == promise.counts
    if mode == "append":
        assert sorted(dest.events()) == sorted(events + promise.events)
    else:
        assert dest.held() == {**stale, **promise.held}


KEY = ["customer_id", "email"]
NO_PLAN = {"customer_id": "external_id", "email": "email"}


@pytest.mark.parametrize("mode", mode_params())
async def test_a_changed_mapping_sends_every_row_once_then_differences_only(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    """The mapping gains plan -> plan_tier: the digest's hashes no longer describe what
    would be sent, so every row is sent once (a log line says why); its keys still give
    the updates and mirror mode's deletes."""
    world.table.append(customers(initial_rows(60)))
    if mode == "update":
        if isinstance(dest, RestDest):
            dest.preload({k: record(r) for k, r in world.rows().items()})
        else:
            await sync("upsert", field_mapping=NO_PLAN)
    await sync(mode, field_mapping=NO_PLAN)
    held, events, at_a = dest.held(), dest.events(), world.rows()
    changes_between(world)
    sent = {k: (k, r["email"], None) for k, r in at_a.items()}
    promise = promised(mode, sent if mode == "append" else held, world.rows(), everything=True)

    with capture_logs() as logs:
        result = await sync(mode)

    assert result.plan == "full", result.reason
    assert result.digest_rebuilt is not None and "field mapping" in result.digest_rebuilt
    [warning] = [e for e in logs if e["event"] == "digest_not_trusted"]
    assert "field mapping" in warning["reason"]
    counts = promise.counts
    if mode == "update" and dest.kind == "rest":  # the API does not say which it skipped
        counts = Counts(0, len(world.rows()))
    assert Counts(result.inserted, result.updated, result.deleted) == counts
    if mode == "append":
        assert sorted(dest.events()) == sorted(events + promise.events)
    else:
        assert dest.held() == promise.held
    await then_differences_only(world, dest, sync, mode)


@pytest.mark.parametrize("mode", mode_params())
async def test_a_changed_key_sends_every_row_once_then_differences_only(
    world: World, dest: Dest, sync: Syncs, mode: SyncMode
) -> None:
    """primary_key changes from the table's identifier (customer_id) to customer_id
    and email: the digest's keys are of another kind, every row is sent once, and the
    digest starts again from what that cycle sent."""
    held = await first_sync(world, dest, sync, mode)
    events = dest.events()
    changes_between(world)
    now = {k: record(r) for k, r in world.rows().items()}

    result = await sync(mode, primary_key=KEY)

    assert result.plan == "full", result.reason
    assert "key changed" in result.reason
    sent = Counts(len(now))
    if mode == "update":  # every row as an update: the destination updates those it holds
        sent = Counts(0, len(now) if dest.kind == "rest" else len(now.keys() & held.keys()))
    elif mode == "insert" and dest.kind == "postgres":  # skips the keys it holds
        sent = Counts(len(now.keys() - held.keys()))
    assert Counts(result.inserted, result.updated, result.deleted) == sent
    if mode == "append":
        assert sorted(dest.events()) == sorted(events + [("insert", r) for r in now.values()])
    elif mode == "insert":
        assert dest.held() == {**now, **held}
    elif mode == "update":
        assert dest.held() == {**held, **{k: r for k, r in now.items() if k in held}}
    else:
        assert dest.held() == {**held, **now}, "rows keyed by the old key are not deleted"
    unknown = frozenset(held.keys() - now.keys()) if mode == "mirror" else frozenset()
    await then_differences_only(world, dest, sync, mode, unknown=unknown, primary_key=KEY)
