"""Start-up pays only for what the run uses (issue 13): no dlt until a batch is loaded.

Each case runs in a fresh interpreter, the only place where "dlt was never imported"
can be observed: the test process imported it long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.world import World, customers, initial_rows
from tests.integration.sinks_db.conftest import Db, make_db
from tests.integration.sinks_db.test_failures import PASSWORD, with_login

CHECK = """
import asyncio, json, sys
from pathlib import Path
from floe_egress.config.models import RetryConfig
from floe_egress.errors import SinkError
from floe_egress.sinks.registry import BuildRequest, get_sink_type

kind, config, work = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
sink_type = get_sink_type(kind)
request = BuildRequest(
    destination="app_db", sink_config=sink_type.config_model.model_validate(config),
    mode="upsert", key=("id",), field_mapping=None, batch_size=None, rate_limit=None,
    retry=RetryConfig(), work_dir=work,
)
try:
    asyncio.run(sink_type.build(request).check())
    outcome = {"error": None, "message": ""}
except SinkError as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
outcome["dlt"] = sorted(m for m in sys.modules if m.split(".")[0] == "dlt")
print(json.dumps(outcome))
"""

SYNC = """
import json, sys
from floe_egress.cli import main
code = main(sys.argv[1:])
dlt = sorted(m for m in sys.modules if m.split(".")[0] == "dlt")
print("PROBE " + json.dumps({"code": code, "dlt": dlt}), file=sys.stderr)
"""


def python(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120
    )


def check(db: Db, tmp_path: Path, **config: Any) -> dict[str, Any]:
    run = python(CHECK, db.kind, json.dumps({**db.config, **config}), str(tmp_path / "work"))
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return outcome


def test_the_check_connects_without_importing_dlt(db: Db, tmp_path: Path) -> None:
    assert check(db, tmp_path) == {"error": None, "message": "", "dlt": []}


@pytest.mark.parametrize(
    ("kind", "user", "port", "reason", "error"),
    [
        ("postgres", "nobody", None, 'role "nobody" does not exist', "PermanentSinkError"),
        ("mysql", "root", None, "Access denied", "PermanentSinkError"),
        ("postgres", "postgres", 1, "Connection refused", "TransientSinkError"),
        ("mysql", "root", 1, "Connection refused", "TransientSinkError"),
    ],
)
def test_refused_logins_and_closed_ports_fail_as_clearly_without_dlt(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kind: str,
    user: str,
    port: int | None,
    reason: str,
    error: str,
) -> None:
    db = make_db(request, kind, tmp_path)
    outcome = check(db, tmp_path, credentials=with_login(db.url, user, PASSWORD, port))
    assert outcome["error"] == error
    assert outcome["message"].startswith(f"destination 'app_db' ({kind} ")
    assert ": cannot connect: " in outcome["message"]
    assert reason in outcome["message"]
    assert PASSWORD not in outcome["message"]
    assert outcome["dlt"] == []


def sync(config: Path) -> tuple[list[dict[str, Any]], list[str]]:
    run = python(SYNC, "sync", "--config", str(config), "--json")
    probe = json.loads(run.stderr.rsplit("PROBE ", 1)[1])
    assert probe["code"] == 0, run.stderr
    results: list[dict[str, Any]] = json.loads(run.stdout)
    return results, probe["dlt"]


def test_a_sync_with_nothing_to_send_never_imports_dlt(world: World, pg: Db) -> None:
    world.table.append(customers(initial_rows(10)))
    destination = {
        "name": "app_db",
        "source_table": "gold.customers",
        "mode": "mirror",
        "sink_type": "postgres",
        "sink_config": pg.config,
    }
    config = world.write_config([destination])

    [first], imported = sync(config)
    assert (first["status"], first["inserted"]) == ("ok", 10)
    assert "dlt" in imported, "loading rows goes through dlt"
    assert len(pg.execute(f"SELECT * FROM {pg.qualified()}")) == 10

    [again], imported = sync(config)
    assert (again["status"], again["plan"]) == ("noop", "noop")
    assert imported == []
