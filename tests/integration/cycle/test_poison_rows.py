"""A row holding a value the JSON wire format cannot carry fails alone; the rest arrives.

A real Iceberg table (tests/fixtures/poison.py) synced to a local REST API by whole
cycles: the timestamp past year 9999 inside a struct used to fail the destination with
OverflowError on every cycle, and nothing arrived.
"""

from __future__ import annotations

import json

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures import poison
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, rest_destination

FIELDS = ("notes", "attrs", "tags", "scores", "props")


async def test_only_the_row_json_cannot_carry_fails_and_the_checkpoint_moves(
    world: World, api: FakeRestApi, runtimes: list[Runtime]
) -> None:
    table = poison.create(world.catalog)
    loaded = world.load(
        [
            rest_destination(
                api.url + "/v1/contacts",
                source_table=poison.TABLE,
                field_mapping={"id": "external_id", **{f: f for f in FIELDS}},
                max_attempts=2,
            )
        ]
    )
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    dest = loaded.spec.ingestion.destinations[0]

    first = await run_cycle(runtime, dest)
    assert (first.status, first.inserted, first.failed) == ("ok", 9, 1)
    [failed] = runtime.store.failed_rows("crm")
    assert json.loads(failed.key_json) == {"id": 8}
    assert failed.reason == (
        "column attrs.seen: a date or timestamp outside years 1-9999, which ISO-8601 text "
        "(and so the JSON wire format) cannot carry"
    )
    assert sorted(api.records, key=int) == [str(i) for i in range(1, 11) if i != 8]
    # what JSON carries arrives as documented: NUL characters as they are, NaN and
    # infinities as null
    assert api.records["2"]["notes"] == "bad\x00note"
    assert api.records["5"]["props"] == {"k": "bad\x00value"}
    assert api.records["6"]["scores"] == [1.0, None]
    assert api.records["7"]["attrs"] == {
        "label": "label 7",
        "score": None,
        "seen": ("2026-03-01T12:30:00Z"),
    }
    checkpoint = runtime.store.get_checkpoint("crm")
    assert checkpoint is not None
    assert checkpoint.snapshot_id == table.current_snapshot().snapshot_id  # type: ignore[union-attr]

    posts = len([r for r in api.log if r.method == "POST"])
    second = await run_cycle(runtime, dest)
    assert (second.inserted, second.retried, second.failed) == (0, 1, 1)
    assert len([r for r in api.log if r.method == "POST"]) == posts, "nothing new is sent"
    third = await run_cycle(runtime, dest)
    assert (third.status, third.retried) == ("noop", 0)
    assert runtime.store.failed_rows("crm")[0].parked
