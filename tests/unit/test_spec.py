"""floe_egress.spec: config's loader, schema and compiler with the sink registry handed in."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import floe_egress.spec as spec


def test_public_members_are_declared() -> None:
    public = {
        name
        for name, value in vars(spec).items()
        if inspect.isfunction(value)
        and value.__module__ == spec.__name__
        and not name.startswith("_")
    }

    assert public == set(spec.__all__)


def test_entry_points_the_cli_and_the_daemon_call() -> None:
    assert list(inspect.signature(spec.load_spec).parameters) == [
        "path",
        "check_secrets",
        "environ",
        "manifest",
    ]
    assert list(inspect.signature(spec.compile_artifacts).parameters) == ["loaded", "now"]
    assert list(inspect.signature(spec.spec_schema).parameters) == []


POSTGRES = {
    "name": "app_db",
    "source_table": "gold.customers",
    "sink_type": "postgres",
    "sink_config": {"credentials": "${env:APP_DB_URL}", "table": "customers"},
}
REST_API = {
    "name": "crm",
    "source_table": "gold.customers",
    "sink_type": "rest_api",
    "sink_config": {"url": "https://api.example.com/v1/contacts"},
}

# Validates the file as `floe-egress validate` does, then prints the modules imported.
VALIDATE = """
import json, sys
from floe_egress.cli import main
code = main(["validate", "--config", sys.argv[1]])
watched = sorted(m for m in sys.modules if m.split(".")[0] in ("aiohttp", "dlt")
                 or m.startswith("floe_egress.sinks"))
print(json.dumps({"code": code, "modules": watched}))
"""


def imported_by_validate(tmp_path: Path, destination: dict[str, Any]) -> set[str]:
    doc = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "imports"},
        "ingestion": {"destinations": [destination]},
    }
    path = tmp_path / "floe.yaml"
    path.write_text(json.dumps(doc))
    env = {**os.environ, "APP_DB_URL": "postgresql://app:pw@127.0.0.1:5432/app"}
    out = subprocess.run(
        [sys.executable, "-c", VALIDATE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["code"] == 0, out.stderr
    return set(result["modules"])


def test_validating_a_postgres_destination_imports_no_http_sink(tmp_path: Path) -> None:
    modules = imported_by_validate(tmp_path, POSTGRES)

    assert "floe_egress.sinks.database" in modules
    assert {m for m in modules if m.startswith("floe_egress.sinks.http")} == set()
    assert {m for m in modules if m.split(".")[0] == "aiohttp"} == set()


def test_validating_a_rest_api_destination_imports_no_database_sink(tmp_path: Path) -> None:
    modules = imported_by_validate(tmp_path, REST_API)

    assert "floe_egress.sinks.http.rest_api" in modules
    assert {m for m in modules if m.startswith("floe_egress.sinks.database")} == set()
    assert "floe_egress.sinks.http.hubspot" not in modules
    assert "floe_egress.sinks.http.salesforce" not in modules
