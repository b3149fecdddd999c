"""Every log line of a cycle carries its destination and cycle id, also those written on
worker threads (change capture) and from dlt's load threads (the HTTP sink's retries)."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.fixtures.world import World, customers, initial_rows, rest_destination


async def test_cycle_log_lines_carry_destination_and_cycle_across_threads(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(3)))
    url = api.url + "/v1/contacts"
    loaded = world.load([rest_destination(url, mode="upsert")])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    dest = loaded.spec.ingestion.destinations[0]
    await run_cycle(runtime, dest)
    # A key change is noticed while the work is prepared (a worker thread); a 500 is
    # retried by the HTTP client, which runs for a dlt load thread.
    changed = world.load([rest_destination(url, mode="upsert", primary_key=["email"])])
    world.table.append(customers([(4, "four@example.com", "pro")]))
    api.fail(Fault(status=500, method="POST"))

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        result = await run_cycle(runtime, changed.spec.ingestion.destinations[0])

    assert result.status == "ok", result.error
    by_name = {e["event"]: e for e in events}
    assert {"key_changed_full_resync", "http_retry", "cycle_finished"} <= set(by_name)
    cycle_id = by_name["cycle_finished"]["cycle"]
    for name in ("key_changed_full_resync", "http_retry", "cycle_finished"):
        assert by_name[name]["destination"] == "crm", name
        assert by_name[name]["cycle"] == cycle_id, name
    assert structlog.contextvars.get_contextvars() == {}, "nothing stays bound after it"
