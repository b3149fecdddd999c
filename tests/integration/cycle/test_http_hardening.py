"""Whole cycles against a destination that misbehaves on the wire: what the state store
and the destination end up with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import EchoApi
from tests.fixtures.world import World, customers, initial_rows, rest_destination


@pytest.fixture
async def echo() -> AsyncIterator[EchoApi]:
    server = await EchoApi().start()
    yield server
    await server.stop()


async def test_a_redirected_batch_fails_the_cycle_and_keeps_the_checkpoint(
    world: World, echo: EchoApi, runtimes: list[Runtime]
) -> None:
    world.table.append(customers(initial_rows(6)))
    sink_config = {"url": f"{echo.url}/redirect?to=/ok", "check_url": f"{echo.url}/ok/"}
    loaded = world.load([rest_destination(echo.url, sink_config=sink_config)])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)

    result = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])

    assert (result.status, result.error_kind, result.inserted) == ("failed", "permanent", 0)
    assert result.error is not None and "HTTP 302" in result.error
    assert f"{echo.url}/ok" in result.error
    assert runtime.store.get_checkpoint("crm") is None
    last = runtime.store.last_run("crm")
    assert last is not None and last.status == "failed"
    sent = [(r.method, r.path, len(r.body) > 0) for r in echo.log if r.method != "HEAD"]
    assert sent == [("POST", "/redirect", True)], "only the POST, never a body-less GET"


KEYS = [".", "..", "a/b", "?x", "#y", "%41", "", "ann"]
SENT = ["%2E", "%2E%2E", "a%2Fb", "%3Fx", "%23y", "%2541", "ann"]
"""The keys above as each one's path segment goes out: every character that could
change the path (`.`, `/`, `?`, `#`, `%`) percent-encoded; the empty key is not sent."""

HANDLES = Schema(
    NestedField(1, "handle", StringType(), required=True),
    NestedField(2, "email", StringType(), required=False),
    identifier_field_ids=[1],
)


def handles(keys: list[str]) -> pa.Table:
    schema = pa.schema([pa.field("handle", pa.string(), nullable=False), ("email", pa.string())])
    return pa.table({"handle": keys, "email": [f"{i}@x.io" for i in range(len(keys))]}, schema)


async def test_key_values_fill_url_paths_without_moving_them(
    world: World, echo: EchoApi, runtimes: list[Runtime]
) -> None:
    table = world.catalog.create_table("gold.handles", schema=HANDLES)
    table.append(handles(KEYS))
    sink_config = {
        "url": f"{echo.url}/ok/v1/contacts/{{handle}}",
        "method": "PUT",
        "routes": {"delete": {"method": "DELETE"}},
        "check_url": f"{echo.url}/ok/v1/contacts",
    }
    dest = rest_destination(
        echo.url,
        source_table="gold.handles",
        sink_config=sink_config,
        field_mapping={"handle": "handle", "email": "email"},
        max_delete_fraction=1.0,
    )
    loaded = world.load([dest])

    async def cycle() -> tuple[CycleResult, list[tuple[str, str]]]:
        runtime = Runtime(loaded.spec)
        runtimes.append(runtime)
        echo.log.clear()
        result = await run_cycle(runtime, loaded.spec.ingestion.destinations[0])
        return result, sorted((r.method, r.raw_path) for r in echo.log if r.method != "HEAD")

    first, sent = await cycle()
    assert (first.status, first.inserted, first.failed) == ("ok", 7, 1)
    assert sent == sorted(("PUT", f"/ok/v1/contacts/{s}") for s in SENT)
    [empty] = runtimes[-1].store.failed_rows("crm")
    assert (empty.key_json, empty.op) == ('{"handle":""}', "insert")
    assert "{handle} is empty" in empty.reason and "not sent" in empty.reason

    world.catalog.load_table("gold.handles").delete("handle IS NOT NULL")
    second, sent = await cycle()
    assert (second.status, second.deleted, second.failed) == ("ok", 7, 1)
    assert sent == sorted(("DELETE", f"/ok/v1/contacts/{s}") for s in SENT)
