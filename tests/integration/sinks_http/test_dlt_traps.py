"""The dlt 1.31 traps of DESIGN §5: each shown on plain dlt, then handled by the bridge
(the dlt hand-off, which the platform plugin's HTTP destinations use).

The `dlt_*` tests pin dlt's behaviour (they fail when dlt changes and the handling can
be revisited); the others fail without the bridge's handling.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dlt.common.destination.exceptions import DestinationTerminalException

from floe_egress.errors import PermanentSinkError, TransientSinkError
from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.dltrun import DltBridge
from tests.fixtures.fake_apis import FakeRestApi, Fault
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

MAPPING = {"customer_id": "external_id", "email": "email"}


def ids_table(*ids: int) -> pa.Table:
    return pa.table({"id": list(ids)})


def raw_pipeline(tmp_path: Path, fn: Callable[..., Any]) -> Any:
    factory = dlt.destination(fn, batch_size=0, loader_file_format="parquet", name="raw")
    return dlt.pipeline(
        pipeline_name="raw", pipelines_dir=str(tmp_path / "raw"), destination=factory()
    )


def batch(*ids: int) -> pa.Table:
    return changes([{"customer_id": i, "email": f"c{i}@x.io", "op": "insert"} for i in ids])


@pytest.fixture
def sink_for(make_sink: SinkFactory, rest_server: FakeRestApi) -> Callable[[], Any]:
    rest_server.token = None
    config = {"url": f"{rest_server.url}/v1/contacts"}
    return lambda: make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING, handoff="dlt")


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_dlt_never_awaits_an_async_destination_and_reports_success(tmp_path: Path) -> None:
    seen: list[str] = []

    async def async_sink(items: Any, table: Any) -> None:
        seen.append(items)

    info = raw_pipeline(tmp_path, async_sink).run(ids_table(1, 2), table_name="changes")

    assert seen == []
    assert not info.has_failed_jobs


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
async def test_an_async_sink_function_is_caught_not_reported_as_delivered(
    sink_for: Callable[[], Any], rest_server: FakeRestApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    def async_variant(self: DltBridge) -> Callable[..., Any]:
        async def floe_http_sink(items: Any, table: Any) -> None:
            self.deliver_file(str(items))

        return floe_http_sink

    monkeypatch.setattr(DltBridge, "sink_function", async_variant)
    sink = sink_for()

    with pytest.raises(TransientSinkError, match="without handing its 2 rows to the sink"):
        await sink.write(batch(1, 2), context())
    assert rest_server.log == []


async def test_the_plain_sink_runs_http_on_the_event_loop(tmp_path: Path) -> None:
    bridge = DltBridge("loop_check", tmp_path)
    threads: list[int] = []
    rows: list[int] = []

    async def handler(table: pa.Table) -> None:
        threads.append(threading.get_ident())
        rows.extend(table.column("id").to_pylist())

    await bridge.run(ids_table(1, 2, 3), handler)

    assert rows == [1, 2, 3]
    assert threads == [threading.get_ident()]


def test_dlt_loads_a_pending_package_and_ignores_new_data(tmp_path: Path) -> None:
    loaded: list[list[int]] = []
    pipeline = raw_pipeline(
        tmp_path, lambda items, table: loaded.append(pq.read_table(items)["id"].to_pylist())
    )
    pipeline.extract(ids_table(1), table_name="changes")
    pipeline.normalize()

    pipeline.run(ids_table(2), table_name="changes")

    assert loaded == [[1]]


async def test_a_pending_package_does_not_swallow_the_next_batch(
    sink_for: Callable[[], Any], rest_server: FakeRestApi
) -> None:
    sink = sink_for()
    stale = sink._map(batch(99))
    pipeline = sink.handoff.pipeline
    await asyncio.to_thread(pipeline.extract, stale, table_name="changes")
    await asyncio.to_thread(pipeline.normalize)
    assert pipeline.has_pending_data

    report = await sink.write(batch(1, 2), context())

    assert sorted(rest_server.records) == ["1", "2"]
    assert report.delivered == {"insert": 2}
    assert not pipeline.has_pending_data


def test_dlt_terminal_failure_leaves_the_package_pending(tmp_path: Path) -> None:
    def failing(items: Any, table: Any) -> None:
        raise DestinationTerminalException("refused")

    pipeline = raw_pipeline(tmp_path, failing)
    with pytest.raises(Exception, match="refused"):
        pipeline.run(ids_table(1), table_name="changes")

    assert pipeline.has_pending_data


async def test_a_refused_batch_does_not_block_later_runs(
    sink_for: Callable[[], Any], rest_server: FakeRestApi
) -> None:
    sink = sink_for()
    rest_server.fail(Fault(401, body={"error": "token revoked"}))

    with pytest.raises(PermanentSinkError, match="token revoked"):
        await sink.write(batch(1), context())
    assert not sink.handoff.pipeline.has_pending_data
    report = await sink.write(batch(2), context(to_snapshot=3))

    assert list(rest_server.records) == ["2"]
    assert report.delivered == {"insert": 1}


async def test_a_bug_in_the_handler_surfaces_and_leaves_nothing_pending(tmp_path: Path) -> None:
    bridge = DltBridge("bug", tmp_path)

    async def broken(table: pa.Table) -> None:
        raise ZeroDivisionError("oops")

    with pytest.raises(ZeroDivisionError):
        await bridge.run(ids_table(1), broken)
    assert not bridge.pipeline.has_pending_data


def test_dlt_keeps_completed_packages(tmp_path: Path) -> None:
    pipeline = raw_pipeline(tmp_path, lambda items, table: None)
    for i in range(3):
        pipeline.run(ids_table(i), table_name="changes")

    assert len(pipeline.list_completed_load_packages()) == 3


async def test_completed_packages_are_pruned_and_live_under_work_dir(
    sink_for: Callable[[], Any], tmp_path: Path
) -> None:
    sink = sink_for()
    for i in range(3):
        await sink.write(batch(i), context(to_snapshot=i))

    pipeline = sink.handoff.pipeline
    assert pipeline.list_completed_load_packages() == []
    assert list((Path(pipeline.working_dir) / "load" / "loaded").iterdir()) == []
    assert Path(pipeline.working_dir).is_relative_to(tmp_path)


async def test_columns_dlt_remembers_from_earlier_runs_are_not_sent(
    sink_for: Callable[[], Any], rest_server: FakeRestApi, make_sink: SinkFactory
) -> None:
    config = {"url": f"{rest_server.url}/v1/contacts"}
    wide = make_sink(rest_api.SINK_TYPE, config, mapping={**MAPPING, "plan": "plan"}, handoff="dlt")
    narrow = make_sink(rest_api.SINK_TYPE, config, mapping=MAPPING, handoff="dlt")
    rows = [{"customer_id": 1, "email": "a@x.io", "plan": "pro", "op": "insert"}]

    await wide.write(changes(rows), context())
    await narrow.write(changes(rows), context())

    first, second = (r.json()["records"] for r in rest_server.log)
    assert first == [{"external_id": 1, "email": "a@x.io", "plan": "pro"}]
    assert second == [{"external_id": 1, "email": "a@x.io"}]


async def test_a_cancelled_write_finishes_the_package_before_the_next_run(
    sink_for: Callable[[], Any], rest_server: FakeRestApi
) -> None:
    sink = sink_for()
    rest_server.fail(Fault(delay=1.0))
    task = asyncio.create_task(sink.write(batch(1), context()))
    await asyncio.wait_for(rest_server.arrived.wait(), 5)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = await sink.write(batch(2), context(to_snapshot=3))

    assert report.delivered == {"insert": 1}
    assert not sink.handoff.pipeline.has_pending_data


async def test_more_concurrent_writes_than_default_threads_all_finish(
    make_sink: SinkFactory, rest_server: FakeRestApi
) -> None:
    # A 2-core machine's default executor has 6 threads; here it has 2. A dlt run that
    # held one of them while its rows waited for another (value conversion) deadlocked
    # once every thread was held so: `sync` with 6 HTTP destinations hung for ever.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
    rest_server.token = None
    config = {"url": f"{rest_server.url}/v1/contacts"}
    sinks = [
        make_sink(rest_api.SINK_TYPE, config, destination=f"d{i}", mapping=MAPPING, handoff="dlt")
        for i in range(4)
    ]

    writes = [s.write(batch(10 * i, 10 * i + 1), context(f"d{i}")) for i, s in enumerate(sinks)]
    reports = await asyncio.wait_for(asyncio.gather(*writes), timeout=60)

    assert [r.delivered for r in reports] == [{"insert": 2}] * 4
    assert len(rest_server.records) == 8
