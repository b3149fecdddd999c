"""End to end: the paths users run, each as a whole process, against a baseline in the same run.

A table of N rows x 10 columns (files of 100,000 rows, bench/changes.py's columns, key
`id`) on an embedded SQLite SQL catalog goes to a real local PostgreSQL (a fresh
database per run) with the `postgres` sink and a SQLite state store:

1. initial:  `floe-egress sync` of the whole table into an empty database, in every mode;
             rows/s = N / wall time of the process (interpreter start to exit).
2. oneshot:  one commit of K clustered updates, K deletes and K appends (one pyiceberg
             transaction), then `floe-egress sync` of a mirror destination that was in
             step before it. Baseline, in the same round and in turn with it: the naive
             full diff as its own process (pyiceberg reads both snapshots whole, DuckDB
             joins them on the key and a hash of the row, the change rows are
             materialised; nothing is sent).
3. warm:     the same commits to a running daemon (`floe-egress run`, bench/e2e_daemon.py):
             the cycle's own duration and the time from the commit's return until every
             changed row is visible in PostgreSQL; nudged and on the 1 s schedule.
4. rest:     a warm 10-row cycle to a local REST API, nudged and on the 1 s schedule
             (bench/latency.py's paths).

Wall time and peak RSS of a CLI process come from /usr/bin/time -v; a daemon's peak RSS
is its VmHWM. Every count is checked against the database after the run.

Reproduce:  .venv/bin/python bench/e2e.py                      (N = 1M, 3 rounds; ~20 min)
            .venv/bin/python bench/e2e.py --paths initial --modes mirror --rows 5000000 --repeat 1
            .venv/bin/python bench/e2e.py --rows 200000 --repeat 1   (quick)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from bench.changes import _catalog, _rows  # noqa: E402
from bench.changes import build as build_table  # noqa: E402
from tests.fixtures.egress import PG_ADMIN_URL  # noqa: E402

CLI = Path(sys.executable).parent / "floe-egress"
MODES = ("upsert", "mirror", "append", "insert", "update")
K = 1000
DEST = "app_db"


@contextmanager
def pg_database(name: str) -> Iterator[str]:
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def write_config(
    table_dir: Path,
    state_dir: Path,
    url: str,
    mode: str,
    schedule: dict[str, Any] | None = None,
    **top: Any,
) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "e2e"},
        "catalog": {
            "name": "bench",
            "type": "sql",
            "uri": f"sqlite:///{table_dir}/catalog.db",
            "warehouse": f"file://{table_dir}/warehouse",
        },
        "state": {"url": f"sqlite:///{state_dir / 'state.db'}"},
        **top,
        "ingestion": {
            "destinations": [
                {
                    "name": DEST,
                    "source_table": "gold.facts",
                    "primary_key": ["id"],
                    "mode": mode,
                    "sink_type": "postgres",
                    "sink_config": {"credentials": url, "dataset": "e2e", "table": "facts"},
                    **({"schedule": schedule} if schedule else {}),
                }
            ]
        },
    }
    path = state_dir / "floe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def timed(
    command: list[str], env: dict[str, str] | None = None, cwd: Path = Path("/")
) -> tuple[float, float, str]:
    """Run a whole process under /usr/bin/time -v: (wall seconds, peak RSS MB, stdout)."""
    out = subprocess.run(
        ["/usr/bin/time", "-v", *command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {out.returncode}: {out.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", out.stderr)
    if peak is None or wall is None:
        raise RuntimeError(f"no measurement from /usr/bin/time: {out.stderr[-2000:]}")
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.group(1).split(":"))))
    return seconds, int(peak.group(1)) / 1024, out.stdout


def cli_sync(config: Path, work_dir: Path) -> tuple[float, float, dict[str, Any]]:
    command = [str(CLI), "--log-level", "WARNING", "sync", "-c", str(config), "--json"]
    wall, peak, stdout = timed(command, {"FLOE_EGRESS_WORK_DIR": str(work_dir)})
    [result] = json.loads(stdout)
    if result["status"] not in ("ok", "noop"):
        raise RuntimeError(f"sync: {result}")
    return wall, peak, result


def pg_rows(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM e2e.facts")
        row = cur.fetchone()
        return int(row[0]) if row else 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- 1. initial load ----------------------------------------------------------------------


def initial(
    table_dir: Path, tmp: Path, n: int, modes: list[str], repeat: int
) -> list[dict[str, Any]]:
    runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for round_ in range(repeat):
        for mode in modes:
            with pg_database(f"floe_e2e_{mode}_{os.getpid()}") as url:
                state = tmp / f"initial-{mode}-{round_}"
                config = write_config(table_dir, state, url, mode)
                wall, peak, result = cli_sync(config, state / "work")
                sent = 0 if mode == "update" else n
                counted = result["inserted"] + result["updated"]
                landed = pg_rows(url) if sent else 0
                if counted != sent or landed != sent:
                    raise RuntimeError(f"{mode}: sent {counted}, {landed} in PostgreSQL: {result}")
                shutil.rmtree(state)
            runs[mode].append((wall, peak))
            print(
                f"initial {mode:7} round {round_}: {wall:6.2f} s  {n / wall:9,.0f} rows/s  "
                f"peak {peak:5.0f} MB",
                flush=True,
            )
    return [
        {
            "mode": mode,
            "rows": n,
            "wall_s": round(median([w for w, _ in samples]), 3),
            "rows_per_s": round(n / median([w for w, _ in samples])),
            "peak_mb": round(max(p for _, p in samples)),
            "runs_s": [round(w, 2) for w, _ in samples],
        }
        for mode, samples in runs.items()
    ]


# --- 2. one-shot sync after a change --------------------------------------------------------


def change(
    table_dir: Path, n: int, round_: int, updates_only: bool = False
) -> tuple[int, int, dict[str, Any]]:
    """Commit K clustered updates, K deletes and K appends (or only the updates) as one
    transaction.

    Returns (snapshot before, snapshot after, what PostgreSQL must then show)."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    table = _catalog(table_dir).load_table("gold.facts")
    before = table.current_snapshot().snapshot_id
    updated = np.arange(n // 4 + round_ * K, n // 4 + (round_ + 1) * K)
    deleted = np.arange(n // 2 + round_ * K, n // 2 + (round_ + 1) * K)
    appended = np.arange(n + 10_000_000 + round_ * K, n + 10_000_000 + (round_ + 1) * K)
    new_rows = _rows(updated, version=round_ + 1)
    with table.transaction() as tx:
        tx.overwrite(
            new_rows,
            overwrite_filter=And(
                GreaterThanOrEqual("id", int(updated[0])), LessThan("id", int(updated[-1]) + 1)
            ),
        )
        if not updates_only:
            tx.delete(
                And(
                    GreaterThanOrEqual("id", int(deleted[0])),
                    LessThan("id", int(deleted[-1]) + 1),
                )
            )
            tx.append(_rows(appended))
    after = _catalog(table_dir).load_table("gold.facts").current_snapshot().snapshot_id
    expect: dict[str, Any] = {
        "updated_id": int(updated[-1]),
        "updated_visits": int(new_rows.column("visits")[K - 1].as_py()),
    }
    if not updates_only:
        expect.update(deleted_id=int(deleted[-1]), appended_id=int(appended[-1]))
    return before, after, expect


def visible(cur: Any, expect: dict[str, Any]) -> bool:
    """Is the last row of each kind of change in PostgreSQL?"""
    checks = ["(SELECT visits FROM e2e.facts WHERE id = %(updated_id)s) = %(updated_visits)s"]
    if "deleted_id" in expect:
        checks += [
            "NOT EXISTS (SELECT 1 FROM e2e.facts WHERE id = %(deleted_id)s)",
            "EXISTS (SELECT 1 FROM e2e.facts WHERE id = %(appended_id)s)",
        ]
    cur.execute("SELECT " + " AND ".join(checks), expect)
    row = cur.fetchone()
    return bool(row and row[0])


def naive_diff(table_dir: Path, a: int, b: int) -> int:
    """The baseline, run as its own process: both snapshots read whole, joined in DuckDB."""
    import duckdb

    table = _catalog(table_dir).load_table("gold.facts")
    before = table.scan(snapshot_id=a).to_arrow()
    after = table.scan(snapshot_id=b).to_arrow()
    cols = ", ".join(f'"{c}"' for c in after.column_names if c != "id")
    con = duckdb.connect()
    con.register("a", before)
    con.register("b", after)
    changed = con.execute(
        f"""WITH x AS (SELECT id, hash({cols}) h FROM a), y AS (SELECT id, hash({cols}) h FROM b),
                 d AS (SELECT coalesce(y.id, x.id) AS id, y.id IS NULL AS gone
                       FROM x FULL OUTER JOIN y USING (id) WHERE x.h IS DISTINCT FROM y.h)
            SELECT b.* FROM b JOIN d USING (id) WHERE NOT d.gone"""
    ).to_arrow_table()
    deleted = con.execute("SELECT x.id FROM a x ANTI JOIN b y USING (id)").to_arrow_table()
    return changed.num_rows + deleted.num_rows


def oneshot(table_dir: Path, tmp: Path, n: int, repeat: int) -> dict[str, Any]:
    samples: list[dict[str, float]] = []
    with pg_database(f"floe_e2e_oneshot_{os.getpid()}") as url:
        state = tmp / "oneshot"
        config = write_config(table_dir, state, url, "mirror")
        cli_sync(config, state / "work")  # the initial load, not measured
        for round_ in range(repeat):
            a, b, expect = change(table_dir, n, round_)
            legs: dict[str, float] = {}
            for leg in ("sync", "naive") if round_ % 2 == 0 else ("naive", "sync"):
                if leg == "sync":
                    wall, peak, result = cli_sync(config, state / "work")
                    got = (result["inserted"], result["updated"], result["deleted"])
                    if got != (K, K, K):
                        raise RuntimeError(f"oneshot sync sent {got}, expected {K} each: {result}")
                    with psycopg2.connect(url) as conn, conn.cursor() as cur:
                        if not visible(cur, expect):
                            raise RuntimeError(
                                f"oneshot: the change is not in PostgreSQL: {expect}"
                            )
                    legs.update(sync_s=wall, sync_peak_mb=peak)
                else:
                    command = [
                        sys.executable,
                        __file__,
                        "--naive-diff",
                        str(table_dir),
                        str(a),
                        str(b),
                    ]
                    wall, peak, stdout = timed(command)
                    if int(stdout.split()[-1]) != 3 * K:
                        raise RuntimeError(f"naive diff found {stdout.strip()}, expected {3 * K}")
                    legs.update(naive_s=wall, naive_peak_mb=peak)
            samples.append(legs)
            print(
                f"oneshot round {round_}: sync {legs['sync_s']:.2f} s, naive full diff "
                f"{legs['naive_s']:.2f} s: {legs['naive_s'] / legs['sync_s']:.2f}x",
                flush=True,
            )
        if pg_rows(url) != n:  # as many appended as deleted
            raise RuntimeError("oneshot: PostgreSQL's row count drifted from the table's")
    return {
        "rows": n,
        "sync_s": round(median([s["sync_s"] for s in samples]), 3),
        "naive_s": round(median([s["naive_s"] for s in samples]), 3),
        "speedup": round(median([s["naive_s"] / s["sync_s"] for s in samples]), 2),
        "sync_peak_mb": round(max(s["sync_peak_mb"] for s in samples)),
        "naive_peak_mb": round(max(s["naive_peak_mb"] for s in samples)),
        "runs": [{k: round(v, 3) for k, v in s.items()} for s in samples],
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--naive-diff":
        print(naive_diff(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paths", default="initial,oneshot,warm,rest")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--commits", type=int, default=20, help="commits per warm/rest leg")
    args = parser.parse_args()
    paths = args.paths.split(",")
    results: dict[str, Any] = {"rows": args.rows, "load_average": [os.getloadavg()[0]]}
    with tempfile.TemporaryDirectory(prefix="floe-e2e-") as name:
        tmp = Path(name)
        table_dir = tmp / "table"
        if {"initial", "oneshot", "warm"} & set(paths):
            build_table(table_dir, args.rows)
        if "initial" in paths:
            results["initial"] = initial(
                table_dir, tmp, args.rows, args.modes.split(","), args.repeat
            )
        if "oneshot" in paths:
            results["oneshot"] = oneshot(table_dir, tmp, args.rows, args.repeat)
        if "warm" in paths or "rest" in paths:
            from bench.e2e_daemon import rest, warm

            if "warm" in paths:
                first_round = args.repeat if "oneshot" in paths else 0
                results["warm"] = warm(table_dir, tmp, args.rows, args.commits, first_round)
            if "rest" in paths:
                results["rest"] = rest(tmp, args.commits)
    results["load_average"].append(os.getloadavg()[0])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
