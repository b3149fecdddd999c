"""Idle polling: what 50 destinations whose tables do not change cost a running daemon.

The real daemon (`floe-egress run`, a subprocess) follows 50 tables of an embedded SQLite
SQL catalog (one destination each, `rest_api` sink in mirror mode to a local aiohttp
API, SQLite state store, the default schedule: a poll every second). Once every
destination has delivered its table and polled it unchanged, the daemon's CPU time
(user + system, from /proc/PID/stat) is sampled over `--seconds`: the result is the
share of one core it used. The polls and cycles it made meanwhile come from /metrics.

The baseline, in the same run: the same daemon with the pointer check off
(`FLOE_EGRESS_BENCH_NO_POLL_CHECK=1`, a switch only this benchmark sets): every poll
loads its table and runs a full cycle, as every scheduled tick did before polls were
cheap. And the floor: the same daemon and destinations on an hourly schedule, so no
poll falls in the window (what remains is the daemon's own periodic work: lease
passes, readiness probes, lag every 5 s, the main loop's tick). The three alternate,
`--runs` times each; medians are reported.

Reproduce:  .venv/bin/python bench/idle.py                      (3 runs x 60 s each; ~14 min)
            .venv/bin/python bench/idle.py --runs 1 --seconds 20 (quick)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.fake_apis import FakeRestApi  # noqa: E402
from tests.fixtures.world import CUSTOMERS, World, customers  # noqa: E402
from tests.integration.daemon.conftest import destination, write_config  # noqa: E402
from tests.integration.daemon.harness import DaemonProcess, free_port  # noqa: E402

TOKEN = "Bearer bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def counter_sum(text: str, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels`."""
    total = 0.0
    for match in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def make_world(workdir: Path, tables: int, rows: int) -> World:
    world = World(workdir / "world", f"sqlite:///{workdir / 'state' / 'state.db'}")
    for t in range(tables):
        table = world.catalog.create_table(f"gold.t{t:02d}", schema=CUSTOMERS)
        with table.update_schema() as update:
            update.set_identifier_fields("customer_id")
        first = t * 10_000
        table = world.catalog.load_table(f"gold.t{t:02d}")
        table.append(
            customers([(first + i, f"u{first + i}@example.com", "pro") for i in range(rows)])
        )
    return world


VARIANTS = {
    "check": "pointer check",
    "baseline": "baseline (no pointer check)",
    "floor": "floor (hourly schedule)",
}


def destinations(api_url: str, tables: int, variant: str) -> list[dict[str, Any]]:
    dests = []
    for t in range(tables):
        dest = destination(api_url, name=f"d{t:02d}", source_table=f"gold.t{t:02d}")
        if variant == "floor":
            dest["schedule"] = {"interval_seconds": 3600}
        else:
            del dest["schedule"]  # the default schedule
        dest["sink_config"]["headers"] = {"Authorization": TOKEN}
        dests.append(dest)
    return dests


async def measure(
    world: World, api: FakeRestApi, workdir: Path, name: str, seconds: float, variant: str
) -> dict[str, Any]:
    tables = len(world.catalog.list_tables("gold")) - 1  # gold.customers is the World's own
    port = free_port()
    config = write_config(
        world, workdir / name / "floe.yaml", destinations(api.url, tables, variant), port=port
    )
    env = {"FLOE_EGRESS_BENCH_NO_POLL_CHECK": "1"} if variant == "baseline" else {}
    daemon = await DaemonProcess.start(
        config, port=port, work_dir=workdir / name / "work", env=env, name=name
    )
    try:
        await daemon.wait_ready(120)
        settle_deadline = time.monotonic() + 300
        while True:  # every destination synced (the runs share one state) and polled
            _, text = await daemon.get("/metrics")
            polled = [
                counter_sum(text, "floe_egress_polls_total", destination=f"d{t:02d}")
                for t in range(tables)
            ]
            synced = sum(
                counter_sum(text, "floe_egress_cycles_total", result=r) for r in ("ok", "noop")
            )
            if synced >= tables and (variant == "floor" or min(polled) >= 2):
                break
            if time.monotonic() > settle_deadline:
                raise RuntimeError(f"{name}: not settled in 300 s\n{daemon.tail()}")
            await asyncio.sleep(1)
        await asyncio.sleep(5)
        _, before_text = await daemon.get("/metrics")
        cpu_before, wall_before = cpu_seconds(daemon.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_after, wall_after = cpu_seconds(daemon.pid), time.monotonic()
        _, after_text = await daemon.get("/metrics")
        load = os.getloadavg()
        rss = rss_mb(daemon.pid)
    finally:
        if daemon.proc.returncode is None:
            await daemon.stop(60)
    wall = wall_after - wall_before

    def rate(name: str, **labels: str) -> float:
        change = counter_sum(after_text, name, **labels) - counter_sum(before_text, name, **labels)
        return change / wall

    return {
        "daemon": VARIANTS[variant],
        "destinations": tables,
        "seconds": round(wall, 1),
        "cpu_percent_of_one_core": round(100 * (cpu_after - cpu_before) / wall, 2),
        "polls_per_second": round(rate("floe_egress_polls_total"), 1),
        "unchanged_per_second": round(rate("floe_egress_polls_total", result="unchanged"), 1),
        "cycles_per_second": round(rate("floe_egress_cycles_total"), 1),
        "rss_mb": round(rss, 1),
        "loadavg_1m": round(load[0], 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--destinations", type=int, default=50)
    parser.add_argument("--rows", type=int, default=100, help="rows of each table")
    parser.add_argument("--seconds", type=float, default=60.0, help="sampling window")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="floe-idle-") as tmp:
        workdir = Path(tmp)
        world = await asyncio.to_thread(make_world, workdir, args.destinations, args.rows)
        api = await FakeRestApi(token=TOKEN).start()
        try:
            for run in range(args.runs):
                for variant in VARIANTS:
                    name = f"{variant}-{run}"
                    result = await measure(world, api, workdir, name, args.seconds, variant)
                    results.append(result)
                    print(
                        f"{result['daemon']:28} {result['cpu_percent_of_one_core']:6.2f}% of "
                        f"one core; {result['polls_per_second']} polls/s "
                        f"({result['unchanged_per_second']} unchanged), "
                        f"{result['cycles_per_second']} cycles/s; RSS {result['rss_mb']} MB; "
                        f"load {result['loadavg_1m']}",
                        flush=True,
                    )
        finally:
            await api.stop()
    for kind in VARIANTS.values():
        cpu = [r["cpu_percent_of_one_core"] for r in results if r["daemon"] == kind]
        print(f"median {kind}: {statistics.median(cpu):.2f}% of one core (runs: {cpu})")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
