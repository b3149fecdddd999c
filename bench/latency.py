"""Daemon latency: from an Iceberg commit to the last of its rows acknowledged by a local
HTTP destination.

The real daemon (`floe-egress run`, a subprocess) follows a table on an embedded SQLite
catalog and delivers to a local REST API (aiohttp, 127.0.0.1) with the `rest_api` sink
in upsert mode. The benchmark commits N times M new rows, spaced by a random gap
(uniform between 0.5x and 1.5x `--gap`, so commits land at every phase of the
schedule), and records when each commit returned and when the API answered the request
carrying each row. A commit's latency is the last of its rows' acknowledgements minus
the commit's end.

Each run also reports the daemon's own duration of every cycle that sent rows (the
`duration_seconds` of its `cycle_finished` log events: planning and delivery, up to the
checkpoint commit): the warm 10-row cycle.

Two paths, each with a fresh table, state and daemon:
- schedule: `schedule.interval_seconds: 1`, nothing else;
- nudge:    an hourly schedule, and `POST /v1/destinations/{name}/sync` right after each
            commit (the nudge's own round trip is part of the latency).

`--baseline DIR` adds a "before" leg: the same daemon executable with `PYTHONPATH=DIR`,
so it runs the floe_egress of another source tree (`git archive main | tar -x -C DIR`),
interleaved with the current one (the "after" leg), run by run. `--repeat N` runs every
(path, leg) N times; the summary gives the median over runs of each percentile, and the
load average around each run (the machine is shared).

Reproduce:  .venv/bin/python bench/latency.py                    (200 commits each; ~8 min)
            .venv/bin/python bench/latency.py --commits 50       (quick)
            mkdir /tmp/base && git archive main | tar -x -C /tmp/base
            .venv/bin/python bench/latency.py --commits 100 --repeat 3 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.fake_apis import FakeRestApi  # noqa: E402
from tests.fixtures.world import World, customers  # noqa: E402
from tests.integration.daemon.conftest import destination, write_config  # noqa: E402
from tests.integration.daemon.harness import DaemonProcess, free_port  # noqa: E402

TOKEN = "Bearer bench"


class AckingApi(FakeRestApi):
    """The fake REST API, noting when the request carrying each record was answered."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.acked: dict[str, float] = {}
        self.acked_event = asyncio.Event()

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await super()._middleware(request, handler)
        if request.method == "POST" and response.status < 300:
            now = time.time()
            body = json.loads(await request.read() or b"{}")
            for record in body.get("records", []):
                self.acked.setdefault(str(record.get(self.key_field)), now)
            self.acked_event.set()
        return response


@dataclass
class Run:
    path: str
    leg: str = "after"
    latencies: list[float] = field(default_factory=list)
    cycles: list[float] = field(default_factory=list)
    """Durations of the cycles that sent rows, from the daemon's cycle_finished events."""
    wall_seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    """The 1-minute load average when the run started and when it ended."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


async def run_path(
    path: str, commits: int, rows: int, gap: float, workdir: Path, source: Path | None = None
) -> Run:
    world = World(workdir / "world", f"sqlite:///{workdir / 'state' / 'state.db'}")
    api = await AckingApi().start()
    schedule = {"interval_seconds": 1} if path == "schedule" else {"interval_seconds": 3600}
    dest = destination(api.url, mode="upsert", schedule=schedule)
    dest["sink_config"]["headers"] = {"Authorization": TOKEN}
    port = free_port()
    config = write_config(world, workdir / "floe.yaml", [dest], port=port)
    env = {"PYTHONPATH": str(source)} if source is not None else None
    daemon = await DaemonProcess.start(
        config, port=port, work_dir=workdir / "work", name=path, env=env
    )
    run = Run(path, "before" if source is not None else "after")
    load_at_start = os.getloadavg()[0]
    pending: list[tuple[float, list[str]]] = []
    try:
        await daemon.wait_ready(60)
        await daemon.wait_event("cycle_finished", 60)  # the cycle of taking the lease
        started = time.monotonic()
        next_id = 1
        for _ in range(commits):
            ids = list(range(next_id, next_id + rows))
            next_id += rows
            batch = customers([(i, f"user{i}@example.com", "pro") for i in ids])
            await asyncio.to_thread(world.table.append, batch)
            committed = time.time()
            pending.append((committed, [str(i) for i in ids]))
            if path == "nudge":
                status, body = await daemon.nudge("crm")
                if status != 202:
                    raise RuntimeError(f"nudge answered {status}: {body}")
            await asyncio.sleep(random.uniform(0.5 * gap, 1.5 * gap))
        deadline = time.monotonic() + 60
        last_ids = pending[-1][1]
        while not all(i in api.acked for i in last_ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: the last commit was not delivered within 60 s")
            api.acked_event.clear()
            try:
                await asyncio.wait_for(api.acked_event.wait(), 1)
            except TimeoutError:
                daemon.raise_if_exited()
        run.wall_seconds = time.monotonic() - started
    finally:
        if daemon.proc.returncode is None:
            await daemon.stop(60)
        await api.stop()
    for committed, keys in pending:
        run.latencies.append(max(api.acked[k] for k in keys) - committed)
    run.cycles = [
        float(e["duration_seconds"]) for e in daemon.events("cycle_finished") if e["status"] == "ok"
    ]
    run.load = (load_at_start, os.getloadavg()[0])
    return run


def report(run: Run, rows: int) -> dict[str, Any]:
    return {
        "path": run.path,
        "leg": run.leg,
        "load_average": [round(v, 2) for v in run.load],
        "commits": len(run.latencies),
        "rows_per_commit": rows,
        "latency_seconds": {k: round(v, 3) for k, v in summary(run.latencies).items()},
        "cycles_with_rows": len(run.cycles),
        "cycle_seconds": {k: round(v, 3) for k, v in summary(run.cycles).items()},
        "wall_seconds": round(run.wall_seconds, 1),
    }


def line(result: dict[str, Any]) -> str:
    lat, cyc = result["latency_seconds"], result["cycle_seconds"]
    return (
        f"{result['path']:9} {result['leg']:6} {result['commits']} commits x "
        f"{result['rows_per_commit']} rows: latency p50 {lat['p50']:.3f} s, p90 "
        f"{lat['p90']:.3f} s, p99 {lat['p99']:.3f} s, max {lat['max']:.3f} s; "
        f"{result['cycles_with_rows']} cycles with rows, cycle p50 {cyc['p50']:.3f} s, p99 "
        f"{cyc['p99']:.3f} s; load {result['load_average'][0]:.2f}->{result['load_average'][1]:.2f}"
    )


def medians(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (path, leg): the median over runs of each latency and cycle percentile."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["path"], result["leg"]), []).append(result)
    out = []
    for (path, leg), runs in groups.items():
        out.append(
            {
                "path": path,
                "leg": leg,
                "runs": len(runs),
                **{
                    f"{what}_{q}": round(statistics.median(r[what][q] for r in runs), 3)
                    for what in ("latency_seconds", "cycle_seconds")
                    for q in ("p50", "p90", "p99", "max")
                },
                "load_average": [r["load_average"] for r in runs],
            }
        )
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1.0, help="mean seconds between commits")
    parser.add_argument("--paths", nargs="+", default=["schedule", "nudge"])
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every (path, leg)")
    parser.add_argument(
        "--baseline", type=Path, help="a source tree whose floe_egress the 'before' leg runs"
    )
    args = parser.parse_args()
    random.seed(args.seed)
    sources: list[Path | None] = [None]
    if args.baseline is not None:
        if not (args.baseline / "floe_egress" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline}: no floe_egress package there")
        sources = [args.baseline.resolve(), None]
    results = []
    for _ in range(args.repeat):
        for path in args.paths:
            for source in sources:
                with tempfile.TemporaryDirectory(prefix=f"floe-latency-{path}-") as tmp:
                    run = await run_path(path, args.commits, args.rows, args.gap, Path(tmp), source)
                result = report(run, args.rows)
                results.append(result)
                print(line(result), flush=True)
    print(json.dumps({"runs": results, "medians": medians(results)}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
