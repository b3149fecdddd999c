"""What a failed cycle does next follows its error: transient errors back off (never
sooner than the destination's Retry-After), permanent ones mark the destination failing
and are not retried in a tight loop. /status and /metrics say which."""

from __future__ import annotations

import asyncio
import re
import time

from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import StartDaemon, destination, expected_records
from tests.integration.daemon.harness import DaemonProcess, wait_until

NO_RETRIES_INSIDE_THE_SINK = {"max_attempts": 1, "timeout_seconds": 5}


async def daemon_view(daemon: DaemonProcess) -> dict[str, object]:
    _, body = await daemon.get("/status")
    (crm,) = body["destinations"]
    view: dict[str, object] = crm["daemon"]
    return view


def metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def test_a_503_with_retry_after_is_not_retried_before_it_ends(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(4)))
    want = await asyncio.to_thread(expected_records, world)
    api.fail(
        Fault(
            status=503,
            headers={"Retry-After": "5"},
            body={"message": "down for maintenance"},
            method="POST",
        )
    )
    dest = destination(api.url, retry=NO_RETRIES_INSIDE_THE_SINK)
    daemon = await start_daemon(world, [dest])

    failed = await daemon.wait_event("cycle_failed")
    assert failed["error_kind"] == "transient"
    assert failed["retry_after_seconds"] == 5.0
    refused = next(r for r in api.log if r.status == 503)

    view = await daemon_view(daemon)
    assert view["state"] == "backing_off"
    assert view["error_kind"] == "transient"
    assert view["retry_after_seconds"] == 5.0
    assert "down for maintenance" in str(view["error"])
    assert view["next_attempt_at"] is not None
    _, text = await daemon.get("/metrics")
    assert metric(text, "floe_egress_cycle_errors_total", destination="crm", kind="transient")
    assert metric(text, "floe_egress_destination_state", destination="crm", state="backing_off")
    retry_at = metric(text, "floe_egress_destination_retry_at_timestamp_seconds", destination="crm")
    assert retry_at is not None
    assert retry_at >= refused.at + 5

    # Even a nudge waits out the pause the destination asked for, and is not lost.
    assert (await daemon.nudge("crm"))[1]["sync"] == "deferred"
    await wait_until(lambda: api.records == want, 20, "the rows arrive after the pause")
    following = [r for r in api.log if r.at > refused.at]
    assert following, "the destination was tried again"
    assert min(r.at for r in following) >= refused.at + 5, "nothing before Retry-After ended"
    await wait_until(lambda: bool(daemon.events("cycle_finished")), 5, "the cycle is logged")
    assert (await daemon_view(daemon))["state"] == "healthy"


async def test_a_401_marks_the_destination_failing_without_a_tight_retry_loop(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(4)))
    dest = destination(api.url, retry=NO_RETRIES_INSIDE_THE_SINK)
    dest["sink_config"]["headers"] = {"Authorization": "Bearer revoked"}
    # A slow refusal: schedule ticks (every second) arrive while the cycle runs, and
    # must not start another cycle past the backoff.
    api.fail(*[Fault(delay=1.5)] * 3)
    daemon = await start_daemon(world, [dest])

    failed = await daemon.wait_event("cycle_failed")
    assert failed["error_kind"] == "permanent"
    tried = len(api.log)
    await asyncio.sleep(4)
    assert len(api.log) == tried, "four schedule ticks later, no request was retried"

    view = await daemon_view(daemon)
    assert view["state"] == "failing"
    assert view["error_kind"] == "permanent"
    error = str(view["error"])
    assert "destination 'crm'" in error
    assert "credential check" in error
    assert "HTTP 401" in error
    assert len(daemon.events("cycle_failed")) == 1
    _, text = await daemon.get("/metrics")
    assert metric(text, "floe_egress_cycle_errors_total", destination="crm", kind="permanent")
    assert metric(text, "floe_egress_destination_state", destination="crm", state="failing")
    assert metric(text, "floe_egress_destination_state", destination="crm", state="healthy") == 0
    retry_at = metric(text, "floe_egress_destination_retry_at_timestamp_seconds", destination="crm")
    assert retry_at is not None
    assert retry_at > time.time() + 60, "retried only slowly on the schedule"

    # Someone acted: a nudge tries again at once.
    assert (await daemon.nudge("crm"))[1]["sync"] == "started"
    await wait_until(lambda: len(api.log) > tried, 10, "the nudge reaches the API")
