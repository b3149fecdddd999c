"""Cycles that fail part-way, operators acting during a cycle, and failed rows whose row
changes: the destination still ends equal to the table."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from floe_egress.config import LoadedConfig
from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import TransientSinkError
from floe_egress.sinks.base import DeliveryReport, Sink, WriteContext
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows, rest_destination


class Faulty:
    """Wraps a real sink: `fail` raises before sending, `deliver_then_fail` after (a
    timeout on the response: the API applied the batch, the cycle does not know)."""

    def __init__(self, inner: Sink, control: dict[str, Any]) -> None:
        self.inner, self.control = inner, control

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def sink_type(self) -> str:
        return self.inner.sink_type

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None:
        await self.inner.close()

    async def write(self, changes: pa.Table, context: WriteContext) -> DeliveryReport:
        mode = self.control["mode"]
        if mode == "fail":
            raise TransientSinkError("simulated outage before anything was sent")
        if callable(mode):
            mode()
        report = await self.inner.write(changes, context)
        if mode == "deliver_then_fail":
            raise TransientSinkError("simulated timeout after the API applied the batch")
        return report


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"mode": "ok"}
    real = Runtime.sink

    async def faulty(self: Runtime, dest: Any, key: tuple[str, ...]) -> Sink:
        return Faulty(await real(self, dest, key), state)  # type: ignore[return-value]

    monkeypatch.setattr(Runtime, "sink", faulty)
    return state


def api_view(api: FakeRestApi) -> dict[int, str]:
    return {int(k): r["plan_tier"] for k, r in api.records.items()}


def table_view(world: World) -> dict[int, str]:
    return {k: r["plan"] for k, r in world.rows().items()}


async def cycle(
    rt: Runtime, loaded: LoadedConfig, control: dict[str, Any], mode: Any
) -> CycleResult:
    control["mode"] = mode
    return await run_cycle(rt, loaded.spec.ingestion.destinations[0])


@pytest.mark.parametrize("sync_mode", ["upsert", "mirror"])
async def test_two_failed_cycles_in_a_row_lose_nothing(
    world: World,
    api: FakeRestApi,
    runtimes: list[Runtime],
    control: dict[str, Any],
    sync_mode: str,
) -> None:
    world.table.append(customers(initial_rows(3)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", mode=sync_mode)])
    rt = Runtime(loaded.spec)
    runtimes.append(rt)
    assert (await cycle(rt, loaded, control, "ok")).status == "ok"
    world.table.upsert(customers([(1, "one@x.com", "VIP")]), join_cols=["customer_id"])
    world.reload().append(customers([(7, "seven@x.com", "pro")]))
    assert (await cycle(rt, loaded, control, "deliver_then_fail")).status == "failed"
    assert api_view(api)[1] == "VIP" and 7 in api_view(api), "the API applied the range"
    world.reload().upsert(customers([(1, "user1@example.com", "free")]), join_cols=["customer_id"])
    world.reload().delete("customer_id = 7")
    assert (await cycle(rt, loaded, control, "fail")).status == "failed"
    world.reload().upsert(customers([(3, "three@x.com", "team")]), join_cols=["customer_id"])
    final = await cycle(rt, loaded, control, "ok")
    assert final.status == "ok"
    expected = table_view(world)
    if sync_mode == "upsert":  # upsert never deletes: 7 stays, with what it was sent
        expected[7] = "pro"
    assert api_view(api) == expected
    assert rt.store.pending_attempts("crm") == []


async def test_rows_of_an_interrupted_cycle_are_deleted_after_a_full_resync(
    world: World, api: FakeRestApi, runtimes: list[Runtime], control: dict[str, Any]
) -> None:
    world.table.append(customers(initial_rows(3)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", mode="mirror")])
    rt = Runtime(loaded.spec)
    runtimes.append(rt)
    await cycle(rt, loaded, control, "ok")
    world.table.append(customers([(99, "new@x.com", "pro")]))
    await cycle(rt, loaded, control, "deliver_then_fail")
    assert 99 in api_view(api)
    world.reload().delete("customer_id = 99")
    rt.store.request_resync("crm", None)
    result = await cycle(rt, loaded, control, "ok")
    assert result.plan == "full"
    assert api_view(api) == table_view(world), "no ghost row for 99"


async def test_a_resync_requested_during_a_cycle_is_kept_for_the_next(
    world: World, api: FakeRestApi, runtimes: list[Runtime], control: dict[str, Any]
) -> None:
    world.table.append(customers(initial_rows(3)))
    loaded = world.load([rest_destination(api.url + "/v1/contacts")])
    rt = Runtime(loaded.spec)
    runtimes.append(rt)
    await cycle(rt, loaded, control, "ok")
    world.table.upsert(customers([(1, "one@x.com", "VIP")]), join_cols=["customer_id"])
    during = await cycle(rt, loaded, control, lambda: rt.store.request_resync("crm", None))
    assert during.status == "ok"
    assert rt.store.pending_resync("crm") is not None
    assert (await cycle(rt, loaded, control, "ok")).plan == "full"
    assert rt.store.pending_resync("crm") is None


@pytest.mark.parametrize("sync_mode", ["insert", "upsert"])
async def test_a_rejected_row_fixed_later_reaches_the_api(
    world: World,
    api: FakeRestApi,
    runtimes: list[Runtime],
    control: dict[str, Any],
    sync_mode: str,
) -> None:
    world.table.append(customers([(1, "a@x.com", "pro"), (2, "not-an-address", "pro")]))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", mode=sync_mode)])
    rt = Runtime(loaded.spec)
    runtimes.append(rt)
    first = await cycle(rt, loaded, control, "ok")
    assert first.failed == 1
    world.table.upsert(customers([(2, "fixed@x.com", "pro")]), join_cols=["customer_id"])
    second = await cycle(rt, loaded, control, "ok")
    assert second.failed == 0
    assert rt.store.failed_rows("crm") == []
    assert api.records["2"]["email"] == "fixed@x.com"


async def test_a_parked_row_delivered_by_a_later_change_is_cleared(
    world: World, api: FakeRestApi, runtimes: list[Runtime], control: dict[str, Any]
) -> None:
    world.table.append(customers([(1, "bad", "pro")]))
    loaded = world.load([rest_destination(api.url + "/v1/contacts", max_attempts=1)])
    rt = Runtime(loaded.spec)
    runtimes.append(rt)
    await cycle(rt, loaded, control, "ok")
    assert [r.parked for r in rt.store.failed_rows("crm")] == [True]
    world.table.upsert(customers([(1, "good@x.com", "pro")]), join_cols=["customer_id"])
    await cycle(rt, loaded, control, "ok")
    assert rt.store.failed_rows("crm") == []
    assert api.records["1"]["email"] == "good@x.com"
