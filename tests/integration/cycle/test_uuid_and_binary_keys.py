"""Tables keyed by a UUID or a binary column, end to end.

A UUID travels as its canonical text (what every API and database takes); a binary key
as base64 in JSON. Both must survive the paths that rebuild rows from stored keys:
failed rows retried with their latest values, and mirror-mode deletes from the digest.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import BinaryType, NestedField, StringType, UUIDType

from floe_egress.daemon.cycle import CycleResult, run_cycle
from floe_egress.daemon.runtime import Runtime
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, rest_destination

IDS = [uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % 2**128) for i in range(1, 6)]


class Keyed:
    """One key type: how it is written to Iceberg and how the API sees it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        iceberg = UUIDType() if kind == "uuid" else BinaryType()
        self.schema = Schema(
            NestedField(1, "account_id", iceberg, required=True),
            NestedField(2, "email", StringType(), required=False),
            identifier_field_ids=[1],
        )
        key_type = pa.uuid() if kind == "uuid" else pa.binary()
        self.arrow = pa.schema(
            [pa.field("account_id", key_type, nullable=False), pa.field("email", pa.string())]
        )

    def rows(self, items: list[tuple[int, str]]) -> pa.Table:
        keys = [IDS[i].bytes for i, _ in items]
        storage = pa.array(keys, pa.binary(16) if self.kind == "uuid" else pa.binary())
        column = (
            pa.ExtensionArray.from_storage(pa.uuid(), storage) if self.kind == "uuid" else storage
        )
        emails = pa.array([e for _, e in items], pa.string())
        return pa.Table.from_arrays([column, emails], schema=self.arrow)

    def sent(self, i: int) -> str:
        if self.kind == "uuid":
            return str(IDS[i])
        return base64.b64encode(IDS[i].bytes).decode()


@pytest.fixture(params=["uuid", "binary"])
def keyed(request: pytest.FixtureRequest) -> Keyed:
    return Keyed(request.param)


def accounts(world: World, keyed: Keyed) -> Table:
    return world.catalog.create_table(
        "gold.accounts", schema=keyed.schema, properties={"format-version": "2"}
    )


async def cycle(runtimes: list[Runtime], world: World, api: FakeRestApi) -> CycleResult:
    dest = rest_destination(
        api.url + "/v1/contacts",
        source_table="gold.accounts",
        field_mapping={"account_id": "external_id", "email": "email"},
        batch_size=10,
    )
    loaded = world.load([dest])
    runtime = Runtime(loaded.spec)
    runtimes.append(runtime)
    return await run_cycle(runtime, loaded.spec.ingestion.destinations[0])


def expected(keyed: Keyed, rows: dict[int, str]) -> dict[str, dict[str, Any]]:
    return {
        keyed.sent(i): {"external_id": keyed.sent(i), "email": email} for i, email in rows.items()
    }


async def test_keys_survive_diffs_retries_and_digest_deletes(
    world: World, api: FakeRestApi, runtimes: list[Runtime], keyed: Keyed
) -> None:
    table = accounts(world, keyed)
    table.append(keyed.rows([(0, "a@x.io"), (1, "b@x.io"), (2, "no-address"), (3, "d@x.io")]))
    first = await cycle(runtimes, world, api)
    assert (first.status, first.plan, first.inserted, first.failed) == ("ok", "full", 3, 1)
    assert api.records == expected(keyed, {0: "a@x.io", 1: "b@x.io", 3: "d@x.io"})
    store = runtimes[-1].store
    failed = store.failed_rows("crm")
    assert len(failed) == 1 and failed[0].reason.endswith("is not a valid address")

    # A retry without a table change: the failed key is looked up in the table by its
    # stored key and sent again as a row (were it not found, a delete would be sent, and
    # accepted).
    again = await cycle(runtimes, world, api)
    assert again.failed == 1 and [f.attempts for f in store.failed_rows("crm")] == [2]
    assert len(api.records) == 3

    # The rejected row is fixed, another updated, one deleted: a diff plus a retry of the
    # failed key, which is looked up again in the table by its stored key.
    table = world.catalog.load_table("gold.accounts")
    table.overwrite(keyed.rows([(2, "c@x.io")]), overwrite_filter="email = 'no-address'")
    table.overwrite(keyed.rows([(1, "b2@x.io")]), overwrite_filter="email = 'b@x.io'")
    table.delete("email = 'd@x.io'")
    second = await cycle(runtimes, world, api)
    assert second.status == "ok" and second.plan == "diff"
    assert second.failed == 0 and store.failed_rows("crm") == []
    assert api.records == expected(keyed, {0: "a@x.io", 1: "b2@x.io", 2: "c@x.io"})

    # A delete made while the synced snapshot expired: the comparison with the digest of
    # what was sent finds it, and sends nothing else.
    synced = world.catalog.load_table("gold.accounts").current_snapshot()
    assert synced is not None
    table = world.catalog.load_table("gold.accounts")
    table.delete("email = 'a@x.io'")
    table = world.catalog.load_table("gold.accounts")
    table.maintenance.expire_snapshots().by_id(synced.snapshot_id).commit()
    third = await cycle(runtimes, world, api)
    assert (third.plan, third.inserted, third.updated, third.deleted) == ("digest", 0, 0, 1)
    assert api.records == expected(keyed, {1: "b2@x.io", 2: "c@x.io"})


async def test_uuid_keys_into_postgres_are_text_and_merge(
    world: World, runtimes: list[Runtime], pg_database: str
) -> None:
    import psycopg2

    keyed = Keyed("uuid")
    table = accounts(world, keyed)
    table.append(keyed.rows([(0, "a@x.io"), (1, "b@x.io"), (2, "c@x.io")]))
    dest = {
        "name": "app_db",
        "source_table": "gold.accounts",
        "mode": "mirror",
        "sink_type": "postgres",
        "sink_config": {"credentials": pg_database, "dataset": "app", "table": "accounts"},
    }
    loaded = world.load([dest])

    async def sync() -> CycleResult:
        runtime = Runtime(loaded.spec)
        runtimes.append(runtime)
        return await run_cycle(runtime, loaded.spec.ingestion.destinations[0])

    def rows() -> list[tuple[str, str]]:
        with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
            cur.execute("SELECT account_id, email FROM app.accounts ORDER BY email")
            return [(str(a), e) for a, e in cur.fetchall()]

    assert (await sync()).inserted == 3
    assert rows() == [(str(IDS[0]), "a@x.io"), (str(IDS[1]), "b@x.io"), (str(IDS[2]), "c@x.io")]
    table = world.catalog.load_table("gold.accounts")
    table.overwrite(keyed.rows([(1, "b2@x.io")]), overwrite_filter="email = 'b@x.io'")
    table.delete("email = 'c@x.io'")
    second = await sync()
    assert (second.updated, second.deleted) == (1, 1)
    assert rows() == [(str(IDS[0]), "a@x.io"), (str(IDS[1]), "b2@x.io")]
