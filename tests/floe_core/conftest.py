"""Tests against the real floe-core (0.1.0a1), run by `make test-floe` in `.venv-floe`.

The main environment has no floe-core: there these files are not collected at all (not
skipped), and `make test` runs them in their own environment after the main suite.
"""

from __future__ import annotations

from importlib.util import find_spec

import pytest

if find_spec("floe_core") is None:
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/floe_core/" in str(item.path):
            item.add_marker(pytest.mark.floe_core)
