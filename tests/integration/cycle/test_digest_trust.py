"""A digest that cannot be trusted is said so (the result, a log line, a metric, the
status) and rebuilt by one full send; a trusted one makes a resync send differences only."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.health import destination_status
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows, rest_destination


@pytest.fixture
def state_url(tmp_path: Any) -> str:  # the tests edit the SQLite file behind the store
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


async def cycle(runtimes: list[Runtime], world: World, **dest: Any) -> CycleResult:
    loaded = world.load([rest_destination(world_api(world) + "/v1/contacts", **dest)])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    return await run_cycle(runtime, loaded.spec.ingestion.destinations[0])


def world_api(world: World) -> str:
    return str(world.api_url)  # type: ignore[attr-defined]


def sql(world: World, statement: str) -> None:
    with sqlite3.connect(world.state_url.removeprefix("sqlite:///")) as conn:
        conn.execute(statement)


def expire_synced(world: World) -> None:
    table = world.reload()
    current = table.current_snapshot()
    assert current is not None
    older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current.snapshot_id]
    table.maintenance.expire_snapshots().by_ids(older).commit()


@pytest.fixture
def world_with_api(world: World, api: FakeRestApi) -> World:
    world.api_url = api.url  # type: ignore[attr-defined]
    return world


async def test_a_lost_digest_is_reported_and_rebuilt_by_one_full_send(
    world_with_api: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world = world_with_api
    world.table.append(customers(initial_rows(3)))
    await cycle(runtimes, world)
    sql(world, "DELETE FROM digest_meta")
    sql(world, "DELETE FROM digest_segments")
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    status = destination_status(runtimes[-1], loaded.spec.ingestion.destinations[0])
    assert status["digest"]["state"].startswith("missing")

    world.table.append(customers([(4, "four@example.com", "pro")]))
    with capture_logs() as logs:
        rebuilt = await cycle(runtimes, world)
    assert rebuilt.plan == "full"
    assert rebuilt.digest_rebuilt is not None and "missing" in rebuilt.digest_rebuilt
    assert (rebuilt.inserted, rebuilt.updated) == (4, 0), "every row once"
    assert [e["reason"] for e in logs if e["event"] == "digest_not_trusted"]
    status = destination_status(runtimes[-1], loaded.spec.ingestion.destinations[0])
    assert (status["digest"]["state"], status["digest"]["entries"]) == ("ok", 4)
    assert (await cycle(runtimes, world)).plan == "noop"


async def test_a_damaged_segment_is_never_trusted(
    world_with_api: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world = world_with_api
    world.table.append(customers(initial_rows(3)))
    await cycle(runtimes, world)
    sql(world, "UPDATE digest_segments SET data = X'00010203'")
    world.table.append(customers([(4, "four@example.com", "pro")]))
    expire_synced(world)
    before = len(api.log)

    rebuilt = await cycle(runtimes, world)

    assert rebuilt.plan == "full"
    assert rebuilt.digest_rebuilt is not None and "checksum" in rebuilt.digest_rebuilt
    assert (rebuilt.inserted, rebuilt.updated) == (4, 0)
    assert sum(len(r.json()["records"]) for r in api.log[before:] if r.method == "POST") == 4


async def test_a_changed_mapping_sends_every_row_once_then_differences_again(
    world_with_api: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world = world_with_api
    world.table.append(customers(initial_rows(3)))
    await cycle(runtimes, world)
    mapping = {"customer_id": "external_id", "email": "email"}  # plan no longer sent

    changed = await cycle(runtimes, world, field_mapping=mapping)
    assert changed.plan == "full"
    assert changed.digest_rebuilt is not None and "field mapping" in changed.digest_rebuilt
    assert (changed.inserted, changed.updated, changed.deleted) == (0, 3, 0)
    assert all("plan_tier" not in r for r in api.records.values())

    world.table.upsert(customers([(2, "two@example.com", "free")]), join_cols=["customer_id"])
    expire_synced(world)
    again = await cycle(runtimes, world, field_mapping=mapping)
    assert (again.plan, again.inserted, again.updated, again.deleted) == ("digest", 0, 1, 0)
    assert again.digest_rebuilt is None


def remove_data_files(world: World, snapshot_id: int) -> None:
    table = world.reload()
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        Path(task.file.file_path.removeprefix("file://")).unlink()


async def test_when_a_is_listed_but_its_files_are_gone_the_digest_gives_the_deletes(
    world_with_api: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world = world_with_api
    world.table.append(customers(initial_rows(5)))
    synced = await cycle(runtimes, world)
    assert synced.inserted == 5
    a = synced.to_snapshot
    assert a is not None
    # B rewrites the table: rows 1 and 2 deleted, 3 changed, 6 new
    world.reload().overwrite(
        customers(
            [
                (3, "three@example.com", "enterprise"),
                *initial_rows(5)[3:],
                (6, "six@example.com", "pro"),
            ]
        )
    )
    remove_data_files(world, a)

    with capture_logs() as logs:
        result = await cycle(runtimes, world)

    assert result.status == "ok", result.error
    assert result.plan == "digest", result.reason
    assert "data files of snapshot" in (result.reason or "")
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 2)
    assert sorted(api.records) == ["3", "4", "5", "6"]
    assert api.records["3"]["plan_tier"] == "enterprise"
    assert not [e for e in logs if e["event"] == "digest_not_trusted"]
    assert (await cycle(runtimes, world)).plan == "noop"


async def test_a_segment_found_damaged_while_folding_moves_the_checkpoint_then_rebuilds(
    world_with_api: World,
    api: FakeRestApi,
    runtimes: list[Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("floe_egress.daemon.digest.COMPACT_AFTER", 2)
    world = world_with_api
    world.table.append(customers(initial_rows(3)))
    await cycle(runtimes, world)
    world.table.append(customers([(4, "four@example.com", "pro")]))
    await cycle(runtimes, world)  # two held segments now
    sql(world, "UPDATE digest_segments SET data = X'00010203' WHERE seq = 1")
    world.table.append(customers([(5, "five@example.com", "pro")]))

    with capture_logs() as logs:
        folded = await cycle(runtimes, world)

    assert folded.status == "ok", folded.error
    assert (folded.plan, folded.inserted) == ("append", 1)
    assert [e for e in logs if e["event"] == "digest_not_trusted"]
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    dest = loaded.spec.ingestion.destinations[0]
    status = destination_status(runtimes[-1], dest)
    assert status["checkpoint"]["snapshot_id"] == folded.to_snapshot
    assert status["digest"]["state"].startswith("a damaged segment")

    world.table.append(customers([(6, "six@example.com", "pro")]))
    rebuilt = await cycle(runtimes, world)
    assert rebuilt.plan == "full"
    assert rebuilt.digest_rebuilt is not None and "checksum" in rebuilt.digest_rebuilt
    assert sorted(api.records) == ["1", "2", "3", "4", "5", "6"]
    status = destination_status(runtimes[-1], dest)
    assert (status["digest"]["state"], status["digest"]["entries"]) == ("ok", 6)
