"""The data flows config -> changes -> sinks -> state, with the daemon, the platform
plugin and the command line on top: no module of a step imports a later step (nor what
sits on top), in any form (module level, inside a function, relative, by name). In
particular config does not import sinks: floe_egress/spec.py hands it what it needs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import floe_egress

ROOT = Path(floe_egress.__file__).parent
STEPS = ("config", "changes", "sinks", "state")
ON_TOP = ("daemon", "platform", "cli", "spec", "demo")


def later_than(step: str) -> tuple[str, ...]:
    """What a module of `step` must not import."""
    return tuple(f"floe_egress.{s}" for s in (*STEPS[STEPS.index(step) + 1 :], *ON_TOP))


def _is_forbidden(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def forbidden_imports(source: str, package: str, forbidden: tuple[str, ...]) -> list[str]:
    """Each import in the source of a module in `forbidden`, as `line: what`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: {a.name}" for a in node.names if _is_forbidden(a.name, forbidden)
            ]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
            if any(_is_forbidden(name, forbidden) for name in names):
                found.append(f"{node.lineno}: from {module} import ...")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _is_forbidden(node.value.strip(), forbidden)
        ):  # importlib.import_module("floe_egress.sinks...") and the like
            found.append(f"{node.lineno}: {node.value}")
    return found


def sink_imports(source: str, package: str = "floe_egress.config") -> list[str]:
    return forbidden_imports(source, package, later_than("config"))


@pytest.mark.parametrize(
    "source",
    [
        "import floe_egress.sinks",
        "import floe_egress.sinks.registry as registry",
        "from floe_egress.sinks.checks import check_destination_items",
        "from floe_egress import sinks",
        "from ..sinks import registry",
        "from ..sinks.registry import get_sink_type",
        "def f():\n    from floe_egress.sinks.registry import sink_types\n    return sink_types",
        "import importlib\nimportlib.import_module('floe_egress.sinks.registry')",
    ],
    ids=[
        "import",
        "import as",
        "from import",
        "from package import module",
        "relative module",
        "relative from import",
        "inside a function",
        "import_module by name",
    ],
)
def test_the_scan_finds_every_form(source: str) -> None:
    assert sink_imports(source) != []


def test_the_scan_lets_config_imports_through() -> None:
    source = "from floe_egress.config.models import FloeSpec\nfrom . import secrets\n"

    assert sink_imports(source) == []


MODULES = sorted(p for step in STEPS for p in (ROOT / step).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_no_module_imports_a_later_step(path: Path) -> None:
    parts = path.relative_to(ROOT).parent.parts
    package = ".".join(["floe_egress", *parts])

    assert forbidden_imports(path.read_text(encoding="utf-8"), package, later_than(parts[0])) == []


def test_loading_with_config_alone_imports_no_sink_module(tmp_path: Path) -> None:
    path = tmp_path / "floe.yaml"
    path.write_text(
        "apiVersion: floe.dev/v1\nkind: FloeSpec\nmetadata: {name: alone}\n"
        "ingestion:\n  destinations:\n"
        "    - {name: crm, source_table: gold.c, sink_type: rest_api, sink_config: {}}\n"
    )
    code = (
        "import sys; from floe_egress.config import load_config; "
        "load_config(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.startswith('floe_egress.sinks')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "[]"
