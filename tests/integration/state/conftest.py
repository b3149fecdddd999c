"""The same state store tests on SQLite and on PostgreSQL (a fresh database per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from floe_egress.state import StateStore, open_store
from tests.integration.state.helpers import PG_SCHEMA, Backend


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'state' / 'state.db'}")
    database: str = request.getfixturevalue("pg_database")
    return Backend("postgres", f"{database}?schema={PG_SCHEMA}")


@pytest.fixture
def store(backend: Backend) -> Iterator[StateStore]:
    opened = open_store(backend.url)
    yield opened
    opened.close()
