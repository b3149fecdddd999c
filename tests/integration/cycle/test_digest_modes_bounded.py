"""test_digest_modes.py again, with every digest taken through the bounded-memory path
(changes/digest_spill*.py: DuckDB on disk), as a digest or table beyond SPILL_ROWS is:
the destination, the counts and what reaches it must be the same."""

from __future__ import annotations

import pytest

from floe_egress.changes import digest as changes_digest
from floe_egress.daemon import digest as daemon_digest
from tests.integration.cycle.test_digest_modes import *  # noqa: F403


@pytest.fixture(autouse=True)
def bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_digest, "SPILL_ROWS", 0)
    monkeypatch.setattr(changes_digest, "SPILL_ROWS", 0)
