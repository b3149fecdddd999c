"""The sync cycle end to end: Iceberg table -> change set -> REST API -> state store."""

from __future__ import annotations

from typing import Any

import pytest

from floe_egress.config import LoadedConfig
from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.preview import preview_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows, rest_destination


def posts(api: FakeRestApi) -> list[Any]:
    """The deliveries the API received (the connection check is a GET)."""
    return [r for r in api.log if r.method == "POST"]


def expected_records(world: World) -> dict[str, dict[str, Any]]:
    return {
        str(k): {"external_id": k, "email": r["email"], "plan_tier": r["plan"]}
        for k, r in world.rows().items()
    }


async def cycle(runtimes: list[Runtime], loaded: LoadedConfig, **kw: Any) -> CycleResult:
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    return await run_cycle(runtime, loaded.spec.ingestion.destinations[0], **kw)


async def test_first_sync_sends_every_row_and_second_sends_nothing(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(250)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    first = await cycle(runtimes, loaded)
    assert (first.status, first.plan, first.inserted) == ("ok", "full", 250)
    assert api.records == expected_records(world)
    requests = len(posts(api))
    assert requests == 3, "250 rows at batch_size 100 are 3 requests"

    second = await cycle(runtimes, loaded)
    assert (second.status, second.plan) == ("noop", "noop")
    assert len(posts(api)) == requests, "a second sync without a new snapshot sends nothing"
    store = runtimes[-1].store
    assert store.last_run("crm") is not None and store.last_run("crm").status == "noop"  # type: ignore[union-attr]


async def test_only_changed_rows_are_sent_and_the_api_equals_the_table(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(20)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    await cycle(runtimes, loaded)
    sent_before = len(posts(api))
    world.table.upsert(
        customers([(3, "three@example.com", "team"), (99, "new@example.com", "pro")]),
        join_cols=["customer_id"],
    )
    world.reload().delete("customer_id = 7")
    result = await cycle(runtimes, loaded)
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 1)
    new_requests = [r.json() for r in posts(api)[sent_before:]]
    sent = sorted((b["op"], rec["external_id"]) for b in new_requests for rec in b["records"])
    assert sent == [("delete", 7), ("upsert", 3), ("upsert", 99)]
    deletes = [b for b in new_requests if b["op"] == "delete"]
    assert deletes[0]["records"] == [{"external_id": 7}], "deletes carry the key fields only"
    assert api.records == expected_records(world)


async def test_plan_sends_nothing_and_writes_nothing(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(5)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    planned = await preview_cycle(runtime, loaded.spec.ingestion.destinations[0])
    assert (planned.plan, planned.inserted) == ("full", 5)
    assert [r["customer_id"] for r in planned.sample["insert"]] == [1, 2, 3, 4, 5]
    assert posts(api) == []
    assert runtime.store.get_checkpoint("crm") is None
    assert runtime.store.last_run("crm") is None


async def test_rejected_rows_are_recorded_and_retried_with_their_latest_values(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers([(1, "good@example.com", "pro"), (2, "not-an-address", "pro")]))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", batch_size=10)])
    first = await cycle(runtimes, loaded)
    assert (first.status, first.inserted, first.failed) == ("ok", 1, 1)
    store = runtimes[-1].store
    failed = store.failed_rows("crm")
    assert [(f.key_json, f.attempts) for f in failed] == [('{"customer_id":2}', 1)]
    assert "not a valid address" in failed[0].reason
    assert store.get_checkpoint("crm") is not None, "the checkpoint moves past a rejected row"

    again = await cycle(runtimes, loaded)
    assert again.failed == 1 and store.failed_rows("crm")[0].attempts == 2

    world.table.upsert(customers([(2, "fixed@example.com", "pro")]), join_cols=["customer_id"])
    fixed = await cycle(runtimes, loaded)
    assert fixed.failed == 0
    assert store.failed_rows("crm") == []
    assert api.records["2"]["email"] == "fixed@example.com"


async def test_a_failed_row_is_parked_after_max_attempts(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers([(1, "bad", "pro")]))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", max_attempts=2)])
    await cycle(runtimes, loaded)
    await cycle(runtimes, loaded)
    store = runtimes[-1].store
    assert [(f.attempts, f.parked) for f in store.failed_rows("crm")] == [(2, True)]
    requests = len(posts(api))
    third = await cycle(runtimes, loaded)
    assert third.status == "noop" and len(posts(api)) == requests, "a parked row is not retried"
    assert store.failed_row_count("crm") == 1, "a parked row stays visible"


async def test_delete_guard_stops_a_mass_delete_until_forced(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(10)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    await cycle(runtimes, loaded)
    checkpoint = runtimes[-1].store.get_checkpoint("crm")
    world.table.delete("customer_id <= 8")
    sent = len(posts(api))
    guarded = await cycle(runtimes, loaded)
    assert guarded.status == "failed"
    assert guarded.error is not None and "delete 8 of the 10 rows" in guarded.error
    assert "--force" in guarded.error
    assert len(posts(api)) == sent, "nothing is sent when the guard trips"
    assert runtimes[-1].store.get_checkpoint("crm") == checkpoint
    forced = await cycle(runtimes, loaded, force=True)
    assert (forced.status, forced.deleted) == ("ok", 8)
    assert api.records == expected_records(world)


async def test_resync_request_makes_the_next_cycle_full(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(4)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    await cycle(runtimes, loaded)
    runtimes[-1].store.request_resync("crm", None)
    resync = await cycle(runtimes, loaded)
    # Every row is sent again; the digest knows the destination holds them: updates.
    assert (resync.plan, resync.inserted, resync.updated) == ("full", 0, 4)
    assert runtimes[-1].store.pending_resync("crm") is None
    assert (await cycle(runtimes, loaded)).plan == "noop"


async def test_key_change_forces_a_full_resync(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(3)))
    await cycle(runtimes, world.load([rest_destination(api.url + "/v1/contacts")]))
    loaded = world.load(
        [rest_destination(api.url + "/v1/contacts", primary_key=["customer_id", "email"])]
    )
    result = await cycle(runtimes, loaded)
    assert result.plan == "full"
    assert "key changed" in result.reason


async def test_mirror_full_resync_after_expiry_still_deletes(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(6)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    await cycle(runtimes, loaded)
    synced = world.reload().current_snapshot()
    assert synced is not None
    world.table.delete("customer_id = 2")
    world.reload().maintenance.expire_snapshots().by_id(synced.snapshot_id).commit()
    result = await cycle(runtimes, loaded)
    assert result.plan == "digest"
    assert "expired" in result.reason
    assert (result.inserted, result.updated, result.deleted) == (0, 0, 1), (
        "the digest of what was sent finds the delete, and nothing else is sent"
    )
    assert api.records == expected_records(world)


@pytest.mark.parametrize("mode", ["upsert", "insert", "update"])
async def test_modes_choose_which_changes_are_sent(
    world: World, api: FakeRestApi, runtimes: list[Runtime], mode: str
) -> None:
    world.table.append(customers(initial_rows(3)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", mode=mode)])
    await cycle(runtimes, loaded)
    before = len(posts(api))
    world.table.upsert(
        customers([(1, "one@example.com", "team"), (50, "x@example.com", "pro")]),
        join_cols=["customer_id"],
    )
    world.reload().delete("customer_id = 3")
    await cycle(runtimes, loaded)
    ops = sorted(
        (b.json()["op"], rec["external_id"])
        for b in posts(api)[before:]
        for rec in b.json()["records"]
    )
    expected = {
        "upsert": [("upsert", 1), ("upsert", 50)],
        "insert": [("insert", 50)],
        "update": [("update", 1)],
    }[mode]
    assert ops == expected


async def test_state_folder_and_file_are_private(tmp_path: Any, runtimes: list[Runtime]) -> None:
    import stat

    world = World(tmp_path / "w", f"sqlite:///{tmp_path / 'fresh' / 'state.db'}")
    world.table.append(customers(initial_rows(1)))
    loaded = world.load([rest_destination("http://127.0.0.1:9/unused")])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    runtime.store.ping()
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "fresh" / "state.db").stat().st_mode) == 0o600


async def test_a_failed_row_gone_before_a_full_resync_is_deleted_once(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers([(1, "a@example.com", "pro"), (2, "no-address", "pro")]))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", batch_size=10)])
    first = await cycle(runtimes, loaded)
    assert (first.inserted, first.failed) == (1, 1)
    synced = world.reload().current_snapshot()
    assert synced is not None
    world.table.delete("customer_id = 2")
    world.reload().maintenance.expire_snapshots().by_id(synced.snapshot_id).commit()
    before = len(posts(api))
    result = await cycle(runtimes, loaded)
    assert result.plan == "digest"
    assert result.status == "ok"
    assert result.deleted == 1, "one delete: the retry of the failed key, not the digest too"
    deletes = [
        rec["external_id"]
        for body in (r.json() for r in posts(api)[before:])
        if body["op"] == "delete"
        for rec in body["records"]
    ]
    assert deletes == [2]
    assert runtimes[-1].store.failed_rows("crm") == []
    assert api.records == expected_records(world)


async def test_append_mode_sends_every_change_as_an_event_with_the_old_row_of_a_delete(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(5)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", mode="append")])
    first = await cycle(runtimes, loaded)
    assert first.inserted == 5 and len(api.events) == 5
    world.table.upsert(customers([(3, "three@example.com", "team")]), join_cols=["customer_id"])
    world.reload().delete("customer_id = 4")
    await cycle(runtimes, loaded)
    events = {(e["op"], e["record"]["external_id"]): e["record"] for e in api.events[5:]}
    assert set(events) == {("update", 3), ("delete", 4)}
    assert events[("update", 3)]["email"] == "three@example.com"
    _, email, plan = initial_rows(5)[3]
    assert events[("delete", 4)] == {"external_id": 4, "email": email, "plan_tier": plan}
