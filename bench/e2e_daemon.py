"""bench/e2e.py's daemon paths: a warm cycle into PostgreSQL, and a 10-row cycle to REST.

warm: the table is first loaded with `floe-egress sync` (not measured), then a daemon
(`floe-egress run`) follows it, a mirror destination into PostgreSQL. Each commit is
bench/e2e.py's change (K clustered updates, K deletes, K appends, one transaction; or
the K updates alone: the "updates" leg), spaced by 1.5 to 2.5 s. For each: the
daemon's own cycle duration (`duration_seconds` of its `cycle_finished` event), and the
time from the commit's return until every kind of change it made is visible in
PostgreSQL (a separate connection polls every 5 ms).
Legs: "nudge" (an hourly schedule, `POST /v1/destinations/{name}/sync` right after the
commit), "schedule" (the default schedule, every second) and "updates" (nudged, the
updates alone).

rest: bench/latency.py's two paths (10 new rows a commit to a local REST API).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import psycopg2

from bench.e2e import DEST, K, change, cli_sync, pg_database, visible, write_config
from bench.latency import report as latency_report
from bench.latency import run_path
from bench.latency import summary as percentiles
from tests.integration.daemon.harness import DaemonProcess, free_port


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_visible(url: str, expect: dict[str, Any], within: float = 60.0) -> float:
    """Poll PostgreSQL until the change is visible; the wall-clock time it became so."""
    deadline = time.monotonic() + within
    with psycopg2.connect(url) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                if visible(cur, expect):
                    return time.time()
                time.sleep(0.005)
    raise RuntimeError(f"the change {expect} was not visible within {within} s")


async def warm_leg(
    leg: str, table_dir: Path, tmp: Path, n: int, commits: int, first_round: int
) -> dict[str, Any]:
    updates_only = leg == "updates"
    with pg_database(f"floe_e2e_warm_{leg}_{os.getpid()}") as url:
        state = tmp / f"warm-{leg}"
        port = free_port()
        schedule = None if leg == "schedule" else {"interval_seconds": 3600}
        server = {"host": "127.0.0.1", "port": port, "shutdown_grace_seconds": 5}
        config = write_config(table_dir, state, url, "mirror", schedule, server=server)
        cli_sync(config, state / "work")  # the initial load, not measured
        daemon = await DaemonProcess.start(config, port=port, work_dir=state / "work", name=leg)
        latencies: list[float] = []
        peak = float("nan")
        try:
            await daemon.wait_ready(120)
            await daemon.wait_event("cycle_finished", 120)  # in step: a noop cycle
            for i in range(commits):
                _, _, expect = await asyncio.to_thread(
                    change, table_dir, n, first_round + i, updates_only
                )
                committed = time.time()
                if leg != "schedule":
                    status, body = await daemon.nudge(DEST)
                    if status != 202:
                        raise RuntimeError(f"nudge answered {status}: {body}")
                seen = await asyncio.to_thread(wait_visible, url, expect)
                latencies.append(seen - committed)
                await asyncio.sleep(random.uniform(1.5, 2.5))
            peak = peak_rss_mb(daemon.pid)
        finally:
            if daemon.proc.returncode is None:
                await daemon.stop(60)
        cycles = [
            float(e["duration_seconds"])
            for e in daemon.events("cycle_finished")
            if e["status"] == "ok"
        ]
        sent = [
            (e["inserted"], e["updated"], e["deleted"])
            for e in daemon.events("cycle_finished")
            if e["status"] == "ok"
        ]
        each = (0, K, 0) if updates_only else (K, K, K)
        if sent != [each] * commits:
            raise RuntimeError(f"warm {leg}: cycles sent {sent}, expected one {each} each")
    lat, cyc = percentiles(latencies), percentiles(cycles)
    print(
        f"warm {leg:8}: {commits} commits; cycle p50 {cyc['p50']:.3f} s p90 {cyc['p90']:.3f} s; "
        f"commit->visible p50 {lat['p50']:.3f} s p99 {lat['p99']:.3f} s; peak {peak:.0f} MB",
        flush=True,
    )
    return {
        "leg": leg,
        "commits": commits,
        "cycle_s": {k: round(v, 3) for k, v in cyc.items()},
        "visible_s": {k: round(v, 3) for k, v in lat.items()},
        "daemon_peak_mb": round(peak),
        "cycles_runs": [round(c, 3) for c in cycles],
    }


def warm(
    table_dir: Path, tmp: Path, n: int, commits: int, first_round: int
) -> list[dict[str, Any]]:
    return [
        asyncio.run(warm_leg(leg, table_dir, tmp, n, commits, first_round + offset))
        for leg, offset in (("nudge", 0), ("schedule", commits), ("updates", 2 * commits))
    ]


def rest(tmp: Path, commits: int) -> list[dict[str, Any]]:
    out = []
    for path in ("nudge", "schedule"):
        workdir = tmp / f"rest-{path}"
        workdir.mkdir()
        run = asyncio.run(run_path(path, commits, 10, 1.0, workdir))
        result = latency_report(run, 10)
        lat, cyc = result["latency_seconds"], result["cycle_seconds"]
        print(
            f"rest {path:8}: {commits} commits x 10 rows; cycle p50 {cyc['p50']:.3f} s; "
            f"commit->acknowledged p50 {lat['p50']:.3f} s p99 {lat['p99']:.3f} s",
            flush=True,
        )
        out.append(result)
    return out
