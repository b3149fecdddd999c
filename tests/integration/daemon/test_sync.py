"""The daemon syncs on its own and reports what it did: /status, /metrics and its logs."""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import StartDaemon, destination, expected_records
from tests.integration.daemon.harness import free_port, wait_until
from tests.integration.daemon.test_backoff import metric

METRIC_FAMILIES = (
    "floe_egress_cycles_total",
    "floe_egress_rows_total",
    "floe_egress_failed_rows_total",
    "floe_egress_invalid_rows_total",
    "floe_egress_cycle_duration_seconds",
    "floe_egress_lag_seconds",
    "floe_egress_rate_limit_wait_seconds_total",
    "floe_egress_destination_http_responses_total",
    "floe_egress_lease_held",
    "floe_egress_ready",
)


async def commit(world: World, rows: list[tuple[int, str, str]]) -> dict[str, dict[str, object]]:
    """Append `rows` to the table (off the loop); what the API should then hold."""
    await asyncio.to_thread(world.table.append, customers(rows))
    return await asyncio.to_thread(expected_records, world)


async def test_a_commit_reaches_the_api_without_any_command(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(world, [destination(api.url)])
    want = await commit(world, initial_rows(10))
    await wait_until(lambda: api.records == want, 10, "the 10 committed rows reach the API")
    more = await commit(world, [(11, "eleven@example.com", "pro")])
    await wait_until(lambda: api.records == more, 10, "a second commit reaches the API")
    assert daemon.events("cycle_finished"), "no command: the schedule ran the cycles"


async def test_status_and_metrics_describe_what_was_synced(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(world, [destination(api.url)])
    want = await commit(world, initial_rows(3))
    await wait_until(lambda: api.records == want, 10, "the rows reach the API")
    head = world.reload().current_snapshot()
    assert head is not None
    await daemon.wait_event("cycle_finished", where=lambda e: e["inserted"] == 3)

    _, body = await daemon.get("/status")
    assert body["ready"] is True
    (crm,) = body["destinations"]
    assert crm["destination"] == "crm"
    assert crm["checkpoint"]["snapshot_id"] == head.snapshot_id
    assert crm["lag_seconds"] == 0.0
    assert crm["last_run"]["status"] in ("ok", "noop")
    assert crm["failed_rows"] == 0
    assert crm["daemon"]["held_here"] is True
    assert crm["daemon"]["next_run"] is not None

    status, text = await daemon.get("/metrics")
    assert status == 200
    for family in METRIC_FAMILIES:
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    assert 'floe_egress_cycles_total{destination="crm",result="ok"} 1.0' in text
    assert 'floe_egress_rows_total{destination="crm",op="insert"} 3.0' in text
    assert 'floe_egress_destination_http_responses_total{destination="crm",status="200"}' in text
    assert 'floe_egress_cycle_duration_seconds_count{destination="crm"}' in text
    assert 'floe_egress_lease_held{destination="crm"} 1.0' in text
    assert "floe_egress_ready 1.0" in text


async def test_logs_are_json_lines_and_never_print_a_secret(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    api_secret = f"Bearer api-{uuid.uuid4().hex}"
    nudge_secret = f"nudge-{uuid.uuid4().hex}"
    api.token = api_secret
    dest = destination(api.url)
    dest["sink_config"]["headers"] = {"Authorization": "${env:CRM_AUTH}"}
    api.fail(Fault(status=401, body={"error": "token rejected"}, method="POST"))
    daemon = await start_daemon(
        world,
        [dest],
        env={"CRM_AUTH": api_secret, "NUDGE_TOKEN": nudge_secret},
        options=("--log-level", "DEBUG"),
        token="${env:NUDGE_TOKEN}",
    )
    want = await commit(world, initial_rows(4))
    failed = await daemon.wait_event("cycle_failed")
    assert "401" in failed["error"], "the failure event carries its reason"
    # A 401 is permanent: the destination waits for someone to act, here a nudge.
    assert (await daemon.nudge("crm", token="wrong"))[0] == 401
    assert (await daemon.nudge("crm", token=nudge_secret))[0] == 202
    await wait_until(lambda: api.records == want, 15, "the rows arrive after the nudge")
    assert await daemon.stop() == 0

    finished = [e for e in daemon.events("cycle_finished") if e["status"] == "ok"]
    assert finished, "one event per cycle"
    assert {"inserted", "updated", "deleted", "failed", "invalid", "duration_seconds"} <= set(
        finished[0]
    )
    for line in daemon.stdout:
        assert isinstance(json.loads(line), dict), f"not a JSON object: {line!r}"
    assert daemon.stderr == []
    output = daemon.output
    for secret in (api_secret, api_secret.removeprefix("Bearer "), nudge_secret):
        assert secret not in output


async def test_a_failing_destination_backs_off_and_does_not_hold_up_the_others(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: every request fails
    daemon = await start_daemon(world, [destination(api.url), destination(nowhere, name="broken")])
    want = await commit(world, initial_rows(5))
    await wait_until(lambda: api.records == want, 10, "the healthy destination syncs")
    more = await commit(world, [(6, "six@example.com", "pro")])
    await wait_until(lambda: api.records == more, 10, "and keeps syncing")

    def broken(event: str) -> list[dict[str, object]]:
        return [e for e in daemon.events(event) if e.get("destination") == "broken"]

    # On a loaded machine each failed cycle (connection retries included) takes longer:
    # wait for the events instead of a fixed time.
    await wait_until(
        lambda: len(broken("destination_backing_off")) >= 2, 30, "two backoffs of 'broken'"
    )
    await asyncio.sleep(3)
    waits = [float(str(e["retry_in_seconds"])) for e in broken("destination_backing_off")]
    assert len(waits) >= 2
    assert waits[-1] > waits[0], "the wait grows with each failure"
    # The healthy destination polls every second (a cycle when its table moved).
    _, text = await daemon.get("/metrics")
    healthy = sum(
        metric(text, "floe_egress_polls_total", destination="crm", result=result) or 0.0
        for result in ("unchanged", "moved", "pending", "unknown")
    )
    assert len(broken("cycle_failed")) < healthy, "failures are retried less often"
