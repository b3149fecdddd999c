"""Invalid rows (a key held by more than one row) are counted and listed by `plan`,
`sync`, `status` and the logs, and the append and full plans agree on them.

The table: customers 1-5, then an append-only commit adding a second row for 3 (whose
first row sits in the first data file) and two rows for 7. Neither key is sent: the
destination keeps what it had for 3, and never gets 7.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.cli_runner import status_table
from tests.fixtures.crash_harness import ServerThread
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.conftest import Cli

SAMPLE = [
    {"key": {"customer_id": 3}, "reason": "duplicate_key", "rows": 2},
    {"key": {"customer_id": 7}, "reason": "duplicate_key", "rows": 2},
]
LINES = (
    "invalid: 4 rows never sent (null or duplicated key)",
    '{"customer_id": 3} duplicate_key (2 rows)',
    '{"customer_id": 7} duplicate_key (2 rows)',
)


def commit_duplicates(world: World) -> None:
    world.reload().append(
        customers(
            [
                (3, "three-again@example.com", "pro"),
                (6, "six@example.com", "free"),
                (7, "seven-a@example.com", "free"),
                (7, "seven-b@example.com", "team"),
            ]
        )
    )


def records(server: ServerThread) -> dict[str, Any]:
    return server.snapshot()[0]


def before_duplicates() -> dict[str, Any]:
    rows = [*initial_rows(5), (6, "six@example.com", "free")]
    return {str(k): {"external_id": k, "email": e, "plan_tier": p} for k, e, p in rows}


def log_events(err: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_invalid_keys_are_listed_and_the_full_resync_agrees_with_the_append(
    world: World, server: ServerThread, config: Path, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    assert cli("sync", "--config", str(config)).code == 0
    commit_duplicates(world)

    plan = cli("plan", "--config", str(config))
    assert plan.code == 0, plan.err
    assert all(line in plan.out for line in LINES), plan.out
    [planned] = cli("plan", "--config", str(config), "--json").json()
    assert (planned["plan"], planned["inserted"], planned["invalid"]) == ("append", 1, 4)
    assert planned["invalid_sample"] == SAMPLE

    synced = cli("sync", "--config", str(config), "--json")
    assert synced.code == 0, synced.err
    [result] = synced.json()
    assert (result["plan"], result["inserted"], result["updated"]) == ("append", 1, 0)
    assert (result["invalid"], result["invalid_sample"]) == (4, SAMPLE)
    [logged] = log_events(synced.err, "invalid_rows")
    assert (logged["invalid"], logged["sample"], logged["destination"]) == (4, SAMPLE, "crm")
    assert records(server) == before_duplicates(), "3 keeps what it had, 7 is never sent"

    status = cli("status", "--config", str(config))
    rows, after_table = status_table(status.out)
    assert rows["crm"]["last run"].startswith("ok (append) "), rows["crm"]["last run"]
    assert rows["crm"]["i/u/d/failed"] == "1/0/0/0"
    assert after_table == ["crm:", f"  {LINES[0]}", *(f"    {line}" for line in LINES[1:])]
    [state] = cli("status", "--config", str(config), "--json").json()
    assert (state["last_run"]["invalid"], state["last_run"]["invalid_sample"]) == (4, SAMPLE)

    assert cli("resync", "crm", "--config", str(config)).code == 0
    full = cli("sync", "--config", str(config))
    assert full.code == 0, full.err
    assert "(plan full," in full.out
    # Every valid row again; the digest knows the destination holds them: updates.
    assert "sent: 0 inserted, 5 updated, 0 deleted; 0 failed, 4 invalid" in full.out
    assert all(line in full.out for line in LINES), full.out
    assert records(server) == before_duplicates(), "the full resync neither sends nor deletes"


def test_a_key_unique_again_is_sent_as_a_full_resync_would_send_it(
    world: World, server: ServerThread, config: Path, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    commit_duplicates(world)
    assert cli("sync", "--config", str(config)).code == 0
    world.reload().delete("email = 'three-again@example.com'")
    world.reload().delete("email = 'seven-b@example.com'")

    [result] = cli("sync", "--config", str(config), "--json").json()
    assert (result["plan"], result["inserted"], result["updated"]) == ("diff", 2, 0)
    assert (result["invalid"], result["invalid_sample"]) == (0, [])
    expected = before_duplicates()
    expected["7"] = {"external_id": 7, "email": "seven-a@example.com", "plan_tier": "free"}
    assert records(server) == expected
