"""Fixtures for end-to-end cycles: a World (table + config + state) and a REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def world(tmp_path: Path, state_url: str) -> World:
    return World(tmp_path / "world", state_url)


@pytest.fixture
async def api() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token="Bearer good").start()
    yield server
    await server.stop()


@pytest.fixture
async def runtimes() -> AsyncIterator[list[Runtime]]:
    """Runtimes a test builds; closed afterwards."""
    built: list[Runtime] = []
    yield built
    for runtime in built:
        await runtime.close()
