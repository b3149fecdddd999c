"""Database sink benchmark: an initial load of N rows x 10 columns into PostgreSQL.

Each measurement runs in a fresh child process against a fresh database, so its peak RSS
is its own. The change rows are generated once and memory-mapped by every child.

- raw_copy:   baseline in the same run: Arrow -> CSV (pyarrow) -> COPY into a table with
              a primary key, psycopg2, one transaction; no dlt
- initial:    floe_egress's postgres sink, as the cycle drives it: batches of
              --batch-size rows (the sink type's default) into an empty table
- merge:      steady state after an initial load: upsert batches of --merge-rows
              changed rows (a fresh key range each) into the N-row table; the first
              merge (which builds the key index) is a warm-up, not measured
- plain_dlt:  (--plain) dlt alone, the way its docs show it: arrow in, CSV/COPY,
              merge upsert, defaults otherwise; one batch

Reproduce:  .venv/bin/python bench/sinks_db.py                 (N = 1M, 3 runs; ~3 min)
            .venv/bin/python bench/sinks_db.py --rows 200000 --runs 1   (quick)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA_DIR = ROOT / "bench" / ".data"
ADMIN_URL = os.environ.get("FLOE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
OP = "_floe_op"


def rows(ids: np.ndarray, version: int = 0) -> pa.Table:
    """10 columns: ints, strings, a float, a bool, a timestamp with time zone."""
    n = len(ids)
    rng = np.random.default_rng(int(ids[0]) + version if n else 0)
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
            "updated_at": pa.array(
                base + ids.astype("timedelta64[s]"), pa.timestamp("us", tz="UTC")
            ),
        }
    )


def changes(table: pa.Table, op: str) -> pa.Table:
    return table.append_column(OP, pa.array([op] * table.num_rows, pa.string()))


def data_file(n: int) -> Path:
    path = DATA_DIR / f"sinks_db_{n}.arrow"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        table = changes(rows(np.arange(n, dtype=np.int64)), "insert")
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=100_000)
    return path


def load_data(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


@contextmanager
def fresh_database() -> Iterator[str]:
    import psycopg2

    name = f"floe_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- measurements (child process) ---------------------------------------------------


def measure_raw_copy(table: pa.Table, url: str) -> dict[str, Any]:
    import io

    import psycopg2
    import pyarrow.csv as pacsv

    data = table.drop_columns([OP])
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers (id BIGINT PRIMARY KEY, customer TEXT, email TEXT, "
            "plan TEXT, country TEXT, score INTEGER, balance DOUBLE PRECISION, "
            "visits BIGINT, active BOOLEAN, updated_at TIMESTAMPTZ)"
        )
    started = time.perf_counter()
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    with conn, conn.cursor() as cur:
        cur.copy_expert("COPY customers FROM STDIN WITH (FORMAT csv)", buffer)
    seconds = time.perf_counter() - started
    conn.close()
    return {"rows": table.num_rows, "seconds": seconds}


def build_sink(url: str, work_dir: Path, mode: str = "upsert") -> Any:
    from floe_egress.config.models import RetryConfig
    from floe_egress.sinks.registry import BuildRequest, get_sink_type

    sink_type = get_sink_type("postgres")
    assert sink_type is not None
    config = sink_type.config_model.model_validate(
        {"credentials": url, "dataset": "bench", "table": "customers"}
    )
    request = BuildRequest(
        destination="bench",
        sink_config=config,
        mode=mode,  # type: ignore[arg-type]
        key=("id",),
        field_mapping=None,
        batch_size=None,
        rate_limit=None,
        retry=RetryConfig(),
        work_dir=work_dir,
    )
    return sink_type.build(request)


async def write_batches(
    sink: Any, table: pa.Table, batch_size: int, from_snapshot: int | None, to_snapshot: int
) -> list[Any]:
    from floe_egress.sinks.base import WriteContext

    reports = []
    for index, start in enumerate(range(0, table.num_rows, batch_size)):
        batch = table.slice(start, batch_size)
        context = WriteContext("bench", "upsert", ("id",), from_snapshot, to_snapshot, index)
        reports.append(await sink.write(batch, context))
    return reports


def steps(sink: Any) -> dict[str, float]:
    totals: dict[str, float] = {}
    for run in sink.runs:
        for step, seconds in run.seconds.items():
            totals[step] = totals.get(step, 0.0) + seconds
    return {k: round(v, 3) for k, v in totals.items()}


async def measure_initial(table: pa.Table, url: str, batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as work:
        sink = build_sink(url, Path(work))
        await sink.check()
        started = time.perf_counter()
        reports = await write_batches(sink, table, batch_size, None, 1)
        seconds = time.perf_counter() - started
        await sink.close()
    delivered = sum(r.rows_delivered for r in reports)
    assert delivered == table.num_rows, delivered
    return {
        "rows": delivered,
        "seconds": seconds,
        "runs": len(sink.runs),
        "dispositions": sorted({r.disposition for r in sink.runs}),
        "steps": steps(sink),
    }


async def measure_merge(
    table: pa.Table, url: str, batch_size: int, merge_rows: int, batches: int
) -> dict[str, Any]:
    n = table.num_rows
    with tempfile.TemporaryDirectory() as work:
        sink = build_sink(url, Path(work))
        await write_batches(sink, table, batch_size, None, 1)
        timings: list[float] = []
        for round_ in range(batches + 1):
            start = (round_ * merge_rows) % max(1, n - merge_rows)
            changed = changes(
                rows(np.arange(start, start + merge_rows), version=round_ + 1), "update"
            )
            sink.runs.clear()
            began = time.perf_counter()
            await write_batches(sink, changed, merge_rows, round_ + 1, round_ + 2)
            if round_:  # the first merge builds the key index
                timings.append(time.perf_counter() - began)
        last_steps = steps(sink)
        dispositions = sorted({r.disposition for r in sink.runs})
        await sink.close()
    median = statistics.median(timings)
    return {
        "rows": merge_rows,
        "seconds": median,
        "batch_seconds": [round(t, 3) for t in timings],
        "dispositions": dispositions,
        "steps": last_steps,
    }


def measure_plain_dlt(table: pa.Table, url: str) -> dict[str, Any]:
    import dlt
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials

    credentials = PostgresCredentials(url)
    credentials.password = credentials.password or ""
    with tempfile.TemporaryDirectory() as work:
        pipeline = dlt.pipeline(
            "plain",
            pipelines_dir=work,
            destination=dlt.destinations.postgres(credentials),
            dataset_name="bench",
        )
        started = time.perf_counter()
        pipeline.run(
            table.drop_columns([OP]),
            table_name="customers",
            write_disposition={"disposition": "merge", "strategy": "upsert"},
            primary_key="id",
            loader_file_format="csv",
        )
        seconds = time.perf_counter() - started
        trace = {
            s.step: round((s.finished_at - s.started_at).total_seconds(), 3)
            for s in pipeline.last_trace.steps
            if s.step in ("extract", "normalize", "load")
        }
    return {"rows": table.num_rows, "seconds": seconds, "steps": trace}


def child(args: argparse.Namespace) -> None:
    table = load_data(data_file(args.rows))
    rss_before = peak_rss_mb()
    with fresh_database() as url:
        if args.child == "raw_copy":
            result = measure_raw_copy(table, url)
        elif args.child == "initial":
            result = asyncio.run(measure_initial(table, url, args.batch_size))
        elif args.child == "merge":
            result = asyncio.run(
                measure_merge(table, url, args.batch_size, args.merge_rows, args.merge_batches)
            )
        else:
            result = measure_plain_dlt(table, url)
    result["rows_per_second"] = result["rows"] / result["seconds"]
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["rss_with_data_mb"] = round(rss_before, 1)
    print(json.dumps(result))


# --- orchestration ------------------------------------------------------------------


def run_child(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        scenario,
        "--rows",
        str(args.rows),
        "--batch-size",
        str(args.batch_size),
        "--merge-rows",
        str(args.merge_rows),
        "--merge-batches",
        str(args.merge_batches),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{scenario} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--merge-rows", type=int, default=100_000)
    parser.add_argument("--merge-batches", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="also measure plain dlt (slow)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    data_file(args.rows)
    scenarios = ["raw_copy", "initial", "merge", *(["plain_dlt"] if args.plain else [])]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    for run in range(args.runs):
        for scenario in scenarios:
            if scenario == "plain_dlt" and run:
                continue
            result = run_child(scenario, args)
            results[scenario].append(result)
            print(
                f"run {run + 1} {scenario:9s} {result['rows_per_second']:>10,.0f} rows/s  "
                f"{result['seconds']:6.2f} s  peak {result['peak_rss_mb']:.0f} MB  "
                f"{result.get('steps', '')}",
                flush=True,
            )
    print(f"\nN = {args.rows:,} rows x 10 columns, medians of {args.runs} runs\n")
    print("| measurement | rows/s (median) | seconds (median) | peak RSS MB (median) | runs |")
    print("|---|---:|---:|---:|---|")
    for scenario, measured in results.items():
        speeds = [m["rows_per_second"] for m in measured]
        print(
            f"| {scenario} | {statistics.median(speeds):,.0f} | "
            f"{statistics.median(m['seconds'] for m in measured):.2f} | "
            f"{statistics.median(m['peak_rss_mb'] for m in measured):.0f} | "
            f"{', '.join(f'{s:,.0f}' for s in speeds)} |"
        )
    out = DATA_DIR / "sinks_db-results.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
