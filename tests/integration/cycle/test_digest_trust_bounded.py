"""test_digest_trust.py again, with every digest taken through the bounded-memory path
(changes/digest_spill*.py: DuckDB on disk), as a digest or table beyond SPILL_ROWS is:
the destination, the counts and what reaches it must be the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from floe_egress.changes import digest as changes_digest
from floe_egress.changes import digest_spill as spill
from floe_egress.daemon import digest as daemon_digest
from floe_egress.daemon.health import destination_status
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows, rest_destination
from tests.integration.cycle.test_digest_trust import *  # noqa: F403
from tests.integration.cycle.test_digest_trust import cycle, expire_synced


@pytest.fixture(autouse=True)
def bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_digest, "SPILL_ROWS", 0)
    monkeypatch.setattr(changes_digest, "SPILL_ROWS", 0)


async def test_a_large_digest_compacts_on_disk_and_still_gives_exact_changes(
    world_with_api: World,
    api: FakeRestApi,
    runtimes: list[Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every 2 segments the digest is folded by DuckDB (the bounded path's compaction);
    a later cycle whose A expired compares with that folded digest exactly."""
    monkeypatch.setattr("floe_egress.daemon.digest.COMPACT_AFTER", 2)
    world = world_with_api
    world.table.append(customers(initial_rows(4)))
    await cycle(runtimes, world)
    for i in (5, 6, 7):
        world.table.append(customers([(i, f"n{i}@example.com", "pro")]))
        assert (await cycle(runtimes, world)).inserted == 1
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    dest = loaded.spec.ingestion.destinations[0]
    stored = runtimes[-1].store.read_digest(dest.name, data=False)
    assert stored is not None
    assert len(stored.segments) <= 2, "folded into one segment every 2"
    kept = [(i, f"n{i}@example.com", "pro") for i in (5, 6)]
    world.reload().overwrite(
        customers(
            [
                (1, "one@example.com", "enterprise"),
                *initial_rows(4)[1:],
                *kept,
                (8, "eight@example.com", "pro"),
            ]
        )
    )
    expire_synced(world)

    result = await cycle(runtimes, world)

    assert result.status == "ok", result.error
    assert result.plan == "digest", result.reason
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 1)
    assert sorted(api.records) == ["1", "2", "3", "4", "5", "6", "8"]
    assert api.records["1"]["plan_tier"] == "enterprise"
    status = destination_status(runtimes[-1], dest)
    assert (status["digest"]["state"], status["digest"]["entries"]) == ("ok", 7)


async def test_spill_files_go_under_the_destinations_work_directory(
    world_with_api: World,
    runtimes: list[Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not the system's temporary directory (often memory): the state's disk."""
    made: list[str] = []
    original = spill.Spilled.__init__

    def recording(self: spill.Spilled, key: Any, work_dir: str | None = None) -> None:
        original(self, key, work_dir)
        made.append(self.directory)

    monkeypatch.setattr(spill.Spilled, "__init__", recording)
    world = world_with_api
    world.table.append(customers(initial_rows(4)))
    await cycle(runtimes, world)
    world.table.append(customers([(5, "five@example.com", "pro")]))
    expire_synced(world)

    result = await cycle(runtimes, world)

    assert (result.plan, result.inserted) == ("digest", 1)
    destination_dir = runtimes[-1].work_dir / "destinations" / "crm"
    assert made and all(Path(d).parent == destination_dir for d in made), made
    assert not any(map(os.path.exists, made)), "spill files are removed after the cycle"
