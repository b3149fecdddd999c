"""Every package declares its public surface once (`__all__`), and it is the truth: each
declared name exists, and each public name the package binds is declared."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import floe_egress

PACKAGES = sorted(
    ["floe_egress"]
    + [
        info.name
        for info in pkgutil.walk_packages(floe_egress.__path__, "floe_egress.")
        if info.ispkg
    ]
)
NOT_EXPORTS = {"annotations", "TYPE_CHECKING"}
"""`from __future__ import annotations` and typing's flag bind these in every module."""


def bound_publicly(package: ModuleType) -> set[str]:
    """Public names the package binds that it made or took from floe_egress: not its
    submodules, not names it imported from elsewhere (typing, pyarrow)."""
    names = set()
    for name, value in vars(package).items():
        if name.startswith("_") or name in NOT_EXPORTS or inspect.ismodule(value):
            continue
        origin = getattr(value, "__module__", None)
        if isinstance(origin, str) and not origin.startswith("floe_egress"):
            continue
        names.add(name)
    return names


def test_every_package_is_checked() -> None:
    expected = {
        "floe_egress",
        "floe_egress.changes",
        "floe_egress.config",
        "floe_egress.daemon",
        "floe_egress.platform",
        "floe_egress.sinks",
        "floe_egress.sinks.database",
        "floe_egress.sinks.http",
        "floe_egress.state",
    }
    assert set(PACKAGES) == expected


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_declared_once_and_every_name_exists(name: str) -> None:
    package = importlib.import_module(name)
    declared = package.__all__

    assert len(declared) == len(set(declared)), "no name twice"
    assert [n for n in declared if not hasattr(package, n)] == []


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_is_declared(name: str) -> None:
    package = importlib.import_module(name)

    assert bound_publicly(package) - set(package.__all__) == set()
