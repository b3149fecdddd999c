"""Outages against the real daemon: what it does while a part is down, and after.

The daemon (`floe-egress run`, a subprocess) follows a 20,000-row Iceberg table and
mirrors it into a PostgreSQL table (`mode: mirror`: upserts and deletes by key). A
writer commits a change every half second (20 upserts, 10 appends, 5 deletes in turn)
while each fault lasts. Each part the daemon talks to is reached through a TCP proxy
on 127.0.0.1 that can go away (every connection closed, new ones refused) and come
back, which is what a host or a server restart looks like from the daemon:

- destination down 60 s: the PostgreSQL destination's proxy;
- catalog unreachable 30 s: the SQL catalog (on PostgreSQL)'s proxy; the table's files
  stay readable, only the catalog's metadata lookups fail;
- state store restarted mid-cycle: the PostgreSQL state store's proxy drops every
  connection while a 5,000-row change is being delivered, and refuses new ones for 5 s;
- state directory full 30 s: a second daemon keeps its SQLite state and dlt's files on
  a 64 MB tmpfs, filled to the last byte for 30 s.

For each fault: whether the daemon stayed up, what /readyz answered during it, the rows
lost (keys whose values differ between the table and the destination once the daemon
has had 120 s to converge; must be 0), duplicate keys in the destination (must be 0),
and the time from the end of the fault until the destination equals the table.

Reproduce (root, for the tmpfs):  .venv/bin/python bench/outage.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
import yaml
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import In
from pyiceberg.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.proxy import Proxy  # noqa: E402
from tests.integration.daemon.harness import DaemonProcess, free_port  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"
ROWS = 20_000
SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("plan", pa.string()),
        pa.field("mrr", pa.float64()),
    ]
)
DEST_SCHEMA = "crm"
DEST_TABLE = "customers"
CONVERGE_WITHIN = 120.0


def rows(ids: list[int], version: int) -> pa.Table:
    return pa.table(
        {
            "id": ids,
            "email": [f"user{i}.v{version}@example.com" for i in ids],
            "plan": [("free", "pro", "team")[(i + version) % 3] for i in ids],
            "mrr": [float((i * 7 + version) % 1000) for i in ids],
        },
        schema=SCHEMA,
    )


@contextlib.contextmanager
def database() -> Any:
    name = f"floe_outage_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@dataclass
class Rig:
    """The table, the destination and the daemon of one run."""

    table: Table
    dest_db: str
    daemon: DaemonProcess
    version: int = 0
    next_id: int = ROWS + 1
    live: set[int] = field(default_factory=set)

    def reload(self) -> None:
        self.table = self.table.catalog.load_table("gold.customers")

    def commit(self) -> None:
        """One change: upsert 20, append 10 or delete 5 rows, in turn."""
        self.version += 1
        kind = self.version % 3
        if kind == 0:
            keys = random.sample(sorted(self.live), 20)
            self.table.upsert(rows(keys, self.version), join_cols=["id"])
        elif kind == 1:
            keys = list(range(self.next_id, self.next_id + 10))
            self.next_id += 10
            self.table.append(rows(keys, self.version))
            self.live.update(keys)
        else:
            keys = random.sample(sorted(self.live), 5)
            self.table.delete(In("id", keys))
            self.live.difference_update(keys)
        self.reload()

    def big_change(self) -> None:
        self.version += 1
        keys = random.sample(sorted(self.live), 5000)
        self.table.upsert(rows(keys, self.version), join_cols=["id"])
        self.reload()

    def expected(self) -> dict[int, tuple[Any, ...]]:
        data = self.table.scan().to_arrow()
        return {r["id"]: (r["email"], r["plan"], r["mrr"]) for r in data.to_pylist()}

    def destination(self) -> tuple[dict[int, tuple[Any, ...]], int]:
        """The destination's rows by key, and how many keys it holds more than once."""
        conn = psycopg2.connect(f"{PG}/{self.dest_db}")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id, email, plan, mrr FROM {DEST_SCHEMA}.{DEST_TABLE}")
                found = cur.fetchall()
                cur.execute(
                    f"SELECT count(*) FROM (SELECT id FROM {DEST_SCHEMA}.{DEST_TABLE} "
                    "GROUP BY id HAVING count(*) > 1) d"
                )
                dupes = int(cur.fetchone()[0])
        except psycopg2.errors.UndefinedTable:
            return {}, 0
        finally:
            conn.close()
        return {r[0]: (r[1], r[2], float(r[3])) for r in found}, dupes


@dataclass
class Outcome:
    fault: str
    stayed_up: bool
    readyz: list[str]
    lost: int
    duplicates: int
    converge_seconds: float | None
    commits: int


async def readyz_during(daemon: DaemonProcess, seconds: float) -> list[str]:
    """What /readyz answered, polled twice a second for `seconds` (distinct answers)."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            code, body = await daemon.get("/readyz")
            failing = sorted(k for k, v in (body.get("checks") or {}).items() if v != "ok")
            answer = f"{code}" + (f" ({', '.join(failing)})" if failing else "")
        except Exception as exc:  # the daemon not answering is an answer too
            answer = f"no answer ({type(exc).__name__})"
        if answer not in seen:
            seen.append(answer)
        await asyncio.sleep(0.5)
    return seen


async def write_while(rig: Rig, seconds: float) -> int:
    """Commit a change every half second for `seconds`; how many."""
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.to_thread(rig.commit)
        done += 1
        await asyncio.sleep(0.5)
    return done


async def converge(rig: Rig) -> tuple[float | None, int, int]:
    """Seconds until the destination equals the table (None: not within the limit), the
    rows then lost or wrong, and the duplicated keys."""
    started = time.monotonic()
    want = await asyncio.to_thread(rig.expected)
    got: dict[int, tuple[Any, ...]] = {}
    dupes = 0
    while time.monotonic() - started < CONVERGE_WITHIN:
        got, dupes = await asyncio.to_thread(rig.destination)
        if got == want:
            return time.monotonic() - started, 0, dupes
        await asyncio.sleep(0.25)
    lost = sum(1 for k, v in want.items() if got.get(k) != v) + len(set(got) - set(want))
    return None, lost, dupes


async def fault(
    rig: Rig,
    name: str,
    seconds: float,
    down: Callable[[], Awaitable[None]],
    up: Callable[[], Awaitable[None]],
) -> Outcome:
    print(f"-- {name}", flush=True)
    await down()
    commits, readyz = await asyncio.gather(
        write_while(rig, seconds), readyz_during(rig.daemon, seconds)
    )
    await up()
    seconds_to_converge, lost, dupes = await converge(rig)
    stayed_up = rig.daemon.proc.returncode is None
    return Outcome(name, stayed_up, readyz, lost, dupes, seconds_to_converge, commits)


def config(
    path: Path, *, catalog_uri: str, warehouse: str, state_url: str, dest_url: str, port: int
) -> Path:
    doc = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "outage"},
        "catalog": {"name": "gold", "type": "sql", "uri": catalog_uri, "warehouse": warehouse},
        "state": {"url": state_url},
        "server": {"host": "127.0.0.1", "port": port, "lease_seconds": 30},
        "ingestion": {
            "destinations": [
                {
                    "name": "crm",
                    "source_table": "gold.customers",
                    "mode": "mirror",
                    "sink_type": "postgres",
                    "sink_config": {
                        "credentials": dest_url,
                        "dataset": DEST_SCHEMA,
                        "table": DEST_TABLE,
                    },
                    "schedule": {"interval_seconds": 1},
                    "max_delete_fraction": 1.0,
                }
            ]
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def proxied(database_name: str) -> AsyncIterator[tuple[Proxy, str]]:
    proxy = await Proxy(5432).start()
    try:
        yield proxy, f"postgresql://postgres@127.0.0.1:{proxy.port}/{database_name}"
    finally:
        with contextlib.suppress(Exception):
            await proxy.stop()


def new_table(catalog_uri: str, warehouse: str) -> Table:
    catalog = load_catalog("gold", type="sql", uri=catalog_uri, warehouse=warehouse)
    catalog.create_namespace("gold")
    table = catalog.create_table("gold.customers", schema=SCHEMA)
    with table.update_schema() as update:
        update.set_identifier_fields("id")
    table = catalog.load_table("gold.customers")
    table.append(rows(list(range(1, ROWS + 1)), 0))
    return catalog.load_table("gold.customers")


async def start(path: Path, port: int, work: Path) -> DaemonProcess:
    daemon = await DaemonProcess.start(path, port=port, work_dir=work, name="outage")
    await daemon.wait_ready(60)
    return daemon


async def run_postgres_faults(
    tmp: Path, destination_seconds: float, catalog_seconds: float
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with database() as catalog_db, database() as state_db, database() as dest_db:
        async with (
            proxied(catalog_db) as (catalog_proxy, catalog_url),
            proxied(state_db) as (state_proxy, state_url),
            proxied(dest_db) as (dest_proxy, dest_url),
        ):
            warehouse = (tmp / "warehouse").as_uri()
            (tmp / "warehouse").mkdir()
            direct_catalog = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{catalog_db}"
            table = await asyncio.to_thread(new_table, direct_catalog, warehouse)
            port = free_port()
            path = config(
                tmp / "floe.yaml",
                catalog_uri=catalog_url.replace("postgresql://", "postgresql+psycopg2://"),
                warehouse=warehouse,
                state_url=state_url,
                dest_url=dest_url,
                port=port,
            )
            daemon = await start(path, port, tmp / "work")
            rig = Rig(table, dest_db, daemon, live=set(range(1, ROWS + 1)))
            try:
                first, lost, _ = await converge(rig)
                print(f"initial load converged in {first} s (lost {lost})", flush=True)
                outcomes.append(
                    await fault(
                        rig,
                        f"destination down {destination_seconds:.0f} s",
                        destination_seconds,
                        dest_proxy.stop,
                        dest_proxy.start,
                    )
                )
                outcomes.append(
                    await fault(
                        rig,
                        f"catalog unreachable {catalog_seconds:.0f} s",
                        catalog_seconds,
                        catalog_proxy.stop,
                        catalog_proxy.start,
                    )
                )
                outcomes.append(await state_store_restart(rig, state_proxy))
            finally:
                await daemon.stop(60)
                if daemon.proc.returncode not in (0, None):
                    print(daemon.tail(80))
    return outcomes


async def state_store_restart(rig: Rig, proxy: Proxy) -> Outcome:
    """Drop the state store while a big change is being delivered; back after 5 s."""
    name = "state store restarted mid-cycle"
    print(f"-- {name}", flush=True)
    after = len(rig.daemon.events("cycle_finished"))
    await asyncio.to_thread(rig.big_change)
    # Mid-cycle: the cycle has begun (it records its attempt in the store first).
    await asyncio.sleep(0.3)
    await proxy.stop()
    commits, readyz = await asyncio.gather(write_while(rig, 5), readyz_during(rig.daemon, 5))
    await proxy.start()
    seconds_to_converge, lost, dupes = await converge(rig)
    interrupted = len(rig.daemon.events("cycle_failed")) > 0
    print(
        f"   cycles finished since: {len(rig.daemon.events('cycle_finished')) - after}, "
        f"a cycle failed meanwhile: {interrupted}",
        flush=True,
    )
    return Outcome(
        name,
        rig.daemon.proc.returncode is None,
        readyz,
        lost,
        dupes,
        seconds_to_converge,
        commits + 1,
    )


def sh(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


async def run_full_disk(tmp: Path, seconds: float) -> Outcome:
    mount = Path(tempfile.mkdtemp(prefix="floe-outage-tmpfs-"))
    await asyncio.to_thread(sh, "mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount))
    try:
        with database() as dest_db:
            warehouse = (tmp / "warehouse-disk").as_uri()
            (tmp / "warehouse-disk").mkdir()
            catalog_uri = f"sqlite:///{tmp / 'catalog-disk.db'}"
            table = await asyncio.to_thread(new_table, catalog_uri, warehouse)
            port = free_port()
            path = config(
                tmp / "floe-disk.yaml",
                catalog_uri=catalog_uri,
                warehouse=warehouse,
                state_url=f"sqlite:///{mount / 'state.db'}",
                dest_url=f"{PG}/{dest_db}",
                port=port,
            )
            daemon = await start(path, port, mount / "work")
            rig = Rig(table, dest_db, daemon, live=set(range(1, ROWS + 1)))
            filler = mount / "filler"
            try:
                first, lost, _ = await converge(rig)
                print(f"initial load converged in {first} s (lost {lost})", flush=True)

                async def fill() -> None:
                    await asyncio.to_thread(sh, "dd", "if=/dev/zero", f"of={filler}", "bs=1M")
                    usage = await asyncio.to_thread(sh, "df", "-h", str(mount))
                    print(f"   tmpfs: {usage.splitlines()[-1]}", flush=True)

                async def empty() -> None:
                    await asyncio.to_thread(filler.unlink)

                return await fault(
                    rig, f"state directory full {seconds:.0f} s", seconds, fill, empty
                )
            finally:
                await daemon.stop(60)
    finally:
        await asyncio.to_thread(sh, "umount", str(mount))
        await asyncio.to_thread(mount.rmdir)


def table_of(outcomes: list[Outcome]) -> str:
    lines = [
        "| fault | daemon stayed up | /readyz during the fault | rows lost | duplicate keys "
        "| commits during the fault | converged after recovery |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        converged = f"{o.converge_seconds:.1f} s" if o.converge_seconds is not None else "no"
        lines.append(
            f"| {o.fault} | {'yes' if o.stayed_up else 'NO'} | {'; '.join(o.readyz)} "
            f"| {o.lost} | {o.duplicates} | {o.commits} | {converged} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destination-seconds", type=float, default=60)
    parser.add_argument("--catalog-seconds", type=float, default=30)
    parser.add_argument("--disk-seconds", type=float, default=30)
    args = parser.parse_args()
    random.seed(7)
    with tempfile.TemporaryDirectory(prefix="floe-outage-") as scratch:
        tmp = Path(scratch)
        outcomes = await run_postgres_faults(tmp, args.destination_seconds, args.catalog_seconds)
        outcomes.append(await run_full_disk(tmp, args.disk_seconds))
    print(table_of(outcomes))


if __name__ == "__main__":
    asyncio.run(main())
