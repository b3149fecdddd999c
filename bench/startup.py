"""Start-up: what one `floe-egress sync` of a small PostgreSQL destination costs.

`floe-egress sync --config floe.yaml --json` (the installed entry point, a fresh process
each time) for one mirror destination on a local PostgreSQL, a 100-row table on an
embedded SQLite SQL catalog and a SQLite state store. Two cases:
- noop: the table has not changed since the last sync;
- 10 rows: 10 rows were updated (one upsert commit) just before the sync.

Wall time is the whole process, interpreter start to exit, as a user or a cron job pays
it. Separate runs with `python -X importtime` give the import time: the sum of every
module's own time, and dlt's cumulative time when it was imported at all.

`--baseline DIR` adds a "before" leg: the same entry point with `PYTHONPATH=DIR`, so it
runs the floe_egress of another source tree (`git archive BASE | tar -x -C DIR`); each
leg has its own table, state and PostgreSQL schema, and legs alternate run by run.
Medians of `--repeat` runs are reported, with the load average around them.

Reproduce:  mkdir /tmp/base && git archive $(git merge-base main HEAD) | tar -x -C /tmp/base
            .venv/bin/python bench/startup.py --repeat 5 --baseline /tmp/base   (~2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from tests.fixtures.egress import PG_ADMIN_URL  # noqa: E402
from tests.fixtures.world import World, customers, initial_rows  # noqa: E402

ENTRY = Path(sys.executable).parent / "floe-egress"
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


@dataclass
class Leg:
    name: str
    pythonpath: str | None
    world: World
    config: Path
    samples: dict[str, list[float]] = field(default_factory=dict)
    imports: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        env["FLOE_EGRESS_WORK_DIR"] = str(self.world.root / "work")
        return env

    def sync(self, *python_flags: str) -> tuple[float, dict[str, Any], str]:
        argv = [sys.executable, *python_flags, str(ENTRY), "--log-level", "WARNING"]
        argv += ["sync", "--config", str(self.config), "--json"]
        started = time.perf_counter()
        # cwd outside the source tree: `-c`/script paths must not shadow PYTHONPATH
        run = subprocess.run(
            argv, env=self.env(), cwd="/", capture_output=True, text=True, timeout=300
        )
        wall = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(f"{self.name}: sync exited {run.returncode}:\n{run.stderr[-3000:]}")
        [result] = json.loads(run.stdout)
        return wall, result, run.stderr

    def change(self, round_: int) -> None:
        rows = [(i, f"user{i}.r{round_}@example.com", "pro") for i in range(1, 11)]
        self.world.reload().upsert(customers(rows), join_cols=["customer_id"])


def import_times(stderr: str) -> tuple[float, float | None]:
    """Sum of self times (s), and what importing dlt cost (s) or None if never imported:
    the cumulative time of every outermost dlt module (a `from dlt.x import y` inside
    floe_egress shows `dlt` nested under `dlt.x`)."""
    total = 0
    dlt = 0
    found = False
    inside: int | None = None  # the depth of the dlt subtree being walked, if any
    # -X importtime prints children before their parent: reversed, parents come first
    for line in reversed(stderr.splitlines()):
        match = IMPORT_LINE.match(line)
        if match is None:
            continue
        total += int(match.group(1))
        depth = len(match.group(3))
        if inside is not None and depth > inside:
            continue
        inside = None
        name = match.group(4)
        if name == "dlt" or name.startswith("dlt."):
            dlt += int(match.group(2))
            found = True
            inside = depth
    return total / 1e6, dlt / 1e6 if found else None


def measure(leg: Leg, case: str, round_: int) -> None:
    for flags in ((), ("-X", "importtime")):
        if case == "10 rows":
            leg.change(round_ * 2 + (1 if flags else 0))
        wall, result, stderr = leg.sync(*flags)
        expected = ("noop", 0) if case == "noop" else ("ok", 10)
        got = (result["status"], result["updated"])
        if got != expected:
            raise SystemExit(f"{leg.name} {case}: expected {expected}, got {result}")
        if flags:
            leg.imports.setdefault(case, []).append(import_times(stderr))
        else:
            leg.samples.setdefault(case, []).append(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="a source tree to run as 'before'")
    args = parser.parse_args()

    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    database = f"floe_bench_startup_{os.getpid()}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}"
    loads: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="floe-startup-") as tmp:
            legs: list[Leg] = []
            named = [("before", str(args.baseline))] if args.baseline else []
            for name, pythonpath in [*named, ("after", None)]:
                world = World(Path(tmp) / name, f"sqlite:///{Path(tmp) / name / 'state.db'}")
                world.table.append(customers(initial_rows(100)))
                destination = {
                    "name": "app_db",
                    "source_table": "gold.customers",
                    "mode": "mirror",
                    "sink_type": "postgres",
                    "sink_config": {"credentials": url, "dataset": name, "table": "customers"},
                }
                leg = Leg(name, pythonpath, world, world.write_config([destination]))
                _, first, _ = leg.sync()  # the initial load, not measured
                assert (first["status"], first["inserted"]) == ("ok", 100), first
                legs.append(leg)
            loads.append(os.getloadavg()[0])
            for round_ in range(args.repeat):
                for case in ("noop", "10 rows"):
                    for leg in legs:
                        measure(leg, case, round_)
                loads.append(os.getloadavg()[0])
            report(legs, loads)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def report(legs: list[Leg], loads: list[float]) -> None:
    print("| case | leg | wall (median) | runs | imports (median) | of which dlt |")
    print("|---|---|---:|---|---:|---:|")
    for case in ("noop", "10 rows"):
        for leg in legs:
            walls = leg.samples[case]
            imports = leg.imports[case]
            total = statistics.median(t for t, _ in imports)
            dlts = [d for _, d in imports if d is not None]
            dlt = f"{statistics.median(dlts):.3f} s" if dlts else "not imported"
            runs = ", ".join(f"{w:.2f}" for w in walls)
            print(
                f"| {case} | {leg.name} | {statistics.median(walls):.3f} s | {runs} | "
                f"{total:.3f} s | {dlt} |"
            )
    print(f"\n1-minute load average around the runs: {min(loads):.2f} to {max(loads):.2f}")


if __name__ == "__main__":
    main()
