"""`floe-egress demo`: the whole product on the embedded defaults, in one folder.

A SQLite SQL catalog and a local warehouse, SQLite state, a DuckDB file as the
destination: no server, no network. It builds a Gold table, syncs it, commits an
update, an insert and a delete, shows the plan, syncs again, and prints the result.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.preview import preview_cycle
from floe_egress.daemon.runtime import Runtime, catalog_properties
from floe_egress.errors import ConfigError
from floe_egress.platform.contract import IngestionConfig
from floe_egress.platform.plugin import FloeEgressPlugin
from floe_egress.spec import load_spec

MARKER = ".floe-egress-demo"
DESTINATION = "demo_customers"

FLOE_YAML = """\
# Written by `floe-egress demo`. Try: floe-egress status --config {dir}/floe.yaml
apiVersion: floe.dev/v1
kind: FloeSpec
metadata:
  name: floe-egress-demo
catalog:
  name: gold
  type: sql
  uri: sqlite:///{dir}/catalog.db
  warehouse: file://{dir}/warehouse
state:
  url: sqlite:///{dir}/state.db
ingestion:
  destinations:
    - name: {destination}
      source_table: gold.customers
      primary_key: [customer_id]
      mode: mirror
      sink_type: duckdb
      sink_config:
        path: {dir}/destination.duckdb
        dataset: crm
        table: customers
      schedule:
        interval_seconds: 5
"""

SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("plan", pa.string()),
        pa.field("country", pa.string()),
        pa.field("lifetime_value", pa.decimal128(12, 2)),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _customers(rows: list[tuple[int, str, str, str, str]]) -> pa.Table:
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    return pa.Table.from_pylist(
        [
            {
                "customer_id": cid,
                "email": email,
                "plan": plan,
                "country": country,
                "lifetime_value": decimal.Decimal(ltv),
                "updated_at": now,
            }
            for cid, email, plan, country, ltv in rows
        ],
        schema=SCHEMA,
    )


INITIAL = [
    (1, "ada@example.com", "pro", "GB", "1200.00"),
    (2, "grace@example.com", "free", "US", "0.00"),
    (3, "linus@example.com", "team", "FI", "310.50"),
    (4, "margaret@example.com", "pro", "US", "980.00"),
    (5, "dennis@example.com", "free", "US", "0.00"),
    (6, "barbara@example.com", "team", "US", "450.25"),
]


def _print_result(title: str, result: CycleResult) -> None:
    print(f"\n== {title}")
    print(f"   plan {result.plan}: snapshot {result.from_snapshot} -> {result.to_snapshot}")
    if result.status == "failed":
        print(f"   FAILED: {result.error}")
        return
    print(
        f"   sent {result.inserted} inserted, {result.updated} updated, "
        f"{result.deleted} deleted ({result.failed} failed, {result.invalid} invalid) "
        f"in {result.duration_seconds:.2f} s"
    )


def _show_destination(path: Path) -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        cursor = con.execute(
            "SELECT customer_id, email, plan, country, lifetime_value "
            "FROM crm.customers ORDER BY customer_id"
        )
        names = [d[0] for d in cursor.description or []]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    finally:
        con.close()
    return rows


def _prepare(directory: Path) -> Path:
    directory = directory.resolve()
    if directory.exists():
        if not (directory / MARKER).exists() and any(directory.iterdir()):
            raise ConfigError(
                f"{directory} exists and was not made by `floe-egress demo`; "
                "choose another folder with --dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).touch()
    (directory / "warehouse").mkdir()
    (directory / "floe.yaml").write_text(FLOE_YAML.format(dir=directory, destination=DESTINATION))
    return directory


async def _demo(directory: Path) -> int:
    loaded = load_spec(directory / "floe.yaml")
    spec = loaded.spec
    dest = spec.destination(DESTINATION)
    runtime = Runtime(spec)
    plugin = FloeEgressPlugin(
        {"name": spec.catalog.name, **catalog_properties(spec, runtime.work_dir)}
    )
    try:

        def ingest(data: pa.Table, mode: str) -> None:
            pipeline = plugin.create_pipeline(
                IngestionConfig(
                    source_type="arrow",
                    destination_table="gold.customers",
                    write_mode=mode,
                    source_config={"data": data, "primary_key": ["customer_id"]},
                )
            )
            result = plugin.run(pipeline)
            if not result.success:
                raise RuntimeError(f"building the demo table failed: {result.errors}")

        await asyncio.to_thread(ingest, _customers(INITIAL), "append")
        print(
            f"Created Gold table gold.customers with {len(INITIAL)} rows "
            f"(catalog {directory / 'catalog.db'})."
        )
        first = await run_cycle(runtime, dest)
        _print_result("sync 1: first sync, a full load", first)

        print(
            "\nCommitting to gold.customers: customer 3 moves to plan 'enterprise' "
            "(update), customer 7 signs up (insert), customer 5 leaves (delete)."
        )
        await asyncio.to_thread(
            ingest,
            _customers(
                [
                    (3, "linus@example.com", "enterprise", "FI", "5310.50"),
                    (7, "ken@example.com", "pro", "US", "99.00"),
                ]
            ),
            "merge",
        )
        table = runtime.load_table(dest)
        await asyncio.to_thread(table.delete, "customer_id = 5")

        planned = await preview_cycle(runtime, dest)
        print(f"\n== plan: what sync 2 will send (plan {planned.plan})")
        for op, rows in planned.sample.items():
            for row in rows:
                # a delete carries its key alone (its old values are not read)
                values = f": {row['email']} {row['plan']}" if "email" in row else ""
                print(f"   {op:6} customer {row['customer_id']}{values}")
        second = await run_cycle(runtime, dest)
        _print_result("sync 2: only the changed rows", second)
        third = await run_cycle(runtime, dest)
        _print_result("sync 3: nothing new", third)
    finally:
        await runtime.close()

    duck = directory / "destination.duckdb"
    print(f"\nThe destination ({duck}, table crm.customers) now holds:")
    for row in _show_destination(duck):
        print(
            f"   {row['customer_id']:>3} {row['email']:<24} {row['plan']:<11} "
            f"{row['country']} {row['lifetime_value']}"
        )
    ok = (second.inserted, second.updated, second.deleted) == (1, 1, 1) and third.status == "noop"
    print("\nLook further:")
    print(f"   floe-egress status --config {directory}/floe.yaml")
    print(f"   floe-egress plan --config {directory}/floe.yaml")
    print(
        f"   python -c \"import duckdb; print(duckdb.connect('{duck}')"
        ".sql('select * from crm.customers'))\""
    )
    if not ok or first.status == "failed":
        print("\nThe demo did not end as expected: see the errors above.")
        return 1
    print("\nThe second sync sent exactly the 3 changed rows; the third sent nothing.")
    return 0


def run_demo(directory: Path) -> int:
    return asyncio.run(_demo(_prepare(directory)))
