"""SIGKILL in the middle of a digest-based resync, then a restart, in each sync mode.

A is expired with changes on both sides of the expiry, so the cycle compares the table
with the digest; the API kills `floe-egress sync` at its 2nd delivery request, before
storing it (the batch was on the wire). The restart compares again: the keys the killed
process reserved are sent again, nothing is lost, the API ends as the mode promises,
and each count of the restart is at most the net change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from floe_egress.config.models import SyncMode
from tests.fixtures.crash_harness import ServerThread, egress_env, expire_leases, posts
from tests.fixtures.crash_points import AtPost, Rig
from tests.fixtures.digest_dests import FIELDS, MODES, Counts, Record, promised, record
from tests.fixtures.world import World, customers, initial_rows, rest_destination
from tests.integration.crash.conftest import BATCH_SIZE, SEQUENTIAL, Restart
from tests.integration.cycle.test_digest_modes import (
    changes_after_expiry,
    changes_before_expiry,
    expire_all_but_current,
)


def held(server: ServerThread) -> dict[int, Record]:
    records, _ = server.snapshot()
    return {int(k): tuple(r.get(f) for f in FIELDS) for k, r in records.items()}


def events(server: ServerThread) -> list[tuple[str, Record]]:
    async def copy() -> list[dict[str, Any]]:
        return list(server.api.events)

    return sorted((e["op"], tuple(e["record"].get(f) for f in FIELDS)) for e in server.call(copy()))


def preload(server: ServerThread, rows: dict[int, Record]) -> None:
    async def put() -> None:
        for k, r in rows.items():
            server.api.records[str(k)] = dict(zip(FIELDS, r, strict=True))

    server.call(put())


@pytest.mark.parametrize("mode", MODES)
def test_a_digest_resync_killed_midway_restarts_and_loses_nothing(
    tmp_path: Path, server: ServerThread, restart_in_process: Restart, mode: SyncMode
) -> None:
    state_url = f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    world = World(tmp_path / "world", state_url)
    config = world.write_config(
        [rest_destination(server.url, mode=mode, batch_size=BATCH_SIZE, rate_limit=SEQUENTIAL)]
    )
    rig = Rig(world, server, config, egress_env(tmp_path / "work"), state_url)
    world.table.append(customers(initial_rows(60)))
    if mode == "update":
        preload(server, {k: record(r) for k, r in world.rows().items()})
    seeded = restart_in_process(rig)
    assert seeded.returncode == 0, seeded.stderr
    before, before_events, at_a = held(server), events(server), world.rows()
    changes_before_expiry(world)
    expire_all_but_current(world)
    changes_after_expiry(world, at_a)
    sent = {k: record(r) for k, r in at_a.items()}
    promise = promised(mode, sent if mode == "append" else before, world.rows())

    crash = AtPost(2, applied=False).crash(rig)
    assert len(posts(crash.requests)) == 2

    expire_leases(state_url)
    finished = restart_in_process(rig)
    assert finished.returncode == 0, finished.stderr
    [result] = finished.results()
    assert (result["status"], result["plan"]) == ("ok", "digest"), result
    restart = Counts(result["inserted"], result["updated"], result["deleted"])
    assert restart.inserted <= promise.counts.inserted, (restart, promise.counts)
    assert restart.updated <= promise.counts.updated + promise.counts.inserted
    assert restart.deleted <= promise.counts.deleted
    if mode == "append":
        delivered = [e for e in events(server) if e not in before_events]
        assert set(promise.events) <= set(delivered), "every change arrives"
    else:
        assert held(server) == promise.held
    again = restart_in_process(rig)
    assert [r["status"] for r in again.results()] == ["noop"]
