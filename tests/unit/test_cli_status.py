"""The cells and the details of `floe-egress status` from status documents as
daemon/health.py makes them (the end-to-end tests are in tests/integration/cli)."""

from __future__ import annotations

from typing import Any

import pytest

from floe_egress.cli_status import details, human_seconds, print_status, state_of, status_row
from tests.fixtures.cli_runner import status_table

NOW = 1_800_000_000.0


def status(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "destination": "crm",
        "source_table": "gold.customers",
        "ref": "main",
        "sink_type": "rest_api",
        "mode": "mirror",
        "enabled": True,
        "checkpoint": {"snapshot_id": 42, "snapshot_timestamp_ms": 1, "updated_at": NOW - 5},
        "lag_seconds": 0.0,
        "last_run": {
            "started_at": NOW - 130.5,
            "finished_at": NOW - 125,
            "status": "ok",
            "plan": "diff",
            "from_snapshot": 41,
            "to_snapshot": 42,
            "inserted": 1,
            "updated": 2,
            "deleted": 3,
            "invalid": 0,
            "failed": 4,
            "error": None,
            "run_id": 7,
            "invalid_sample": [],
            "duration_seconds": 5.5,
        },
        "failed_rows": 4,
        "digest": {"state": "ok", "segments": 2, "reserved": 1, "entries": 10},
        "error": None,
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (86_399, "23 h"),
        (86_400, "1 d"),
        (10 * 86_400 + 5, "10 d"),
    ],
)
def test_human_seconds_uses_the_largest_whole_unit(seconds: float, shown: str) -> None:
    assert human_seconds(seconds) == shown


def test_a_row_in_the_order_of_the_columns() -> None:
    assert status_row(status(), NOW) == [
        "crm",
        "gold.customers@main",
        "rest_api (mirror)",
        "rows failing",
        "42",
        "0 s",
        "ok (diff) 2 min ago",
        "1/2/3/4",
        "5.5 s",
        "4",
        "ok (10 entries, 2 segments, 1 reserved)",
    ]
    assert details(status()) == []


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({"failed_rows": 0}, "healthy"),
        ({"failed_rows": 2}, "rows failing"),
        ({"checkpoint": None, "last_run": None, "failed_rows": 0}, "never synced"),
        ({"last_run": status()["last_run"] | {"status": "failed", "error": "boom"}}, "failing"),
        ({"error": "table gold.customers does not exist"}, "failing"),
        ({"enabled": False}, "disabled"),
    ],
)
def test_state(changes: dict[str, Any], state: str) -> None:
    assert state_of(status(**changes)) == state


def test_what_does_not_fit_goes_below_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    broken = status(
        destination="billing",
        error="table gold.customers does not exist",
        lag_seconds=None,
        last_run=status()["last_run"]
        | {
            "status": "failed",
            "error": "HTTP 401 [bold]refused[/bold]",
            "invalid": 2,
            "invalid_sample": [{"key": {"customer_id": 3}, "reason": "duplicate_key", "rows": 2}],
        },
        digest={
            "state": "missing: the next cycle sends every row once",
            "segments": 0,
            "reserved": 0,
            "entries": 0,
        },
    )
    print_status([status(), broken], now=NOW)
    rows, below = status_table(capsys.readouterr().out)
    assert (rows["billing"]["state"], rows["billing"]["lag"]) == ("failing", "-")
    assert rows["billing"]["digest"] == "missing"
    assert rows["crm"]["state"] == "rows failing", "4 failed rows"
    assert below == [
        "billing:",
        "  error: table gold.customers does not exist",
        "  last run error: HTTP 401 [bold]refused[/bold]",
        "  invalid: 2 rows never sent (null or duplicated key)",
        '    {"customer_id": 3} duplicate_key (2 rows)',
        "  digest: missing: the next cycle sends every row once",
    ], "printed as it is: no markup read into an error"


def test_a_long_value_never_wraps_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "a-destination-with-a-rather-long-name-" * 6
    print_status([status(destination=long_name)], now=NOW)
    out = capsys.readouterr().out
    rows, _ = status_table(out)
    assert list(rows) == [long_name]
    assert len(out.splitlines()[0]) > 200, "wider than the least width, not wrapped"
