"""floe-egress inside the real floe platform: floe-core's classes, registry and SinkConfig."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
import pytest
from floe_core.plugin_metadata import HealthState, PluginMetadata
from floe_core.plugin_registry import PluginRegistry
from floe_core.plugin_types import PluginType
from floe_core.plugins import ingestion as core_ingestion
from floe_core.plugins import sink as core_sink

from floe_egress.errors import ConfigError
from floe_egress.platform import contract
from floe_egress.platform.plugin import FloeEgressPlugin, SinkHandle
from tests.fixtures.fake_apis import FakeRestApi


def test_the_contract_classes_are_floe_cores() -> None:
    assert contract.FLOE_CORE is True
    assert contract.SinkConnector is core_sink.SinkConnector
    assert contract.SinkConfig is core_sink.SinkConfig
    assert contract.EgressResult is core_sink.EgressResult
    assert contract.IngestionPlugin is core_ingestion.IngestionPlugin
    assert contract.IngestionConfig is core_ingestion.IngestionConfig
    assert contract.IngestionResult is core_ingestion.IngestionResult
    assert contract.PluginMetadata is PluginMetadata
    plugin = FloeEgressPlugin()
    assert isinstance(plugin, core_sink.SinkConnector)
    assert isinstance(plugin, core_ingestion.IngestionPlugin)
    assert isinstance(plugin, PluginMetadata)
    requirements = plugin.get_composition_requirements()
    assert requirements.plugin_name == "floe-egress" and requirements.plugin_type == "ingestion"


def plugin_config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "warehouse").mkdir(exist_ok=True)
    return {
        "catalog": {
            "name": "gold",
            "type": "sql",
            "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
            "warehouse": f"file://{tmp_path / 'warehouse'}",
        },
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "work_dir": str(tmp_path / "work"),
    }


def test_floe_cores_registry_discovers_configures_activates_and_checks_it(
    tmp_path: Path,
) -> None:
    registry = PluginRegistry()
    registry.discover_all()
    assert "floe-egress" in registry.list_all()[PluginType.INGESTION]
    plugin = registry.get(PluginType.INGESTION, "floe-egress")
    assert isinstance(plugin, FloeEgressPlugin)
    validated = registry.configure(PluginType.INGESTION, "floe-egress", plugin_config(tmp_path))
    assert validated is not None and plugin.is_configured
    registry.activate_plugin(PluginType.INGESTION, "floe-egress")
    health = registry.health_check_all()
    [status] = [s for key, s in health.items() if key.endswith("floe-egress")]
    assert status.state is HealthState.HEALTHY, status
    assert status.details == {"state_store": "ok", "catalog": "ok"}
    registry.shutdown_all()
    assert plugin.health_check().state is HealthState.UNHEALTHY


def test_floe_cores_registry_refuses_bad_settings_with_our_message(tmp_path: Path) -> None:
    registry = PluginRegistry()
    registry.discover_all()
    bad = {**plugin_config(tmp_path), "state": {"url": "mysql://nowhere/x"}}
    with pytest.raises(Exception, match="state"):
        registry.configure(PluginType.INGESTION, "floe-egress", bad)


@pytest.mark.parametrize("batch_size", [True, 1.5])
def test_a_floe_core_sink_config_it_lets_through_fails_at_create_sink(batch_size: Any) -> None:
    config = core_sink.SinkConfig(sink_type="rest_api", batch_size=batch_size)
    with pytest.raises(ConfigError, match="batch_size must be a whole number"):
        FloeEgressPlugin().create_sink(config)


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[FloeEgressPlugin]:
    made = FloeEgressPlugin()
    made.configure(made.get_config_schema().model_validate(plugin_config(tmp_path)))
    made.startup()
    yield made
    made.shutdown()


@pytest.fixture
async def api() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token="Bearer good").start()
    yield server
    await server.stop()


def changes(rows: list[tuple[int, str, str]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "email": [r[1] for r in rows],
            "_floe_op": [r[2] for r in rows],
        }
    )


async def test_a_floe_core_sink_config_drives_a_rest_api(
    plugin: FloeEgressPlugin, api: FakeRestApi
) -> None:
    config = core_sink.SinkConfig(
        sink_type="rest_api",
        field_mapping={"customer_id": "external_id", "email": "email"},
        batch_size=2,
        connection_config={
            "destination": "crm",
            "mode": "upsert",
            "primary_key": ["customer_id"],
            "allow_private_network": True,
            "url": api.url + "/v1/contacts",
            "record_ids_path": "ids",
            "headers": {"Authorization": "Bearer good"},
        },
    )
    handle: SinkHandle = await asyncio.to_thread(plugin.create_sink, config)
    try:
        before = dt.datetime.now(dt.UTC)
        data = changes([(1, "a@x.io", "insert"), (2, "b@x.io", "insert"), (3, "c@x.io", "update")])
        result = await asyncio.to_thread(plugin.write, handle, data, to_snapshot=5)
    finally:
        await asyncio.to_thread(handle.close)
    assert type(result) is core_sink.EgressResult
    assert result.success and result.errors == []
    assert result.rows_delivered == 3
    assert sorted(result.destination_record_ids) == ["id-1", "id-2", "id-3"]
    bodies = [r.body for r in api.log if r.method == "POST"]
    assert len(bodies) == 2, "batch_size 2: two requests"
    assert result.bytes_transmitted == sum(len(b) for b in bodies)
    assert result.checksum.startswith("sha256:") and len(result.checksum) == 71
    assert result.idempotency_key and result.duration_seconds > 0
    assert before <= dt.datetime.fromisoformat(result.delivery_timestamp)
    assert sorted(api.records) == ["1", "2", "3"]


def test_a_floe_core_sink_config_drives_postgres(
    plugin: FloeEgressPlugin, pg_database: str
) -> None:
    config = core_sink.SinkConfig(
        sink_type="postgres",
        connection_config={
            "destination": "warehouse",
            "mode": "mirror",
            "primary_key": ["customer_id"],
            "credentials": pg_database,
            "dataset": "activation",
            "table": "customers",
        },
    )
    handle = plugin.create_sink(config)
    try:
        first = plugin.write(
            handle, changes([(1, "a@x.io", "insert"), (2, "b@x.io", "insert")]), to_snapshot=1
        )
        second = plugin.write(
            handle, changes([(1, "a2@x.io", "update"), (2, "", "delete")]), to_snapshot=2
        )
    finally:
        handle.close()
    assert type(second) is core_sink.EgressResult
    assert (first.success, first.rows_delivered) == (True, 2)
    assert (second.success, second.rows_delivered) == (True, 2)
    assert second.bytes_transmitted > 0 and second.checksum.startswith("sha256:")
    assert second.idempotency_key != first.idempotency_key
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT customer_id, email FROM activation.customers ORDER BY 1")
        assert cur.fetchall() == [(1, "a2@x.io")]


def test_floe_cores_floe_spec_accepts_the_floe_shaped_example() -> None:
    import yaml
    from floe_core.schemas.floe_spec import FloeSpec as PlatformSpec

    example = Path(__file__).parents[1] / "unit" / "config" / "data" / "platform" / "floe.yaml"
    spec = PlatformSpec.model_validate(yaml.safe_load(example.read_text()))
    assert [d.name for d in spec.destinations or []] == ["crm", "app_db"]
    assert spec.destinations is not None and spec.destinations[1].connection_secret_ref == "app-db"


def test_floe_cores_floe_spec_refuses_what_we_refuse(tmp_path: Path) -> None:
    """A credential written into the spec: floe-core's FR-014, and ours, at its line."""
    import yaml
    from floe_core.schemas.floe_spec import FloeSpec as PlatformSpec
    from pydantic import ValidationError

    from floe_egress.config import ConfigValidationError
    from floe_egress.spec import load_spec

    example = Path(__file__).parents[1] / "unit" / "config" / "data" / "platform"
    text = (
        (example / "floe.yaml")
        .read_text()
        .replace("        table: customers", "        table: customers\n        password: x")
    )
    with pytest.raises(ValidationError, match="FR-014"):
        PlatformSpec.model_validate(yaml.safe_load(text))
    (tmp_path / "floe.yaml").write_text(text)
    (tmp_path / "manifest.yaml").write_text((example / "manifest.yaml").read_text())
    with pytest.raises(ConfigValidationError) as info:
        load_spec(tmp_path / "floe.yaml")
    ours = [p for p in info.value.problems if p.path and p.path[-1] == "password"]
    assert [p.line for p in ours] == [41]


def test_floe_egress_sync_runs_a_floe_spec_end_to_end(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import subprocess
    import sys

    import yaml
    from floe_core.schemas.floe_spec import FloeSpec as PlatformSpec

    from tests.fixtures.world import World, customers, initial_rows
    from tests.integration.cli.test_platform_spec import write_platform

    world = World(tmp_path / "world", f"sqlite:///{tmp_path / 'state.db'}")
    world.table.append(customers(initial_rows(12)))
    spec, manifest, secrets = write_platform(world, pg_database, tmp_path)
    PlatformSpec.model_validate(yaml.safe_load(spec.read_text()))  # floe-core accepts it
    env = {
        **__import__("os").environ,
        "FLOE_SECRETS_DIR": str(secrets),
        "FLOE_EGRESS_WORK_DIR": str(tmp_path / "work"),
    }
    exe = Path(sys.executable).parent / "floe-egress"
    run = subprocess.run(
        [str(exe), "sync", "--config", str(spec), "--manifest", str(manifest), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    [result] = json.loads(run.stdout)
    assert (result["status"], result["inserted"]) == ("ok", 12)
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM activation.customers")
        assert cur.fetchone() == (12,)


async def test_floe_egress_sync_runs_the_floe_shaped_example_end_to_end(
    tmp_path: Path, pg_database: str
) -> None:
    """The example itself (tests/unit/config/data/platform), its two destinations pointed
    at a local REST API and a real PostgreSQL, its secrets in mounted Secrets."""
    import json
    import os
    import sys

    import yaml
    from floe_core.schemas.floe_spec import FloeSpec as PlatformSpec

    from tests.fixtures.world import World, customers, initial_rows

    data = Path(__file__).parents[1] / "unit" / "config" / "data" / "platform"
    world = World(tmp_path / "world", f"sqlite:///{tmp_path / 'state.db'}")
    world.table.append(customers(initial_rows(7)))
    api = await FakeRestApi(token="Bearer tok-local").start()
    try:
        spec = yaml.safe_load((data / "floe.yaml").read_text())
        crm = spec["destinations"][0]["config"]
        crm["sink_config"]["url"] = api.url + "/v1/contacts"
        crm["allow_private_network"] = True  # a local API, over http
        PlatformSpec.model_validate(spec)  # floe-core accepts it as changed
        manifest = yaml.safe_load((data / "manifest.yaml").read_text())
        settings = manifest["plugins"]["ingestion"]["config"]
        settings["catalog"] = {"name": "gold", **world.catalog_props}
        settings["state"] = {"url": world.state_url}
        (tmp_path / "floe.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        secrets = tmp_path / "secrets"
        for secret, key, value in (
            ("crm-api", "api-token", "tok-local"),
            ("app-db", "credentials", pg_database),
        ):
            (secrets / secret).mkdir(parents=True)
            (secrets / secret / key).write_text(value + "\n")
        env = {
            **os.environ,
            "FLOE_SECRETS_DIR": str(secrets),
            "FLOE_EGRESS_WORK_DIR": str(tmp_path / "work"),
        }
        exe = Path(sys.executable).parent / "floe-egress"
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            "sync",
            "--config",
            str(tmp_path / "floe.yaml"),
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    finally:
        await api.stop()
    assert proc.returncode == 0, err.decode()
    results = {r["destination"]: r for r in json.loads(out)}
    assert {k: (r["status"], r["inserted"]) for k, r in results.items()} == {
        "crm": ("ok", 7),
        "app_db": ("ok", 7),
    }
    assert sorted(api.records, key=int) == [str(i) for i in range(1, 8)]
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM activation.customers")
        assert cur.fetchone() == (7,)
    assert "tok-local" not in out.decode() + err.decode()
