"""Fixtures for command-line tests: `floe_egress.cli.main` in this process against a
World (Iceberg table + floe.yaml + SQLite state) and REST APIs on a server thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.fixtures.cli_runner import CliRun, cli_isolation, run_cli
from tests.fixtures.crash_harness import ServerThread
from tests.fixtures.world import World, rest_destination

__all__ = ["cli_isolation"]


@pytest.fixture(autouse=True)
def _isolated(cli_isolation: None) -> None:
    """Every CLI test runs with its own work directory and restored logging."""


@pytest.fixture
def server() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.close()


@pytest.fixture
def other_server() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "world", f"sqlite:///{tmp_path / 'state' / 'state.db'}")


@pytest.fixture
def config(world: World, server: ServerThread) -> Path:
    """floe.yaml with one mirror destination `crm` (batches of 10 records)."""
    return world.write_config([rest_destination(server.url, batch_size=10)])


def destination(name: str, server: ServerThread, **overrides: Any) -> dict[str, Any]:
    return rest_destination(server.url, name=name, batch_size=10, **overrides)


class Cli(Protocol):
    def __call__(self, *argv: str) -> CliRun: ...


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("sync", "--config", path)`: runs `floe-egress sync --config path` here."""

    def run(*argv: str) -> CliRun:
        return run_cli(capsys, *argv)

    return run
