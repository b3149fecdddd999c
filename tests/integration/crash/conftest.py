"""Fixtures for crash tests: a World, a CrashApi in a background thread, a floe.yaml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import cli_isolation, run_cli
from tests.fixtures.crash_harness import Finished, ServerThread, egress_env, run_sync
from tests.fixtures.crash_points import Rig
from tests.fixtures.world import World, customers, initial_rows, rest_destination

__all__ = ["cli_isolation"]

BATCH_SIZE = 10
ROWS = 60
SEQUENTIAL = {"requests_per_second": 1000, "max_concurrency": 1}
"""One request at a time: a kill at the n-th request falls between batches n-1 and n."""


@pytest.fixture
def server() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.close()


def make_rig(root: Path, server: ServerThread, state_url: str) -> Rig:
    world = World(root / "world", state_url)
    config = world.write_config(
        [rest_destination(server.url, batch_size=BATCH_SIZE, rate_limit=SEQUENTIAL)]
    )
    return Rig(world, server, config, egress_env(root / "work"), state_url)


@pytest.fixture
def rig(tmp_path: Path, server: ServerThread) -> Rig:
    """SQLite state (the default backend)."""
    return make_rig(tmp_path, server, f"sqlite:///{tmp_path / 'state' / 'state.db'}")


@pytest.fixture
def rig_pg(tmp_path: Path, server: ServerThread, pg_database: str) -> Rig:
    """PostgreSQL state: state.url is a fresh database."""
    return make_rig(tmp_path, server, pg_database)


def seed(rig: Rig, capsys: pytest.CaptureFixture[str]) -> Rig:
    """A first successful sync of ROWS rows, in this process (no crash to test here)."""
    rig.world.table.append(customers(initial_rows(ROWS)))
    run = run_cli(capsys, "sync", "--config", str(rig.config))
    assert run.code == 0, run.err
    return rig


@pytest.fixture
def seeded(rig: Rig, capsys: pytest.CaptureFixture[str], cli_isolation: None) -> Rig:
    return seed(rig, capsys)


@pytest.fixture
def seeded_pg(rig_pg: Rig, capsys: pytest.CaptureFixture[str], cli_isolation: None) -> Rig:
    return seed(rig_pg, capsys)


Restart = Callable[[Rig], Finished]


def restart_process(rig: Rig) -> Finished:
    """`floe-egress sync --json` as a new process."""
    return run_sync(rig.config, rig.env)


@pytest.fixture
def restart_in_process(capsys: pytest.CaptureFixture[str], cli_isolation: None) -> Restart:
    """`floe-egress sync --json` through `cli.main` in this process: a fresh Runtime on
    the state the killed process left, without paying the interpreter start again."""

    def restart(rig: Rig) -> Finished:
        run = run_cli(capsys, "sync", "--config", str(rig.config), "--json")
        return Finished(run.code, run.out, run.err)

    return restart
