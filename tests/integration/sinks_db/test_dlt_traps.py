"""The dlt 1.31 traps of DESIGN §5, each with a test that fails without its handling."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.sinks.database.dlt_db import DltDb
from tests.integration.sinks_db.conftest import Db, SinkFactory, changes, send

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")


def batch(*ids: int, name: str = "n", op: str = "insert") -> pa.Table:
    return changes([{"id": i, "name": f"{name}{i}", "op": op} for i in ids])


async def test_runs_block_a_thread_not_the_loop_and_never_overlap(
    pg: Db, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = make_sink(pg, "upsert")
    inside: list[int] = []
    overlaps: list[int] = []
    original = DltDb.load

    def load(self: DltDb, *args: Any, **kwargs: Any) -> Any:
        inside.append(threading.get_ident())
        if len(inside) > 1:
            overlaps.append(len(inside))
        try:
            time.sleep(0.2)
            return original(self, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(DltDb, "load", load)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    await asyncio.gather(*(send(sink, batch(i), i) for i in range(1, 5)))
    tick_task.cancel()
    assert overlaps == []
    assert ticks > 50  # the loop kept running during four blocking runs of 0.2 s+
    assert [r["id"] for r in pg.rows()] == [1, 2, 3, 4]


async def test_a_cancelled_write_holds_the_pipeline_until_dlt_is_done(
    pg: Db, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = make_sink(pg, "upsert")
    running = threading.Event()
    overlaps: list[str] = []
    active = 0
    original = DltDb.load

    def load(self: DltDb, *args: Any, **kwargs: Any) -> Any:
        nonlocal active
        active += 1
        if active > 1:
            overlaps.append("overlap")
        running.set()
        try:
            time.sleep(0.3)
            return original(self, *args, **kwargs)
        finally:
            active -= 1

    monkeypatch.setattr(DltDb, "load", load)
    first = asyncio.create_task(send(sink, batch(1), 1))
    await asyncio.to_thread(running.wait, 5)
    first.cancel()
    await send(sink, batch(2), 2)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert overlaps == []


async def test_a_pending_package_is_aborted_not_loaded_instead_of_the_new_batch(
    server_db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(server_db, "upsert")
    await send(sink, batch(1, 2), 1)
    # a write that died after normalize: its package waits in the pipeline
    pipeline = sink.db.pipeline
    stale = pa.table({"id": [1, 9], "name": ["stale1", "stale9"]})
    pipeline.extract(stale, table_name="customers", primary_key="id")
    pipeline.normalize()
    assert pipeline.has_pending_data
    await send(sink, batch(2, 3, name="new"), 2)
    assert server_db.rows() == [
        {"id": 1, "name": "n1"},
        {"id": 2, "name": "new2"},
        {"id": 3, "name": "new3"},
    ]
    assert not pipeline.has_pending_data


async def test_completed_load_packages_are_pruned(pg: Db, make_sink: SinkFactory) -> None:
    sink = make_sink(pg, "upsert")
    for snapshot in range(1, 4):
        await send(sink, batch(snapshot), snapshot)
    loaded = Path(sink.db.pipeline.working_dir) / "load" / "loaded"
    assert list(loaded.iterdir()) == []
    assert sink.db.pipeline.list_completed_load_packages() == []


async def test_pipelines_live_in_the_work_dir_not_in_home(
    pg: Db, make_sink: SinkFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    sink = make_sink(pg, "upsert", work_dir=tmp_path / "dest")
    await send(sink, batch(1), 1)
    assert Path(sink.db.pipeline.working_dir).is_relative_to(tmp_path / "dest" / "dlt")
    assert not (home / ".dlt").exists()


async def test_a_resent_batch_is_applied_again(server_db: Db, make_sink: SinkFactory) -> None:
    sink = make_sink(server_db, "upsert")
    await send(sink, batch(1, 2), 1)
    await send(sink, batch(1, 2, name="v2", op="update"), 2)
    # someone changed the table behind the sync; the checkpoint did not move
    server_db.execute(f"UPDATE {server_db.qualified()} SET name = 'changed' WHERE id = 1")
    server_db.execute(f"DELETE FROM {server_db.qualified()} WHERE id = 2")
    await send(sink, batch(1, 2, name="v2", op="update"), 2)
    assert server_db.rows() == [{"id": 1, "name": "v21"}, {"id": 2, "name": "v22"}]


async def test_a_lost_work_dir_does_not_lose_or_duplicate_rows(
    server_db: Db, make_sink: SinkFactory, tmp_path: Path
) -> None:
    first = make_sink(server_db, "upsert", work_dir=tmp_path / "before")
    await send(first, batch(1, 2), 1)
    await first.close()
    again = make_sink(server_db, "upsert", work_dir=tmp_path / "after")
    await send(again, batch(2, 3, name="v2", op="update"), 2)
    assert server_db.rows() == [
        {"id": 1, "name": "n1"},
        {"id": 2, "name": "v22"},
        {"id": 3, "name": "v23"},
    ]


async def test_an_initial_load_appends_then_later_ranges_merge(
    server_db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(server_db, "upsert")
    await send(sink, batch(1, 2), 1, batch_index=0)
    await send(sink, batch(3, 4), 1, batch_index=1)
    await send(sink, batch(4, 5, name="v2", op="update"), 2)
    # the same range again from its first batch (a resend): the table is not empty now
    await send(sink, batch(1, 2, name="v3", op="update"), 1, batch_index=0)
    assert [run.disposition for run in sink.runs] == ["append", "append", "merge", "merge"]
    assert server_db.rows() == [
        {"id": 1, "name": "v31"},
        {"id": 2, "name": "v32"},
        {"id": 3, "name": "n3"},
        {"id": 4, "name": "v24"},
        {"id": 5, "name": "v25"},
    ]


async def test_a_table_dropped_behind_the_sync_is_created_again(
    db: Db, make_sink: SinkFactory
) -> None:
    sink = make_sink(db, "upsert")
    await send(sink, batch(1), 1)
    db.execute(f"DROP TABLE {db.qualified()}")
    await send(sink, batch(2), 2)
    assert db.rows() == [{"id": 2, "name": "n2"}]


async def test_a_batch_written_as_several_load_files_arrives_whole(
    pg: Db, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from floe_egress.sinks.database import fastload

    monkeypatch.setattr(fastload, "file_count", lambda rows: 3)
    sink = make_sink(pg, "mirror")
    await send(sink, batch(*range(10)), 1)
    await send(sink, changes([{"id": i, "name": None, "op": "delete"} for i in range(0, 10, 2)]), 2)
    assert [r["id"] for r in pg.rows()] == [1, 3, 5, 7, 9]
    assert list((sink.db.files_dir).iterdir()) == []
