"""Fixtures for crash tests: a World, a CrashApi in a background thread, a floe.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import cli_isolation, run_cli
from tests.fixtures.crash_harness import ServerThread, egress_env
from tests.fixtures.crash_points import Rig
from tests.fixtures.world import World, customers, initial_rows, rest_destination

__all__ = ["cli_isolation"]

BATCH_SIZE = 10
ROWS = 60


@pytest.fixture
def server() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.close()


def make_rig(root: Path, server: ServerThread, state_url: str) -> Rig:
    world = World(root / "world", state_url)
    config = world.write_config([rest_destination(server.url, batch_size=BATCH_SIZE)])
    return Rig(world, server, config, egress_env(root / "work"), state_url)


@pytest.fixture
def rig(tmp_path: Path, server: ServerThread) -> Rig:
    """SQLite state (the default backend)."""
    return make_rig(tmp_path, server, f"sqlite:///{tmp_path / 'state' / 'state.db'}")


@pytest.fixture
def rig_pg(tmp_path: Path, server: ServerThread, pg_database: str) -> Rig:
    """PostgreSQL state: state.url is a fresh database."""
    return make_rig(tmp_path, server, pg_database)


@pytest.fixture
def seeded(rig: Rig, capsys: pytest.CaptureFixture[str], cli_isolation: None) -> Rig:
    """`rig` after a first successful sync of ROWS rows (in this process, no crash)."""
    rig.world.table.append(customers(initial_rows(ROWS)))
    run = run_cli(capsys, "sync", "--config", str(rig.config))
    assert run.code == 0, run.err
    return rig
