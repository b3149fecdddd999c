"""`floe-egress verify NAME [--json] [--repair]`: a destination against its table.

A PostgreSQL destination is synced, then altered behind the product's back (a row
deleted, a value changed, a row added): `verify` names exactly those keys, `--repair`
queues them and the next `sync` makes the destination equal the table again. A digest
that disagrees with the table is found the same way. A healthy destination agrees in
every sync mode, a REST one too (through its digest only).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
import pytest

from floe_egress.changes import digest as digests
from floe_egress.state.digest import sha256_of
from tests.fixtures.crash_harness import ServerThread
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.conftest import Cli
from tests.integration.cli.test_secret_masking import SECRETS, leaks

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

MAPPING = {"customer_id": "external_id", "email": "email", "plan": "plan_tier"}
DEST_TABLE = '"activation"."customers"'


def pg_destination(mode: str = "mirror", name: str = "app_db") -> dict[str, Any]:
    return {
        "name": name,
        "source_table": "gold.customers",
        "mode": mode,
        "sink_type": "postgres",
        "sink_config": {
            "credentials": "${env:APP_DB_URL}",
            "dataset": "activation",
            "table": "customers",
        },
        "field_mapping": MAPPING,
        "batch_size": 100,
    }


@pytest.fixture
def pg(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("APP_DB_URL", pg_database)
    return pg_database


def execute(url: str, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def destination_rows(url: str) -> dict[int, tuple[str, str]]:
    rows = execute(url, f"SELECT external_id, email, plan_tier FROM {DEST_TABLE}")
    return {int(k): (e, p) for k, e, p in rows}


def table_rows(world: World) -> dict[int, tuple[str, str]]:
    return {k: (r["email"], r["plan"]) for k, r in world.rows().items()}


def synced_mirror(world: World, pg: str, cli: Cli) -> Path:
    config = world.write_config([pg_destination()])
    world.table.append(customers(initial_rows(10)))
    assert cli("sync", "--config", str(config)).code == 0
    assert destination_rows(pg) == table_rows(world)
    return config


def alter_behind_its_back(pg: str) -> None:
    execute(pg, f"DELETE FROM {DEST_TABLE} WHERE external_id = 3")
    execute(pg, f"UPDATE {DEST_TABLE} SET email = 'changed@example.com' WHERE external_id = 5")
    execute(
        pg,
        f"INSERT INTO {DEST_TABLE} (external_id, email, plan_tier) "
        "VALUES (999, 'stranger@example.com', 'pro')",
    )


def test_verify_names_the_row_deleted_the_value_changed_and_the_row_added_at_the_destination(
    world: World, pg: str, cli: Cli
) -> None:
    config = synced_mirror(world, pg, cli)
    alter_behind_its_back(pg)

    text = cli("verify", "app_db", "--config", str(config))
    as_json = cli("verify", "app_db", "--config", str(config), "--json")

    assert text.code == 1, text.err
    lines = text.out.splitlines()
    assert lines[0].startswith("app_db: 3 differences from table gold.customers at snapshot")
    assert "  digest: agrees (10 keys)" in lines
    assert '    missing: {"customer_id": 3}' in lines
    assert '    extra: {"customer_id": 999}' in lines
    assert '    differing: {"customer_id": 5}' in lines
    assert as_json.code == 1
    report = as_json.json()
    assert (report["agrees"], report["differences"], report["table_rows"]) == (False, 3, 10)
    assert report["digest"]["differences"] == 0
    found = report["destination_table"]
    assert {
        c: (found[c]["count"], found[c]["sample"]) for c in ("missing", "extra", "differing")
    } == {
        "missing": (1, [{"customer_id": 3}]),
        "extra": (1, [{"customer_id": 999}]),
        "differing": (1, [{"customer_id": 5}]),
    }
    assert found["keys"] == 10  # rows read back: 10 - 1 deleted + 1 added
    assert report["repair"] is None


def test_repair_then_sync_makes_the_destination_equal_the_table_again(
    world: World, pg: str, cli: Cli
) -> None:
    config = synced_mirror(world, pg, cli)
    alter_behind_its_back(pg)

    repaired = cli("verify", "app_db", "--config", str(config), "--repair", "--json")
    assert (repaired.code, repaired.json()["repair"]) == (1, {"queued": 3})
    synced = cli("sync", "--config", str(config), "--json")
    after = cli("verify", "app_db", "--config", str(config), "--json")

    assert synced.code == 0, synced.err
    result = synced.json()[0]
    assert (result["inserted"], result["updated"], result["deleted"]) == (1, 1, 1)
    assert destination_rows(pg) == table_rows(world)
    assert (after.code, after.json()["differences"]) == (0, 0)
    # the queue was emptied by the commit: the next sync sends nothing
    assert cli("sync", "--config", str(config), "--json").json()[0]["status"] == "noop"


def change_a_hash_in_the_digest(state_db: Path, destination: str, key: int) -> None:
    """Rewrite the digest's held segment with another hash for `key`, checksum and all:
    a digest that reads back fine and is wrong."""
    conn = sqlite3.connect(state_db)
    try:
        seq, data = conn.execute(
            "SELECT seq, data FROM digest_segments WHERE destination = ? AND kind = 'held'",
            (destination,),
        ).fetchone()
        held = digests.decode(bytes(data))
        entries = held.to_pylist()
        for entry in entries:
            if entry["customer_id"] == key:
                entry[digests.HASH] = (entry[digests.HASH] + 1) % 2**64
        blob = digests.encode(pa.Table.from_pylist(entries, held.schema))
        conn.execute(
            "UPDATE digest_segments SET data = ?, sha256 = ? WHERE destination = ? AND seq = ?",
            (blob, sha256_of(blob), destination, seq),
        )
        conn.commit()
    finally:
        conn.close()


def test_a_digest_that_disagrees_with_the_table_is_reported_and_repaired(
    world: World, pg: str, cli: Cli
) -> None:
    config = synced_mirror(world, pg, cli)
    change_a_hash_in_the_digest(Path(world.state_url.removeprefix("sqlite:///")), "app_db", 4)

    found = cli("verify", "app_db", "--config", str(config), "--json", "--repair")
    assert found.code == 1
    report = found.json()
    assert report["digest"]["differing"] == {
        "count": 1,
        "counted": True,
        "sample": [{"customer_id": 4}],
    }
    assert (report["digest"]["missing"]["count"], report["digest"]["extra"]["count"]) == (0, 0)
    assert report["destination_table"]["differences"] == 0
    assert report["repair"] == {"queued": 1}

    synced = cli("sync", "--config", str(config), "--json").json()[0]
    assert (synced["updated"], synced["inserted"], synced["deleted"]) == (1, 0, 0)
    assert cli("verify", "app_db", "--config", str(config)).code == 0
    assert destination_rows(pg) == table_rows(world)


def test_a_damaged_digest_is_a_difference_until_a_resync_rebuilds_it(
    world: World, pg: str, cli: Cli
) -> None:
    config = synced_mirror(world, pg, cli)
    conn = sqlite3.connect(world.state_url.removeprefix("sqlite:///"))
    with conn:
        conn.execute("UPDATE digest_segments SET data = X'00' WHERE destination = 'app_db'")
    conn.close()

    damaged = cli("verify", "app_db", "--config", str(config))
    assert cli("resync", "app_db", "--config", str(config)).code == 0
    assert cli("sync", "--config", str(config)).code == 0
    rebuilt = cli("verify", "app_db", "--config", str(config))

    assert damaged.code == 1
    assert (
        "  digest: cannot be trusted: destination app_db: digest segment 1 does not match "
        "its checksum; `floe-egress resync app_db` rebuilds it with one full send"
        in damaged.out.splitlines()
    )
    assert "  destination (" in damaged.out  # the destination itself still agrees
    assert rebuilt.code == 0, rebuilt.out


@pytest.mark.parametrize("mode", ["upsert", "update", "insert", "mirror", "append"])
def test_a_healthy_destination_agrees_in_every_mode(
    world: World, pg: str, cli: Cli, mode: str
) -> None:
    config = world.write_config([pg_destination(mode)])
    world.table.append(customers(initial_rows(8)))
    assert cli("sync", "--config", str(config)).code == 0
    world.table.upsert(
        customers([(2, "two@example.com", "team"), (20, "twenty@example.com", "pro")]),
        join_cols=["customer_id"],
    )
    world.reload().delete("customer_id = 6")
    assert cli("sync", "--config", str(config)).code == 0

    verified = cli("verify", "app_db", "--config", str(config), "--json")

    assert verified.code == 0, verified.out
    report = verified.json()
    assert (report["agrees"], report["differences"], report["table_rows"]) == (True, 0, 8)
    assert report["digest"]["compared"] is True
    assert report["destination_table"]["compared"] is (mode != "append")
    # upsert and insert never delete: the deleted key stays, shown but not a difference
    kept = 1 if mode in ("upsert", "insert") else 0
    extra = report["destination_table"]["extra"]
    assert (extra["count"], extra["counted"]) == (kept, mode == "mirror")


def test_a_healthy_rest_destination_agrees_through_its_digest(
    world: World, config: Path, server: ServerThread, cli: Cli
) -> None:
    world.table.append(customers(initial_rows(12)))
    assert cli("sync", "--config", str(config)).code == 0
    world.reload().delete("customer_id = 4")
    assert cli("sync", "--config", str(config)).code == 0

    text = cli("verify", "crm", "--config", str(config))
    as_json = cli("verify", "crm", "--config", str(config), "--json").json()

    assert text.code == 0, text.out
    assert text.out.splitlines()[1:3] == [
        "  digest: agrees (11 keys)",
        "  destination: not compared (rest_api destinations cannot be read back: "
        "compared through the digest)",
    ]
    assert text.out.startswith("crm: agrees with table gold.customers at snapshot")
    assert (as_json["differences"], as_json["destination_table"]["compared"]) == (0, False)


def test_a_destination_never_synced_has_nothing_to_verify(world: World, pg: str, cli: Cli) -> None:
    config = world.write_config([pg_destination()])
    world.table.append(customers(initial_rows(3)))

    never = cli("verify", "app_db", "--config", str(config))
    unknown = cli("verify", "nope", "--config", str(config))

    assert never.code == 2
    assert "destination app_db has not been synced yet" in never.err
    assert unknown.code == 2
    assert "nope" in unknown.err


def test_verify_output_carries_no_credential(
    world: World, pg: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = SECRETS["HS_CLIENT_SECRET"]
    # trust authentication: the password is sent and ignored
    with_password = pg.replace("postgres@", f"postgres:{password}@", 1)
    assert with_password != pg
    monkeypatch.setenv("APP_DB_URL", with_password)
    config = synced_mirror(world, pg, cli)
    alter_behind_its_back(pg)
    shown = {
        "verify": cli("verify", "app_db", "--config", str(config)),
        "verify --json": cli("verify", "app_db", "--config", str(config), "--json"),
        "verify --repair": cli("verify", "app_db", "--config", str(config), "--repair"),
    }
    monkeypatch.setenv("APP_DB_URL", with_password.rsplit("/", 1)[0] + "/no_such_database")
    shown["verify, database gone"] = cli("verify", "app_db", "--config", str(config))

    assert [run.code for run in shown.values()] == [1, 1, 1, 2]
    assert "no_such_database" in shown["verify, database gone"].err
    assert leaks({where: run.out + run.err for where, run in shown.items()}) == []
