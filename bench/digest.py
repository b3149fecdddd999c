"""Digest benchmark (issue 12): comparing a table with the digest of what a destination
holds, against the file-level diff of a whole-table rewrite, time and peak memory.

The table is bench/changes.py's (N rows of 10 columns in files of 100,000 rows, grown by
appends): snapshot A. The state store (SQLite) holds the digest of A for destination
`bench` as a cycle leaves it: one held segment of N keys (a full send or a compaction)
and three of 1,000 keys each (later cycles). B is a whole-table rewrite of A with K rows
updated, K deleted and K inserted, spread over the whole table. Each measurement runs in
a fresh child process (peak RSS is the measurement's own, imports included):

- load:      floe_egress.daemon.digest.load: the segments read from the store, checked,
             decoded and folded into the effective digest (one row per key)
- compare:   floe_egress.changes.digest.compare(B, effective digest) and every batch of
             its change set iterated (what a cycle whose A expired sends), the effective
             digest read beforehand from a Parquet copy (not timed)
- together:  load, then compare and iterate, as a cycle does (the digest loaded as a
             cycle loads it: beyond SPILL_ROWS entries spilled to DuckDB on disk;
             --spill-rows 0 forces that bounded path at any size)
- filediff:  the baseline: floe_egress.changes.capture(A -> B) of the whole-table
             rewrite (every file removed and added: the file-level diff reads them all),
             deletes by key as the daemon captures them outside append mode, iterated

Times are the median of every timed run (--rounds children per mode, run in turn, each
timing --repeat runs); peak RSS is the highest of the children's.

Reproduce:  .venv/bin/python bench/digest.py                          (N = 1M, 5M; ~5 min)
            .venv/bin/python bench/digest.py --sizes 100000 --rounds 1  (quick)
            .venv/bin/python bench/digest.py --sizes 10000000,20000000 --rounds 1 \
                --modes together   (the bounded path, taken beyond SPILL_ROWS)
            bench/digest_cli.py measures `floe-egress sync` itself.
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
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.changes import DATA_DIR, FILE_ROWS, _catalog, _rows  # noqa: E402
from bench.changes import build as build_table  # noqa: E402

KEY = ("id",)
DESTINATION = "bench"
SMALL_SEGMENTS = 3
MODES = ("load", "compare", "together", "filediff")


def _state_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'state' / 'state.db'}"


def _changed_ids(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(updated, deleted, inserted) ids: K each, spread over the whole table."""
    spread = np.linspace(0, n - 2, k).astype(np.int64)
    return spread, spread + 1, np.arange(n + 10_000_000, n + 10_000_000 + k)


def write_digest(directory: Path, a: int, fingerprint: str) -> None:
    """The digest of snapshot A for `bench` in a SQLite state store, with a checkpoint
    at A: one held segment of every key, then SMALL_SEGMENTS of 1,000 keys each."""
    from floe_egress.changes import digest as digests
    from floe_egress.state import Checkpoint, CycleCommit, DigestUpdate, RunRecord, open_store

    table = _catalog(directory).load_table("gold.facts")
    columns = digests.hashed_columns(table.schema().column_names, KEY, None)
    # As a full send's commit writes it: folded, so one entry per key in key order.
    folded = digests.effective([(False, digests.snapshot_entries(table, a, KEY, columns))], KEY)
    entries = folded.drop_columns([digests.UNSURE]).append_column(
        digests.GONE, pa.array(np.zeros(folded.num_rows, dtype=bool))
    )
    shutil.rmtree(directory / "state", ignore_errors=True)
    (directory / "state").mkdir()
    store = open_store(_state_url(directory))
    snapshot = table.snapshot_by_id(a)
    assert snapshot is not None
    rng = np.random.default_rng(7)
    parts = [entries] + [
        entries.take(pa.array(rng.choice(entries.num_rows, 1000, replace=False)))
        for _ in range(SMALL_SEGMENTS)
    ]
    for i, part in enumerate(parts):
        now = time.time()
        store.commit_cycle(
            CycleCommit(
                checkpoint=Checkpoint(
                    DESTINATION, "gold.facts", "main", a, snapshot.timestamp_ms, KEY, now
                ),
                run=RunRecord(DESTINATION, now, now, "success", "bench", None, a),
                digest=DigestUpdate(
                    fingerprint, digests.encode(part), part.num_rows, replace=i == 0
                ),
            )
        )
    store.close()


def rewrite(directory: Path, n: int, k: int) -> None:
    """B: every data file rewritten (one overwrite snapshot), K rows updated, K deleted
    and K inserted."""
    from pyiceberg.expressions import AlwaysTrue

    table = _catalog(directory).load_table("gold.facts")
    updated, deleted, inserted = _changed_ids(n, k)
    with table.transaction() as tx:
        tx.delete(AlwaysTrue())
        for start in range(0, n, FILE_ROWS):
            rows = _rows(np.arange(start, min(n, start + FILE_ROWS)))
            ids = rows.column("id")
            rows = rows.filter(pc.invert(pc.is_in(ids, pa.array(deleted))))
            bumped = pc.is_in(rows.column("id"), pa.array(updated))
            visits = pc.if_else(bumped, pc.add(rows.column("visits"), 1), rows.column("visits"))
            rows = rows.set_column(rows.schema.get_field_index("visits"), "visits", visits)
            if start + FILE_ROWS >= n:
                rows = pa.concat_tables([rows, _rows(inserted, version=1)])
            tx.append(rows)


def _iterate(change_set: Any) -> int:
    return sum(batch.num_rows for batch in change_set.batches())


def _compare(table: Any, digest: Any) -> tuple[int, dict[str, int]]:
    from floe_egress.changes import digest as digests
    from floe_egress.changes.capture import DEFAULT_BATCH_ROWS
    from floe_egress.changes.ranges import SnapshotRange

    span = SnapshotRange.of(
        table,
        ref="main",
        from_snapshot=None,
        key=KEY,
        to_snapshot=None,
        batch_rows=DEFAULT_BATCH_ROWS,
    )
    columns = digests.hashed_columns(table.schema().column_names, KEY, None)
    spill = os.environ.get(SPILL_ENV)
    change_set = digests.compare(
        span, columns, digest, reason="bench", spill_rows=int(spill) if spill else None
    )
    rows = _iterate(change_set)
    c = change_set.counts
    return rows, {"inserted": c.inserted, "updated": c.updated, "deleted": c.deleted}


def _load(*, for_compare: bool = False) -> Any:
    """The effective digest in Arrow; `for_compare`: as a cycle loads it to compare
    (spilled to DuckDB beyond SPILL_ROWS entries, or FLOE_BENCH_SPILL_ROWS)."""
    from floe_egress.daemon.digest import load, load_for_compare
    from floe_egress.state import open_store

    store = open_store(STATE_URL)
    try:
        if for_compare:
            spill = os.environ.get(SPILL_ENV)
            rows = int(spill) if spill else None
            return load_for_compare(store, DESTINATION, KEY, spill_rows=rows)
        return load(store, DESTINATION, KEY)
    finally:
        store.close()


SPILL_ENV = "FLOE_BENCH_SPILL_ROWS"


STATE_URL = ""


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """The process's RSS high-water mark (VmHWM: unlike ru_maxrss, not inherited from
    the parent across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(directory: Path, mode: str, a: int, repeat: int) -> dict[str, Any]:
    """Run in a child process: `repeat` timed runs, peak RSS after the first."""
    import pyarrow.parquet as pq

    from floe_egress.changes import capture

    global STATE_URL
    STATE_URL = _state_url(directory)
    table = _catalog(directory).load_table("gold.facts")
    digest = pq.read_table(directory / "effective.parquet") if mode == "compare" else None

    def work() -> tuple[int, dict[str, int]]:
        if mode == "load":
            return _load().num_rows, {}
        if mode == "compare":
            return _compare(table, digest)
        if mode == "together":
            return _compare(table, _load(for_compare=True))
        change_set = capture(table, from_snapshot=a, key=KEY, old_rows=False)
        c = change_set.counts
        counts = {"inserted": c.inserted, "updated": c.updated, "deleted": c.deleted}
        return _iterate(change_set), counts

    idle_mb = _rss_mb()
    times = []
    rows, counts, peak_mb = 0, {}, 0.0
    for i in range(repeat):
        started = time.perf_counter()
        rows, counts = work()
        times.append(time.perf_counter() - started)
        if i == 0:
            peak_mb = _peak_mb()
    return {
        "rows": rows,
        "counts": counts,
        "times": [round(t, 3) for t in times],
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
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _checkpoint(directory: Path) -> int:
    """A's snapshot id: the checkpoint of the digest's destination."""
    from floe_egress.state import open_store

    store = open_store(_state_url(directory))
    try:
        checkpoint = store.get_checkpoint(DESTINATION)
    finally:
        store.close()
    assert checkpoint is not None
    assert checkpoint.snapshot_id is not None
    return int(checkpoint.snapshot_id)


def prepare(directory: Path, n: int, k: int) -> int:
    """Build the table, the digest of A and B; A's snapshot id."""
    from floe_egress.daemon.digest import load
    from floe_egress.state import open_store

    build_table(directory, n)
    a = _catalog(directory).load_table("gold.facts").current_snapshot().snapshot_id
    write_digest(directory, a, fingerprint="bench")
    store = open_store(_state_url(directory))
    import pyarrow.parquet as pq

    pq.write_table(load(store, DESTINATION, KEY), directory / "effective.parquet")
    store.close()
    rewrite(directory, n, k)
    return int(a)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,5000000")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per child")
    parser.add_argument("--rounds", type=int, default=2, help="children per mode, alternated")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--spill-rows",
        type=int,
        help="compare by the bounded (spilled) path beyond this many rows (default: "
        "SPILL_ROWS of floe_egress.changes.digest_spill; 0 forces it)",
    )
    parser.add_argument("--measure")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--from-snapshot", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the built data")
    parser.add_argument("--reuse", action="store_true", help="use data an earlier --keep left")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "digest-results.json")
    args = parser.parse_args()
    if args.spill_rows is not None:
        os.environ[SPILL_ENV] = str(args.spill_rows)  # read by the children
    if args.measure:
        print(json.dumps(measure(args.dir, args.measure, args.from_snapshot, args.repeat)))
        return

    results: list[dict[str, Any]] = []
    for n in (int(s) for s in args.sizes.split(",")):
        directory = DATA_DIR / f"digest-{n}"
        t0 = time.perf_counter()
        if args.reuse and (directory / "state" / "state.db").exists():
            a = _checkpoint(directory)
            print(f"# N={n:,}: reusing the table, digest and rewrite of an earlier --keep run")
        else:
            a = prepare(directory, n, args.k)
            print(f"# N={n:,}: table, digest and rewrite built in {time.perf_counter() - t0:.1f} s")
        row: dict[str, Any] = {"n": n, "k": args.k}
        # Rounds alternate the modes, so a busy spell of the machine hits them alike.
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                m = _child(directory, mode, a, args.repeat)
                print(json.dumps({"n": n, "mode": mode, **m}), flush=True)
                row.setdefault(mode, []).append(m)
        for mode in args.modes.split(","):
            runs = row[mode]
            times = [t for m in runs for t in m["times"]]
            row[mode] = {
                **runs[0],
                "times": times,
                "median_s": statistics.median(times),
                "peak_mb": max(m["peak_mb"] for m in runs),
            }
        results.append(row)
        if not args.keep:
            shutil.rmtree(directory)
    args.json_out.write_text(json.dumps(results, indent=1) + "\n")
    _table(results)


def _cell(row: dict[str, Any], mode: str) -> str:
    m = row.get(mode)
    return "-" if m is None else f"{m['median_s']:.2f} s ({m['peak_mb']:.0f} MB)"


def _table(results: list[dict[str, Any]]) -> None:
    print(
        "\n| N | load | compare | load + compare (peak RSS) | file-level diff of a rewrite "
        "(peak RSS) | digest / diff time | rows out |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = "-"
        if "together" in r and "filediff" in r:
            ratio = f"{r['together']['median_s'] / r['filediff']['median_s']:.2f}"
        out = r.get("together", r.get("compare", {})).get("rows", "-")
        print(
            f"| {r['n']:,} | {_cell(r, 'load')} | {_cell(r, 'compare')} | "
            f"{_cell(r, 'together')} | {_cell(r, 'filediff')} | {ratio} | {out} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYICEBERG_MAX_WORKERS", str(os.cpu_count() or 2))
    main()
