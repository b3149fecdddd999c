"""`floe-egress validate|sync` of a floe platform spec: destinations at the top level,
settings from the manifest, credentials from a mounted Kubernetes Secret."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest
import yaml

from floe_egress.config.loader import MANIFEST_ENV_VAR
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.cli.conftest import Cli

PASSWORD = "pw-7f3e-secret"


def write_platform(world: World, pg_url: str, directory: Path) -> tuple[Path, Path, Path]:
    """A floe spec, its manifest and the mounted Secret of its one destination."""
    secrets = directory / "secrets"
    (secrets / "app-db").mkdir(parents=True)
    (secrets / "app-db" / "credentials").write_text(pg_url + "\n")
    spec = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "activation", "version": "1.0.0"},
        "transforms": [{"name": "customers"}],
        "destinations": [
            {
                "name": "app_db",
                "sink_type": "postgres",
                "connection_secret_ref": "app-db",
                "source_table": "gold.customers",
                "config": {
                    "mode": "mirror",
                    "primary_key": ["customer_id"],
                    "sink_config": {"dataset": "activation", "table": "customers"},
                },
            }
        ],
    }
    manifest = {
        "apiVersion": "floe.dev/v1",
        "kind": "Manifest",
        "plugins": {
            "ingestion": {
                "type": "floe-egress",
                "config": {
                    "catalog": {"name": "gold", **world.catalog_props},
                    "state": {"url": world.state_url},
                },
            }
        },
    }
    spec_path, manifest_path = directory / "floe.yaml", directory / "platform-manifest.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return spec_path, manifest_path, secrets


@pytest.fixture
def secured_pg(pg_database: str) -> str:
    """The test database, reachable with a password only the Secret holds."""
    role = "floe_platform_test"
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' SUPERUSER")
    return pg_database.replace("postgres@", f"{role}:{PASSWORD}@")


def test_sync_of_a_floe_spec_lands_the_rows_with_the_secrets_credentials(
    cli: Cli, world: World, secured_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.table.append(customers(initial_rows(25)))
    spec, manifest, secrets = write_platform(world, secured_pg, tmp_path)
    monkeypatch.setenv("FLOE_SECRETS_DIR", str(secrets))
    monkeypatch.delenv(MANIFEST_ENV_VAR, raising=False)

    checked = cli("validate", "--config", str(spec), "--manifest", str(manifest))
    assert checked.code == 0, checked.err
    run = cli("sync", "--config", str(spec), "--manifest", str(manifest), "--json")
    assert run.code == 0, run.err
    [result] = json.loads(run.out)
    assert (result["destination"], result["status"], result["inserted"]) == ("app_db", "ok", 25)
    assert PASSWORD not in run.out + run.err
    with psycopg2.connect(secured_pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), min(customer_id), max(customer_id) FROM activation.customers")
        assert cur.fetchone() == (25, 1, 25)


def test_without_the_secret_mounted_sync_says_which_secret_and_key(
    cli: Cli, world: World, secured_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.table.append(customers(initial_rows(3)))
    spec, manifest, _ = write_platform(world, secured_pg, tmp_path)
    monkeypatch.setenv("FLOE_SECRETS_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv(MANIFEST_ENV_VAR, raising=False)
    run = cli("validate", "--config", str(spec), "--manifest", str(manifest))
    assert run.code == 2
    assert "${secret:app-db/credentials}" in run.err
    assert "the Secret app-db is not mounted" in run.err
    assert "destinations[0]" in run.err
