"""Digest benchmark through the whole process: `floe-egress sync` of one destination
whose last synced snapshot A expired (plan `digest`), against the same sync while A is
still readable and B is a whole-table rewrite (plan `diff`: the file-level diff).

Table, digest and B as in bench/digest.py (N rows, K updated + K deleted + K inserted
spread over the table); the destination is a local DuckDB file (`duckdb` sink, mirror
mode), and the state a SQLite store holding a checkpoint at A and the digest of A with
the fingerprint the destination's configuration gives. Each run starts from a copy of
that state (the destination file and dlt's working files live in it too, so each run
starts empty) and of the catalog with A readable or expired; the two syncs run in turn.
Wall time and peak RSS are measured by /usr/bin/time around the CLI.

Reproduce:  .venv/bin/python bench/digest_cli.py                       (N = 1M; ~3 min)
            .venv/bin/python bench/digest_cli.py --sizes 1000000,5000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.changes import DATA_DIR, _catalog  # noqa: E402
from bench.changes import build as build_table  # noqa: E402
from bench.digest import DESTINATION, KEY, rewrite, write_digest  # noqa: E402
from bench.e2e import timed  # noqa: E402

CLI = ROOT / ".venv" / "bin" / "floe-egress"


def write_config(directory: Path) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "bench"},
        "catalog": {
            "name": "bench",
            "type": "sql",
            "uri": f"sqlite:///{directory}/catalog.db",
            "warehouse": f"file://{directory}/warehouse",
        },
        "state": {"url": f"sqlite:///{directory / 'state' / 'state.db'}"},
        "ingestion": {
            "destinations": [
                {
                    "name": DESTINATION,
                    "source_table": "gold.facts",
                    "primary_key": list(KEY),
                    "mode": "mirror",
                    "sink_type": "duckdb",
                    "sink_config": {
                        "path": str(directory / "state" / "dest.duckdb"),
                        "table": "facts",
                    },
                }
            ]
        },
    }
    path = directory / "floe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _fingerprint(config: Path) -> str:
    from floe_egress.changes import digest as digests
    from floe_egress.changes.source import arrow_schema
    from floe_egress.daemon.digest import fingerprint
    from floe_egress.spec import load_spec

    dest = load_spec(config).spec.ingestion.destinations[0]
    table = _catalog(config.parent).load_table("gold.facts")
    schema = arrow_schema(table.schema())
    columns = digests.hashed_columns(schema.names, KEY, dest.field_mapping)
    return fingerprint(dest, KEY, schema, columns)


def prepare(directory: Path, n: int, k: int) -> None:
    build_table(directory, n)
    a = _catalog(directory).load_table("gold.facts").current_snapshot().snapshot_id
    config = write_config(directory)
    write_digest(directory, a, fingerprint=_fingerprint(config))
    rewrite(directory, n, k)
    shutil.copytree(directory / "state", directory / "state-at-a")


def expire_all_but_current(directory: Path) -> None:
    table = _catalog(directory).load_table("gold.facts")
    current = table.current_snapshot().snapshot_id
    older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]
    table.maintenance.expire_snapshots().by_ids(older).commit()


def sync_once(directory: Path, catalog: str) -> dict[str, Any]:
    shutil.copyfile(directory / catalog, directory / "catalog.db")
    shutil.rmtree(directory / "state")
    shutil.copytree(directory / "state-at-a", directory / "state")
    config = directory / "floe.yaml"
    command = [str(CLI), "--log-level", "WARNING", "sync", "-c", str(config), "-d", DESTINATION]
    seconds, peak_mb, stdout = timed([*command, "--json"], cwd=directory)
    result = json.loads(stdout)
    runs = result if isinstance(result, list) else result.get("results", [result])
    run = runs[0]
    return {
        "wall_s": seconds,
        "peak_mb": peak_mb,
        "plan": run.get("plan"),
        "counts": [run.get("inserted"), run.get("updated"), run.get("deleted")],
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "walls": [round(r["wall_s"], 2) for r in runs],
        "peak_mb": max(r["peak_mb"] for r in runs),
        "plan": runs[0]["plan"],
        "counts": runs[0]["counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "digest-cli-results.json")
    args = parser.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        directory = DATA_DIR / f"digest-cli-{n}"
        t0 = time.perf_counter()
        prepare(directory, n, args.k)
        print(f"# N={n:,}: table, digest and rewrite built in {time.perf_counter() - t0:.1f} s")
        # The catalog with A readable and with A expired, restored in turn before each run.
        shutil.copyfile(directory / "catalog.db", directory / "catalog-readable.db")
        expire_all_but_current(directory)
        shutil.copyfile(directory / "catalog.db", directory / "catalog-expired.db")
        runs: dict[str, list[dict[str, Any]]] = {"rewrite_diff": [], "digest": []}
        for _ in range(args.repeat):
            for name, catalog in (
                ("rewrite_diff", "catalog-readable.db"),
                ("digest", "catalog-expired.db"),
            ):
                runs[name].append(sync_once(directory, catalog))
                print(json.dumps({"run": name, **runs[name][-1]}), flush=True)
        results.append({"n": n, "k": args.k, **{k: summary(v) for k, v in runs.items()}})
        shutil.rmtree(directory)
    args.json_out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n| N | sync, A expired (digest) | sync, A readable (rewrite diff) | rows sent |")
    print("|---:|---:|---:|---:|")
    for r in results:
        d, b = r["digest"], r["rewrite_diff"]
        print(
            f"| {r['n']:,} | {d['wall_s']:.2f} s, {d['peak_mb']:.0f} MB ({d['plan']}) | "
            f"{b['wall_s']:.2f} s, {b['peak_mb']:.0f} MB ({b['plan']}) | {d['counts']} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYICEBERG_MAX_WORKERS", str(os.cpu_count() or 2))
    main()
