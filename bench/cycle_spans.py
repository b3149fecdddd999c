"""Where a warm 10-row cycle to a local REST API spends its time, in-process.

One Runtime (as the daemon keeps it) runs `run_cycle` after each commit of 10 new rows
to a table on an embedded SQLite catalog, delivering in upsert mode to the fake REST
API on 127.0.0.1, logging JSON lines as the daemon does (into memory). The first
(full) cycle is not counted. Each phase is timed by
wrapping the function that does it (nested phases are indented; a parent's time
includes its children's); the table gives each phase's median over the cycles.

Reproduce:  .venv/bin/python bench/cycle_spans.py              (100 cycles, ~10 s)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floe_egress.daemon.cycle import run_cycle  # noqa: E402
from floe_egress.daemon.runtime import Runtime  # noqa: E402
from floe_egress.logs import configure as configure_logs  # noqa: E402
from tests.fixtures.fake_apis import FakeRestApi  # noqa: E402
from tests.fixtures.world import World, customers, rest_destination  # noqa: E402

SPANS: list[tuple[str, str, str]] = [
    # (module, attribute path, label): the order is the table's
    ("floe_egress.daemon.cycle", "prepare_work", "planning (prepare_work, a thread)"),
    ("floe_egress.daemon.runtime", "Runtime.load_table", "  load the table (catalog)"),
    ("floe_egress.daemon.work", "capture", "  change capture"),
    ("floe_egress.changes.capture", "diff_files", "    manifests: files added/removed"),
    ("floe_egress.changes.capture", "_compacts", "    read the added/removed files"),
    ("floe_egress.changes.capture", "classify", "    classify by key"),
    ("floe_egress.changes.untouched", "UntouchedKeys.__call__", "      keys in other files"),
    ("floe_egress.daemon.cycle", "_deliver", "delivery (_deliver)"),
    ("floe_egress.daemon.digest", "Tally.reserve", "  digest: reserve the keys"),
    ("floe_egress.sinks.http.sink", "HttpSink.write", "  sink.write"),
    ("floe_egress.sinks.http.sink", "HttpSink.rows", "    values to JSON records"),
    ("floe_egress.sinks.http.rest_api", "RestApiSink.deliver", "    requests (HTTP)"),
    ("floe_egress.daemon.cycle", "_commit", "checkpoint commit (after the cycle's duration)"),
]


def wrap(fn: Callable[..., Any], label: str, into: dict[str, list[float]]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kw)
            finally:
                into[label].append(time.perf_counter() - started)

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            into[label].append(time.perf_counter() - started)

    return timed


def install(into: dict[str, list[float]]) -> None:
    for module_name, path, label in SPANS:
        owner: Any = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, attribute, wrap(getattr(owner, attribute), label, into))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    configure_logs(stream=io.StringIO(), level="INFO", json=True)  # as the daemon logs
    spans: dict[str, list[float]] = defaultdict(list)
    install(spans)
    with tempfile.TemporaryDirectory(prefix="floe-cycle-spans-") as tmp:
        world = World(Path(tmp) / "world", f"sqlite:///{Path(tmp) / 'state.db'}")
        api = await FakeRestApi(token="Bearer good").start()
        loaded = world.load([rest_destination(api.url + "/v1/contacts", mode="upsert")])
        runtime = Runtime(loaded.spec)
        dest = loaded.spec.ingestion.destinations[0]
        try:
            world.table.append(customers([(i, f"u{i}@example.com", "pro") for i in range(10)]))
            await run_cycle(runtime, dest)
            spans.clear()
            durations: list[float] = []
            load_before = os.getloadavg()[0]
            for n in range(1, args.cycles + 1):
                ids = range(10 * n, 10 * n + 10)
                world.table.append(customers([(i, f"u{i}@example.com", "pro") for i in ids]))
                result = await run_cycle(runtime, dest)
                if (result.status, result.inserted) != ("ok", 10):
                    raise RuntimeError(f"cycle {n}: {result.status} {result.error}")
                durations.append(result.duration_seconds)
        finally:
            await runtime.close()
            await api.stop()
    print(
        f"{args.cycles} warm 10-row cycles; load average {load_before:.2f} -> "
        f"{os.getloadavg()[0]:.2f}\n"
        f"  {'cycle (its duration_seconds)':50} p50 {statistics.median(durations) * 1000:6.1f}"
        f" ms, p99 {sorted(durations)[int(0.99 * (len(durations) - 1))] * 1000:6.1f} ms"
    )
    for _, _, label in SPANS:
        if spans[label]:
            print(f"  {label:50} p50 {statistics.median(spans[label]) * 1000:6.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
