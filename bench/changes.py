"""Change-capture benchmark: detection time and peak memory against a full diff.

For N rows of 10 columns (written in files of FILE_ROWS rows, as a table grown by daily
appends would be) and K changed rows, each operation is committed with pyiceberg and
then measured in a fresh child process (so peak RSS is the measurement's own):

- detect:   floe_egress.changes.capture(A -> B), change rows materialised
- fulldiff: both snapshots read whole and joined on key and row hash in DuckDB
            (the baseline: what a tool without file-level planning does)

Reproduce:  .venv/bin/python bench/changes.py            (N = 100k, 1M, 5M; ~15 min)
            .venv/bin/python bench/changes.py --sizes 100000 --repeat 3   (quick)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FILE_ROWS = 100_000
DATA_DIR = ROOT / "bench" / ".data"
SCENARIOS = (
    "append",
    "update_clustered",
    "delete_clustered",
    "update_scattered",
    "delete_scattered",
    "compaction",
)


def _rows(ids: np.ndarray, version: int = 0) -> pa.Table:
    n = len(ids)
    rng = np.random.default_rng(int(ids[0]) if n else 0)
    base = np.datetime64("2026-01-01T00:00:00", "us")
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "customer": pa.array([f"customer-{i}" for i in ids], pa.string()),
            "email": pa.array([f"user{i}@example.com" for i in ids], pa.string()),
            "plan": pa.array(np.array(["free", "pro", "team", "enterprise"])[ids % 4]),
            "country": pa.array(np.array(["US", "GB", "DE", "FR", "FI", "JP"])[ids % 6]),
            "score": pa.array(rng.integers(0, 1000, n) + version, pa.int32()),
            "balance": pa.array(rng.random(n) * 1000 + version, pa.float64()),
            "visits": pa.array(ids % 97 + version, pa.int64()),
            "active": pa.array(ids % 3 == 0),
            "updated_at": pa.array(base + ids.astype("timedelta64[s]"), pa.timestamp("us")),
        }
    )


def _catalog(directory: Path) -> Any:
    from pyiceberg.catalog import load_catalog

    return load_catalog(
        "bench",
        type="sql",
        uri=f"sqlite:///{directory}/catalog.db",
        warehouse=f"file://{directory}/warehouse",
    )


def build(directory: Path, n: int) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "warehouse").mkdir(parents=True)
    catalog = _catalog(directory)
    catalog.create_namespace("gold")
    table = catalog.create_table("gold.facts", schema=_rows(np.arange(1)).schema)
    for start in range(0, n, FILE_ROWS):
        table.append(_rows(np.arange(start, min(n, start + FILE_ROWS))))


def apply(directory: Path, scenario: str, n: int, k: int) -> None:
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan

    table = _catalog(directory).load_table("gold.facts")
    clustered = np.arange(n // 2, n // 2 + k)
    scattered = np.linspace(0, n - 1, k).astype(np.int64)
    if scenario == "append":
        table.append(_rows(np.arange(n + 10_000_000, n + 10_000_000 + k)))
    elif scenario == "update_clustered":
        where = And(
            GreaterThanOrEqual("id", int(clustered[0])), LessThan("id", int(clustered[-1]) + 1)
        )
        table.overwrite(_rows(clustered, version=1), overwrite_filter=where)
    elif scenario == "delete_clustered":
        lo = int(clustered[0]) - 5 * k
        table.delete(And(GreaterThanOrEqual("id", lo), LessThan("id", lo + k)))
    elif scenario == "update_scattered":
        table.overwrite(_rows(scattered, version=2), overwrite_filter=In("id", scattered.tolist()))
    elif scenario == "delete_scattered":
        table.delete(In("id", (scattered + 1).tolist()))
    elif scenario == "compaction":
        _compact_two_files(table)
    else:
        raise ValueError(scenario)


def _compact_two_files(table: Any) -> None:
    """Rewrite two live data files into one, committed as a `replace` snapshot."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
    from pyiceberg.table import FileScanTask
    from pyiceberg.table.snapshots import Operation

    from tests.fixtures.iceberg_writers import commit_files, live_entries

    entries = live_entries(table)[:2]
    removed = [e.data_file for e in entries]
    rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(
        [FileScanTask(f) for f in removed]
    )
    added = list(_dataframe_to_data_files(table.metadata, rows, table.io))
    for data_file in added:
        data_file.spec_id = table.metadata.default_spec_id
    commit_files(table, Operation.REPLACE, added_data_files=added, removed_files=removed)


def _detect(table: Any, a: int, old_rows: bool = True) -> int:
    from floe_egress.changes import capture

    change_set = capture(table, from_snapshot=a, key=("id",), old_rows=old_rows)
    return sum(batch.num_rows for batch in change_set.batches())


def _full_diff(table: Any, a: int, b: int) -> int:
    import duckdb

    before = table.scan(snapshot_id=a).to_arrow()
    after = table.scan(snapshot_id=b).to_arrow()
    cols = ", ".join(f'"{c}"' for c in after.column_names)
    con = duckdb.connect()
    con.register("a", before)
    con.register("b", after)
    row = con.execute(
        f"""WITH x AS (SELECT id, hash({cols}) h FROM a), y AS (SELECT id, hash({cols}) h FROM b)
            SELECT count(*) FROM x FULL OUTER JOIN y USING (id)
            WHERE x.h IS DISTINCT FROM y.h"""
    ).fetchone()
    con.close()
    return int(row[0]) if row else 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(directory: Path, mode: str, a: int, repeat: int) -> dict[str, Any]:
    """Run in a child process: the first run gives the peak RSS, then `repeat` timed runs.

    Peak RSS is absolute (the process's high-water mark, imports included); `idle_mb` is
    the RSS before the first run, after imports and loading the table's metadata.
    """
    table = _catalog(directory).load_table("gold.facts")
    b = table.current_snapshot().snapshot_id

    def work() -> int:
        if mode == "fulldiff":
            return _full_diff(table, a, b)
        return _detect(table, a, old_rows=mode != "detect_keys")

    idle_mb = _rss_mb()
    started = time.perf_counter()
    changes = work()
    first = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = [first]
    for _ in range(repeat - 1):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return {
        "changes": changes,
        "times": times,
        "median_s": statistics.median(times),
        "peak_mb": round(peak_mb, 1),
        "idle_mb": round(idle_mb, 1),
    }


def _child(directory: Path, mode: str, a: int, repeat: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            mode,
            "--dir",
            str(directory),
            "--from-snapshot",
            str(a),
            "--repeat",
            str(repeat),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-repeat", type=int, default=3)
    parser.add_argument("--measure")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--from-snapshot", type=int)
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "changes-results.json")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.measure, args.from_snapshot, args.repeat)))
        return

    results: list[dict[str, Any]] = []
    for n in (int(s) for s in args.sizes.split(",")):
        directory = DATA_DIR / f"changes-{n}"
        t0 = time.perf_counter()
        build(directory, n)
        print(f"# N={n:,}: table built in {time.perf_counter() - t0:.1f} s", flush=True)
        for scenario in SCENARIOS:
            table = _catalog(directory).load_table("gold.facts")
            a = table.current_snapshot().snapshot_id
            apply(directory, scenario, n, args.k)
            detect = _child(directory, "detect", a, args.repeat)
            # What the daemon runs for every mode but append: deletes carry only the key.
            keys_only = (
                _child(directory, "detect_keys", a, args.repeat) if "delete" in scenario else None
            )
            full = _child(directory, "fulldiff", a, args.baseline_repeat)
            row = {
                "n": n,
                "k": args.k,
                "scenario": scenario,
                "detect_s": round(detect["median_s"], 4),
                "detect_peak_mb": detect["peak_mb"],
                "fulldiff_s": round(full["median_s"], 4),
                "fulldiff_peak_mb": full["peak_mb"],
                "idle_mb": detect["idle_mb"],
                "speedup": round(full["median_s"] / max(detect["median_s"], 1e-9), 1),
                "detect_keys_s": round(keys_only["median_s"], 4) if keys_only else None,
                "speedup_keys": (
                    round(full["median_s"] / max(keys_only["median_s"], 1e-9), 1)
                    if keys_only
                    else None
                ),
                "changes": detect["changes"],
                "fulldiff_changes": full["changes"],
            }
            results.append(row)
            print(json.dumps(row), flush=True)
        shutil.rmtree(directory)
    args.json_out.write_text(json.dumps(results, indent=1) + "\n")
    print(
        "\n| N | scenario | detect (median) | detect peak RSS | full diff (median) | "
        "full diff peak RSS | speedup | keys-only deletes (speedup) | rows out | idle RSS |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        keys = (
            f"{r['detect_keys_s'] * 1000:.0f} ms ({r['speedup_keys']}x)"
            if r.get("detect_keys_s") is not None
            else "-"
        )
        print(
            f"| {r['n']:,} | {r['scenario']} | {r['detect_s'] * 1000:.0f} ms | "
            f"{r['detect_peak_mb']:.0f} MB | {r['fulldiff_s'] * 1000:.0f} ms | "
            f"{r['fulldiff_peak_mb']:.0f} MB | {r['speedup']}x | {keys} | {r['changes']} | "
            f"{r['idle_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYICEBERG_MAX_WORKERS", str(os.cpu_count() or 2))
    main()
