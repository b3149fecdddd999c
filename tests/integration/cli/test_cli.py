"""The command line end to end: `floe_egress.cli.main([...])` in this process, against
an Iceberg table, SQLite state and REST APIs served from a background thread."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from floe_egress.state import open_store
from floe_egress.state.store import StateStore
from tests.fixtures.cli_runner import status_table
from tests.fixtures.crash_harness import ServerThread, expected_records, posts, sent_keys
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.conftest import Cli, destination

RESULT_FIELDS = {
    "destination",
    "plan",
    "from_snapshot",
    "to_snapshot",
    "inserted",
    "updated",
    "deleted",
    "invalid",
    "failed",
    "status",
    "error",
}


@pytest.fixture
def store(world: World) -> Iterator[StateStore]:
    """The state store the CLI writes, read by the test."""
    opened = open_store(world.state_url)
    yield opened
    opened.close()


def current_snapshot(world: World) -> int:
    snapshot = world.reload().current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


def deliveries(server: ServerThread) -> list[Any]:
    return posts(server.snapshot()[1])


def change_one_of_each(world: World) -> None:
    """Update 1, insert 99, delete 3."""
    world.reload().upsert(
        customers([(1, "one@example.com", "team"), (99, "new@example.com", "pro")]),
        join_cols=["customer_id"],
    )
    world.reload().delete("customer_id = 3")


# --- sync ---------------------------------------------------------------------------


def test_sync_json_prints_one_result_per_destination(
    world: World, server: ServerThread, other_server: ServerThread, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    config = world.write_config(
        [destination("crm", server), destination("billing", other_server, mode="upsert")]
    )
    run = cli("sync", "--config", str(config), "--json")
    assert run.code == 0, run.err
    results = {r["destination"]: r for r in run.json()}
    assert set(results) == {"crm", "billing"}
    for result in results.values():
        assert result.keys() >= RESULT_FIELDS
    snapshot = current_snapshot(world)
    assert {k: results["crm"][k] for k in RESULT_FIELDS} == {
        "destination": "crm",
        "plan": "full",
        "from_snapshot": None,
        "to_snapshot": snapshot,
        "inserted": 5,
        "updated": 0,
        "deleted": 0,
        "invalid": 0,
        "failed": 0,
        "status": "ok",
        "error": None,
    }
    assert server.snapshot()[0] == expected_records(world)
    assert other_server.snapshot()[0] == expected_records(world)


def test_sync_exits_1_when_a_destination_fails_and_still_syncs_the_others(
    world: World, server: ServerThread, other_server: ServerThread, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    bad_token = {"url": other_server.url, "headers": {"Authorization": "Bearer expired"}}
    config = world.write_config(
        [destination("crm", server), destination("billing", other_server, sink_config=bad_token)]
    )
    run = cli("sync", "--config", str(config), "--json")
    assert run.code == 1
    results = {r["destination"]: r for r in run.json()}
    assert results["crm"]["status"] == "ok"
    assert results["billing"]["status"] == "failed"
    assert "401" in results["billing"]["error"]
    assert "expired" not in results["billing"]["error"], "the credential is not echoed"
    assert other_server.snapshot()[0] == {}
    assert server.snapshot()[0] == expected_records(world)


@pytest.mark.parametrize("flag", ["--destination", "-d"])
def test_sync_destination_runs_only_that_destination(
    world: World, server: ServerThread, other_server: ServerThread, cli: Cli, flag: str
) -> None:
    world.table.append(customers(initial_rows(5)))
    config = world.write_config([destination("crm", server), destination("billing", other_server)])
    run = cli("sync", "--config", str(config), "--json", flag, "billing")
    assert run.code == 0, run.err
    assert [r["destination"] for r in run.json()] == ["billing"]
    assert server.snapshot()[1] == [], "the other destination's API was not contacted"
    assert other_server.snapshot()[0] == expected_records(world)


def test_sync_of_an_unknown_destination_is_a_config_error(
    world: World, config: Path, cli: Cli
) -> None:
    run = cli("sync", "--config", str(config), "--destination", "nope")
    assert run.code == 2
    assert "nope" in run.err


def test_second_sync_without_a_new_snapshot_sends_nothing_and_records_a_noop(
    world: World, server: ServerThread, config: Path, cli: Cli, store: StateStore
) -> None:
    world.table.append(customers(initial_rows(5)))
    assert cli("sync", "--config", str(config)).code == 0
    sent = len(deliveries(server))
    run = cli("sync", "--config", str(config), "--json")
    assert run.code == 0, run.err
    [result] = run.json()
    assert (result["status"], result["plan"]) == ("noop", "noop")
    assert result["from_snapshot"] == result["to_snapshot"] == current_snapshot(world)
    assert len(deliveries(server)) == sent
    last = store.last_run("crm")
    assert last is not None and last.status == "noop"
    assert len(store.runs("crm")) == 2


def test_sync_text_output_says_what_was_sent(world: World, config: Path, cli: Cli) -> None:
    world.table.append(customers(initial_rows(5)))
    run = cli("sync", "--config", str(config))
    assert run.code == 0, run.err
    assert "crm: ok (plan full" in run.out
    assert "sent: 5 inserted, 0 updated, 0 deleted; 0 failed, 0 invalid" in run.out


@pytest.mark.parametrize("command", ["sync", "plan"])
def test_a_missing_source_table_fails_that_destination_with_exit_1(
    world: World, server: ServerThread, cli: Cli, command: str
) -> None:
    world.table.append(customers(initial_rows(3)))
    config = world.write_config(
        [destination("crm", server), destination("gone", server, source_table="gold.nope")]
    )
    run = cli(command, "--config", str(config), "--json")
    assert run.code == 1
    results = {r["destination"]: r for r in run.json()}
    assert results["crm"]["status"] == "ok"
    assert results["gone"]["status"] == "failed"
    assert "gold.nope" in results["gone"]["error"]


# --- delete guard -------------------------------------------------------------------


def test_delete_guard_stops_before_sending_and_force_overrides_it(
    world: World, server: ServerThread, config: Path, cli: Cli, store: StateStore
) -> None:
    world.table.append(customers(initial_rows(10)))
    assert cli("sync", "--config", str(config)).code == 0
    checkpoint = store.get_checkpoint("crm")
    world.reload().delete("customer_id <= 8")
    sent = len(deliveries(server))

    guarded = cli("sync", "--config", str(config), "--json")
    assert guarded.code == 1
    [result] = guarded.json()
    assert result["status"] == "failed"
    assert "delete 8 of the 10 rows" in result["error"]
    assert "max_delete_fraction" in result["error"]
    assert "--force" in result["error"]
    assert len(deliveries(server)) == sent, "nothing is sent when the guard trips"
    assert store.get_checkpoint("crm") == checkpoint

    forced = cli("sync", "--config", str(config), "--json", "--force")
    assert forced.code == 0, forced.err
    [result] = forced.json()
    assert (result["status"], result["deleted"]) == ("ok", 8)
    assert server.snapshot()[0] == expected_records(world)


def test_force_for_a_destination_the_daemon_holds_is_handed_to_it(
    world: World, server: ServerThread, config: Path, cli: Cli, store: StateStore
) -> None:
    world.table.append(customers(initial_rows(10)))
    assert cli("sync", "--config", str(config)).code == 0
    world.reload().delete("customer_id <= 8")
    assert store.acquire_lease("crm", "daemon-host:4242:abcd", 60)  # a live daemon elsewhere

    handed = cli("sync", "--config", str(config), "--json", "--force")
    assert handed.code == 1, "nothing was synced here"
    [result] = handed.json()
    assert result["status"] == "skipped"
    assert "daemon-host:4242:abcd" in result["error"]
    assert "next cycle overrides the delete guard once" in result["reason"]

    store.release_lease("crm", "daemon-host:4242:abcd")  # the holder's next cycle
    [forced] = cli("sync", "--config", str(config), "--json").json()
    assert (forced["status"], forced["deleted"]) == ("ok", 8)
    assert store.pending_force("crm") is None, "used once"
    world.reload().delete("customer_id = 9")
    world.reload().delete("customer_id = 10")
    [again] = cli("sync", "--config", str(config), "--json").json()
    assert again["status"] == "failed", "the guard is back for the next mass delete"


def test_delete_guard_says_why_in_text_output(world: World, config: Path, cli: Cli) -> None:
    world.table.append(customers(initial_rows(10)))
    assert cli("sync", "--config", str(config)).code == 0
    world.reload().delete("customer_id <= 8")
    run = cli("sync", "--config", str(config))
    assert run.code == 1
    assert "crm: failed" in run.out
    assert "max_delete_fraction" in run.out and "--force" in run.out


# --- plan ---------------------------------------------------------------------------


def test_plan_sends_nothing_and_writes_nothing(
    world: World, server: ServerThread, config: Path, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    run = cli("plan", "--config", str(config), "--json")
    assert run.code == 0, run.err
    [result] = run.json()
    assert result.keys() >= RESULT_FIELDS
    assert (result["status"], result["plan"], result["inserted"]) == ("ok", "full", 5)
    assert result["to_snapshot"] == current_snapshot(world)
    assert [r["customer_id"] for r in result["sample"]["insert"]] == [1, 2, 3, 4, 5]
    assert server.snapshot()[1] == [], "plan contacts no API"
    with_state = open_store(world.state_url)
    try:
        assert with_state.get_checkpoint("crm") is None
        assert with_state.last_run("crm") is None
    finally:
        with_state.close()


def test_plan_counts_the_changes_since_the_checkpoint(
    world: World, server: ServerThread, config: Path, cli: Cli, store: StateStore
) -> None:
    world.table.append(customers(initial_rows(5)))
    assert cli("sync", "--config", str(config)).code == 0
    synced = current_snapshot(world)
    change_one_of_each(world)
    sent = len(deliveries(server))
    run = cli("plan", "--config", str(config), "--json")
    assert run.code == 0, run.err
    [result] = run.json()
    assert result["plan"] == "diff"
    assert (result["from_snapshot"], result["to_snapshot"]) == (synced, current_snapshot(world))
    assert (result["inserted"], result["updated"], result["deleted"]) == (1, 1, 1)
    # a delete carries its key; mirror mode reads no old row, so no values to show
    assert result["sample"]["delete"] == [{"customer_id": 3}]
    assert len(deliveries(server)) == sent
    checkpoint = store.get_checkpoint("crm")
    assert checkpoint is not None and checkpoint.snapshot_id == synced
    # when the old row is not known (A expired: the digest plan), the key alone
    table = world.reload()
    current = table.current_snapshot()
    assert current is not None
    older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current.snapshot_id]
    table.maintenance.expire_snapshots().by_ids(older).commit()
    [result] = cli("plan", "--config", str(config), "--json").json()
    assert result["plan"] == "digest"
    assert result["sample"]["delete"] == [{"customer_id": 3}]
    text = cli("plan", "--config", str(config))
    assert "None" not in text.out and "null" not in text.out


# --- status -------------------------------------------------------------------------


def test_status_json_follows_checkpoint_lag_last_run_and_failed_rows(
    world: World, config: Path, cli: Cli
) -> None:
    world.table.append(customers([(1, "a@example.com", "pro"), (2, "not-an-address", "pro")]))
    before = cli("status", "--config", str(config), "--json")
    assert before.code == 0, before.err
    [status] = before.json()
    assert status["destination"] == "crm"
    assert (status["checkpoint"], status["last_run"], status["failed_rows"]) == (None, None, 0)
    assert status["lag_seconds"] >= 0

    assert cli("sync", "--config", str(config)).code == 0
    [status] = cli("status", "--config", str(config), "--json").json()
    assert status["checkpoint"]["snapshot_id"] == current_snapshot(world)
    assert status["lag_seconds"] == 0
    assert status["last_run"]["status"] == "ok"
    assert (status["last_run"]["inserted"], status["last_run"]["failed"]) == (1, 1)
    assert status["failed_rows"] == 1

    world.reload().append(customers([(3, "c@example.com", "pro")]))
    [status] = cli("status", "--config", str(config), "--json").json()
    assert status["lag_seconds"] > 0, "a commit the destination has not received is lag"


def test_status_text_output(world: World, config: Path, cli: Cli) -> None:
    world.table.append(customers(initial_rows(3)))
    before, after_table = status_table(cli("status", "--config", str(config)).out)
    assert before["crm"] | {"lag": "?"} == {
        "destination": "crm",
        "table@ref": "gold.customers@main",
        "sink (mode)": "rest_api (mirror)",
        "state": "never synced",
        "checkpoint": "none",
        "lag": "?",
        "last run": "-",
        "i/u/d/failed": "-",
        "took": "-",
        "failed rows": "0",
        "digest": "none yet",
    }
    assert re.fullmatch(r"\d+ s", before["crm"]["lag"]), "the commit is seconds old"
    assert after_table == [], "nothing to say beyond the table"

    assert cli("sync", "--config", str(config)).code == 0
    run = cli("status", "--config", str(config))
    assert run.code == 0, run.err
    rows, after_table = status_table(run.out)
    crm = rows["crm"]
    assert {k: crm[k] for k in ("state", "checkpoint", "lag", "i/u/d/failed", "digest")} == {
        "state": "healthy",
        "checkpoint": str(current_snapshot(world)),
        "lag": "0 s",
        "i/u/d/failed": "3/0/0/0",
        "digest": "ok (3 entries, 1 segment)",
    }
    assert re.fullmatch(r"ok \(full\) \d+ s ago", crm["last run"]), crm["last run"]
    assert re.fullmatch(r"\d+\.\d s", crm["took"]), crm["took"]
    assert after_table == []
    assert "\x1b" not in run.out, "no colour off a terminal"


def test_status_table_of_two_destinations_with_the_details_below(
    world: World, server: ServerThread, other_server: ServerThread, cli: Cli
) -> None:
    world.table.append(customers([(1, "a@example.com", "pro"), (2, "not-an-address", "pro")]))
    bad_token = {"url": other_server.url, "headers": {"Authorization": "Bearer expired"}}
    config = world.write_config(
        [
            destination("crm", server),
            destination("billing", other_server, mode="upsert", sink_config=bad_token),
        ]
    )
    assert cli("sync", "--config", str(config)).code == 1
    world.reload().append(customers([(3, "c@example.com", "pro")]))
    run = cli("status", "--config", str(config))
    assert run.code == 0, run.err
    rows, after_table = status_table(run.out)
    assert list(rows) == ["crm", "billing"], "in the order of the configuration"
    crm, billing = rows["crm"], rows["billing"]
    assert {k: crm[k] for k in ("sink (mode)", "state", "i/u/d/failed", "failed rows")} == {
        "sink (mode)": "rest_api (mirror)",
        "state": "rows failing",
        "i/u/d/failed": "1/0/0/1",
        "failed rows": "1",
    }
    assert crm["checkpoint"] != "none"
    assert re.fullmatch(r"\d+ s", crm["lag"]), "one commit it has not received"
    assert crm["digest"] == "ok (1 entries, 1 segment)"
    assert {k: billing[k] for k in ("sink (mode)", "state", "checkpoint", "failed rows")} == {
        "sink (mode)": "rest_api (upsert)",
        "state": "failing",
        "checkpoint": "none",
        "failed rows": "0",
    }
    assert re.fullmatch(r"failed \(full\) \d+ s ago", billing["last run"]), billing["last run"]
    assert billing["i/u/d/failed"] == "0/0/0/0"
    assert billing["digest"] == "none yet"
    [heading, error] = after_table
    assert heading == "billing:"
    assert error.startswith("  last run error: ") and "401" in error, error
    assert "expired" not in run.out, "the credential is not shown"
    statuses = cli("status", "--config", str(config), "--json").json()
    assert crm["checkpoint"] == str(statuses[0]["checkpoint"]["snapshot_id"])


# --- resync -------------------------------------------------------------------------


def test_resync_makes_the_next_sync_full(
    world: World, server: ServerThread, config: Path, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    assert cli("sync", "--config", str(config)).code == 0
    requested = cli("resync", "crm", "--config", str(config))
    assert requested.code == 0, requested.err
    assert "crm: the next cycle will be a full resync" in requested.out
    before = len(server.snapshot()[1])
    [result] = cli("sync", "--config", str(config), "--json").json()
    assert (result["status"], result["plan"], result["from_snapshot"]) == ("ok", "full", None)
    resent = sent_keys(posts(server.snapshot()[1][before:]))
    assert sorted(key for _, key in resent) == [1, 2, 3, 4, 5]
    [after] = cli("sync", "--config", str(config), "--json").json()
    assert after["plan"] == "noop", "the request is used up by one cycle"


def test_resync_from_snapshot_diffs_from_that_snapshot(
    world: World, server: ServerThread, config: Path, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(5)))
    first = current_snapshot(world)
    assert cli("sync", "--config", str(config)).code == 0
    world.reload().upsert(customers([(1, "one@example.com", "team")]), join_cols=["customer_id"])
    assert cli("sync", "--config", str(config)).code == 0
    world.reload().append(customers([(6, "six@example.com", "pro")]))
    assert cli("sync", "--config", str(config)).code == 0

    requested = cli("resync", "crm", "--from-snapshot", str(first), "--config", str(config))
    assert requested.code == 0, requested.err
    assert f"a diff from snapshot {first}" in requested.out
    before = len(server.snapshot()[1])
    [result] = cli("sync", "--config", str(config), "--json").json()
    assert (result["plan"], result["from_snapshot"]) == ("diff", first)
    assert result["to_snapshot"] == current_snapshot(world)
    resent = sent_keys(posts(server.snapshot()[1][before:]))
    assert resent == [("upsert", 1), ("upsert", 6)], "exactly the changes since that snapshot"
    assert server.snapshot()[0] == expected_records(world)


def test_resync_from_an_unknown_snapshot_is_refused(world: World, config: Path, cli: Cli) -> None:
    world.table.append(customers(initial_rows(2)))
    run = cli("resync", "crm", "--from-snapshot", "12345", "--config", str(config))
    assert run.code == 2
    assert "table gold.customers has no snapshot 12345" in run.err
    assert str(current_snapshot(world)) in run.err, "the message lists the latest snapshots"
    [result] = cli("sync", "--config", str(config), "--json").json()
    assert result["plan"] == "full", "nothing was requested"


def test_resync_of_an_unknown_destination_is_a_config_error(config: Path, cli: Cli) -> None:
    run = cli("resync", "nope", "--config", str(config))
    assert run.code == 2
    assert "nope" in run.err


# --- failures -----------------------------------------------------------------------


@pytest.fixture
def rejected(world: World, config: Path, cli: Cli) -> None:
    """Customer 2's email has no "@": the API refuses it on the first sync."""
    world.table.append(customers([(1, "a@example.com", "pro"), (2, "not-an-address", "pro")]))
    run = cli("sync", "--config", str(config), "--json")
    assert run.code == 0, run.err
    [result] = run.json()
    assert (result["status"], result["inserted"], result["failed"]) == ("ok", 1, 1)


@pytest.mark.usefixtures("rejected")
def test_failures_lists_failed_rows_with_the_reason(config: Path, cli: Cli) -> None:
    run = cli("failures", "crm", "--config", str(config))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "crm: 1 failed row"
    assert lines[1:] == [
        "  {\"customer_id\":2} insert: email 'not-an-address' is not a valid address "
        "(attempts 1, will retry)"
    ]


def test_failures_retry_tries_parked_rows_again(
    world: World, server: ServerThread, tmp_path: Path, cli: Cli
) -> None:
    config = world.write_config([destination("crm", server, max_attempts=1)])
    world.table.append(customers([(1, "a@example.com", "pro"), (2, "not-an-address", "pro")]))
    assert cli("sync", "--config", str(config)).code == 0
    [row] = cli("failures", "crm", "--config", str(config), "--json").json()
    assert (row["attempts"], row["parked"]) == (1, True)
    listing = cli("failures", "crm", "--config", str(config)).out
    assert "parked (failures --retry to try again)" in listing
    before = len(posts(server.snapshot()[1]))
    retried = cli("failures", "crm", "--retry", "--config", str(config), "--json").json()
    assert len(posts(server.snapshot()[1])) == before + 1, "the parked row was sent again"
    [row] = retried["failed_rows"]
    assert (row["attempts"], row["parked"]) == (2, True)


@pytest.mark.usefixtures("rejected")
def test_failures_json(config: Path, cli: Cli) -> None:
    run = cli("failures", "crm", "--config", str(config), "--json")
    assert run.code == 0, run.err
    [row] = run.json()
    assert row["key"] == {"customer_id": 2}
    assert "not a valid address" in row["reason"]
    assert (row["attempts"], row["parked"]) == (1, False)
    assert row["first_seen"] <= row["last_seen"]


@pytest.mark.usefixtures("rejected")
@pytest.mark.parametrize("api_accepts", [True, False], ids=["now-accepted", "still-refused"])
def test_failures_retry_sends_the_failed_rows_now(
    server: ServerThread, world: World, config: Path, cli: Cli, api_accepts: bool
) -> None:
    if api_accepts:
        server.api.invalid = lambda record: None  # type: ignore[method-assign]
    before = len(server.snapshot()[1])
    run = cli("failures", "crm", "--retry", "--config", str(config))
    assert run.code == 0, run.err
    retried = posts(server.snapshot()[1][before:])
    assert 2 in {key for _, key in sent_keys(retried)}, "the failed row was sent again"
    listing = cli("failures", "crm", "--config", str(config), "--json").json()
    if api_accepts:
        assert listing == []
        assert server.snapshot()[0] == expected_records(world)
    else:
        assert [(r["key"], r["attempts"]) for r in listing] == [({"customer_id": 2}, 2)]


@pytest.mark.usefixtures("rejected")
def test_failures_retry_json_prints_only_json(config: Path, cli: Cli) -> None:
    run = cli("failures", "crm", "--retry", "--json", "--config", str(config))
    assert run.code == 0, run.err
    doc = run.json()
    assert [r["destination"] for r in doc["retry"]] == ["crm"]
    assert isinstance(doc["failed_rows"], list)


# --- validate -----------------------------------------------------------------------


def test_validate_accepts_a_valid_file(config: Path, cli: Cli) -> None:
    run = cli("validate", "--config", str(config))
    assert run.code == 0, run.err
    assert run.out.strip() == f"{config}: valid (1 destination)"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "mode: mirror",
            "mode: mirorr",
            "ingestion.destinations[0].mode: must be one of upsert, update, insert, mirror, "
            "append; got 'mirorr'; did you mean 'mirror'?",
        ),
        ("batch_size: 10", "batch_size: -3", "ingestion.destinations[0].batch_size: must be"),
        ("kind: FloeSpec", "kind: [FloeSpec", "invalid YAML"),
    ],
    ids=["bad-mode", "bad-batch-size", "bad-yaml"],
)
def test_validate_a_broken_file_exits_2_with_the_line_of_the_problem(
    config: Path, cli: Cli, old: str, new: str, message: str
) -> None:
    text = config.read_text()
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    config.write_text(text.replace(old, new))
    run = cli("validate", "--config", str(config))
    assert run.code == 2
    assert run.out == ""
    first = run.err.splitlines()[0]
    assert first.startswith(f"{config}:"), first
    reported = int(first.removeprefix(f"{config}:").split(":")[0].split()[0])
    if "YAML" not in message:
        assert reported == line, first
    else:
        assert reported >= line, first
    assert message in first
