"""The registry knows the built-in sink types by name and imports a type's module only
when that type is asked for (each check runs in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

SINK_MODULES = """
def sink_modules():
    return sorted(m for m in sys.modules if m.startswith("floe_egress.sinks.")
                  and m.split(".")[2] in ("http", "database"))
"""


def run(code: str) -> Any:
    script = f"import json, sys\n{SINK_MODULES}\n{code}"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_names_are_listed_without_importing_a_sink_module() -> None:
    result = run(
        "from floe_egress.sinks.registry import sink_type_names, sink_types\n"
        "names = sink_type_names()\n"
        "before = sink_modules()\n"
        "print(json.dumps([names, before, sorted(sink_types())]))"
    )
    names, imported, all_types = result

    assert imported == []
    assert names == all_types
    assert {"rest_api", "hubspot", "salesforce", "postgres", "mysql"} <= set(names)


def test_asking_for_a_type_imports_its_module_only() -> None:
    result = run(
        "from floe_egress.sinks.registry import get_sink_type\n"
        "found = get_sink_type('hubspot').name, get_sink_type('nope')\n"
        "print(json.dumps([found, sink_modules()]))"
    )
    found, imported = result

    assert found == ["hubspot", None]
    assert "floe_egress.sinks.http.hubspot" in imported
    assert [m for m in imported if "rest_api" in m or "salesforce" in m or "database" in m] == []


def test_a_built_in_name_cannot_be_taken_before_its_module_is_imported() -> None:
    result = run(
        "from floe_egress.sinks.registry import SinkType, get_sink_type, register\n"
        "from pydantic import BaseModel\n"
        "try:\n"
        "    register(SinkType('postgres', BaseModel, frozenset({'upsert'}), print))\n"
        "except ValueError as exc:\n"
        "    error = str(exc)\n"
        "print(json.dumps([error, get_sink_type('postgres').description]))"
    )
    error, description = result

    assert error == "sink type 'postgres' is registered twice"
    assert description.startswith("A PostgreSQL table")
