"""Config comes before sinks in the data flow: no module of floe_egress/config imports
floe_egress.sinks, in any form (module level, inside a function, relative, by name)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import floe_egress.config

CONFIG_DIR = Path(floe_egress.config.__file__).parent
PACKAGE = "floe_egress.config"
FORBIDDEN = "floe_egress.sinks"


def _is_forbidden(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(FORBIDDEN + ".")


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def sink_imports(source: str, package: str = PACKAGE) -> list[str]:
    """Each import of floe_egress.sinks in the source, as `line: what`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: {a.name}" for a in node.names if _is_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
            if any(_is_forbidden(name) for name in names):
                found.append(f"{node.lineno}: from {module} import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # importlib.import_module("floe_egress.sinks...") and the like
            found += [f"{node.lineno}: {node.value}"] if _is_forbidden(node.value.strip()) else []
    return found


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


MODULES = sorted(CONFIG_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(CONFIG_DIR)) for p in MODULES])
def test_config_module_does_not_import_sinks(path: Path) -> None:
    package = ".".join([PACKAGE, *path.parent.relative_to(CONFIG_DIR).parts])

    assert sink_imports(path.read_text(encoding="utf-8"), package) == []


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
