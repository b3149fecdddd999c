"""DltIngestionPlugin for real: ingestion into Iceberg, delivery with a true EgressResult."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from floe_egress.errors import ConfigError, SinkError
from floe_egress.platform.contract import EgressResult, IngestionConfig, SinkConfig
from floe_egress.platform.plugin import DltIngestionPlugin, SinkHandle
from tests.fixtures.fake_apis import FakeRestApi


@pytest.fixture
def plugin(sqlite_catalog_props: dict[str, str], tmp_path: Path) -> DltIngestionPlugin:
    return DltIngestionPlugin({"name": "gold", **sqlite_catalog_props}, work_dir=tmp_path / "work")


@pytest.fixture
def handles() -> Iterator[list[SinkHandle]]:
    made: list[SinkHandle] = []
    yield made
    for handle in made:
        handle.close()


def changes(rows: list[tuple[int, str, str]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "email": [r[1] for r in rows],
            "_floe_op": [r[2] for r in rows],
        }
    )


def test_ingestion_loads_an_arrow_table_and_merges_by_key(plugin: DltIngestionPlugin) -> None:
    first = pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", "b"]})
    pipeline = plugin.create_pipeline(
        IngestionConfig(
            source_type="arrow",
            destination_table="gold.things",
            write_mode="append",
            source_config={"data": first, "primary_key": ["id"]},
        )
    )
    result = plugin.run(pipeline)
    assert result.success and result.rows_loaded == 2 and result.bytes_written > 0
    merge = plugin.create_pipeline(
        IngestionConfig(
            source_type="arrow",
            destination_table="gold.things",
            write_mode="merge",
            source_config={
                "data": pa.table({"id": pa.array([2, 3], pa.int64()), "name": ["B", "c"]}),
                "primary_key": ["id"],
            },
        )
    )
    assert plugin.run(merge).success
    table = pipeline.catalog.load_table("gold.things")
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "B"},
        {"id": 3, "name": "c"},
    ]
    assert table.schema().identifier_field_names() == {"id"}


def test_ingestion_takes_a_dlt_resource(plugin: DltIngestionPlugin) -> None:
    import dlt

    @dlt.resource(name="events")
    def events() -> Iterator[dict[str, Any]]:
        yield from ({"id": i, "kind": "click"} for i in range(5))

    pipeline = plugin.create_pipeline(
        IngestionConfig(
            source_type="dlt",
            destination_table="gold.events",
            source_config={"source": events()},
        )
    )
    result = plugin.run(pipeline)
    assert result.success and result.rows_loaded == 5
    assert pipeline.catalog.load_table("gold.events").scan().to_arrow().num_rows == 5


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (IngestionConfig(source_type="kafka", destination_table="gold.x"), "not supported"),
        (
            IngestionConfig(
                source_type="arrow",
                destination_table="nodot",
                source_config={"data": pa.table({"a": [1]})},
            ),
            "namespace.table",
        ),
        (
            IngestionConfig(
                source_type="arrow",
                destination_table="gold.x",
                write_mode="upsert",
                source_config={"data": pa.table({"a": [1]})},
            ),
            "write_mode",
        ),
        (
            IngestionConfig(
                source_type="arrow",
                destination_table="gold.x",
                write_mode="merge",
                source_config={"data": pa.table({"a": [1]})},
            ),
            "primary_key",
        ),
    ],
)
def test_bad_ingestion_config_is_refused(
    plugin: DltIngestionPlugin, config: IngestionConfig, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plugin.create_pipeline(config)


def test_list_available_sinks_names_every_type(plugin: DltIngestionPlugin) -> None:
    assert plugin.list_available_sinks() == [
        "duckdb",
        "hubspot",
        "mysql",
        "postgres",
        "rest_api",
        "salesforce",
        "sqlite",
    ]


def test_write_to_duckdb_returns_a_true_receipt(
    plugin: DltIngestionPlugin, handles: list[SinkHandle], tmp_path: Path
) -> None:
    path = tmp_path / "dest.duckdb"
    handle = plugin.create_sink(
        SinkConfig(
            sink_type="duckdb",
            batch_size=2,
            connection_config={
                "destination": "dw",
                "mode": "mirror",
                "primary_key": ["customer_id"],
                "path": str(path),
                "table": "customers",
            },
        )
    )
    handles.append(handle)
    data = changes([(1, "a@x.io", "insert"), (2, "b@x.io", "insert"), (3, "c@x.io", "insert")])
    before = dt.datetime.now(dt.UTC)
    result = plugin.write(handle, data, from_snapshot=None, to_snapshot=10)
    assert isinstance(result, EgressResult)
    assert result.success and result.errors == []
    assert result.rows_delivered == 3
    assert result.bytes_transmitted > 0
    assert result.duration_seconds > 0
    assert result.checksum.startswith("sha256:") and len(result.checksum) == 7 + 64
    assert before <= dt.datetime.fromisoformat(result.delivery_timestamp) <= dt.datetime.now(dt.UTC)
    again = plugin.write(handle, data, from_snapshot=None, to_snapshot=10)
    assert again.idempotency_key == result.idempotency_key, "same change set, same key"
    other = plugin.write(handle, data, from_snapshot=10, to_snapshot=11)
    assert other.idempotency_key != result.idempotency_key
    plugin.write(handle, changes([(2, "", "delete")]), from_snapshot=11, to_snapshot=12)
    handle.close()
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT customer_id, email FROM main.customers ORDER BY 1").fetchall()
    con.close()
    assert rows == [(1, "a@x.io"), (3, "c@x.io")]


@pytest.fixture
async def api() -> AsyncIterator[FakeRestApi]:
    server = await FakeRestApi(token="Bearer good").start()
    yield server
    await server.stop()


async def test_write_to_rest_api_reports_ids_checksum_and_rejections(
    plugin: DltIngestionPlugin, handles: list[SinkHandle], api: FakeRestApi, tmp_path: Path
) -> None:
    import asyncio

    config = SinkConfig(
        sink_type="rest_api",
        field_mapping={"customer_id": "external_id", "email": "email"},
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
    handle = await asyncio.to_thread(plugin.create_sink, config)
    handles.append(handle)
    data = changes([(1, "a@x.io", "insert"), (2, "no-at-sign", "insert"), (3, "c@x.io", "update")])
    result = await asyncio.to_thread(plugin.write, handle, data, to_snapshot=5)
    assert not result.success
    assert result.rows_delivered == 2
    assert sorted(result.destination_record_ids) == ["id-1", "id-3"]
    assert len(result.errors) == 1 and "not a valid address" in result.errors[0]
    bodies = [r.body for r in api.log if r.method == "POST"]
    assert result.bytes_transmitted == sum(len(b) for b in bodies)
    assert sorted(api.records) == ["1", "3"]
    keys = {r.headers.get("Idempotency-Key") for r in api.log if r.method == "POST"}
    assert None not in keys
    assert result.checksum.startswith("sha256:")
    assert json.loads(bodies[0])["destination"] == "crm"
    pipeline_dir = tmp_path / "work" / "crm" / "dlt" / "floe_egress_crm"
    assert (pipeline_dir / "schemas").is_dir(), "the plugin's HTTP writes go through dlt"


def test_create_sink_fails_fast_on_bad_credentials(
    plugin: DltIngestionPlugin, pg_database: str
) -> None:
    url = pg_database.replace("postgresql://postgres@", "postgresql://nobody:secret-pw@")
    with pytest.raises(SinkError) as info:
        plugin.create_sink(
            SinkConfig(
                sink_type="postgres",
                connection_config={"credentials": url, "table": "t", "primary_key": ["id"]},
            )
        )
    assert "secret-pw" not in str(info.value)


def test_create_sink_rejects_unknown_types_and_modes(plugin: DltIngestionPlugin) -> None:
    with pytest.raises(ConfigError, match="unknown sink_type 'ftp'; available: duckdb"):
        plugin.create_sink(SinkConfig(sink_type="ftp"))
    with pytest.raises(ConfigError, match="mode 'append' is not supported by sink_type 'hubspot'"):
        plugin.create_sink(
            SinkConfig(
                sink_type="hubspot",
                connection_config={
                    "mode": "append",
                    "object_type": "contacts",
                    "access_token": "x",
                },
            )
        )


def test_get_source_config_names_the_catalog_without_secrets(plugin: DltIngestionPlugin) -> None:
    config = plugin.get_source_config(
        {"name": "gold", "type": "rest", "uri": "https://polaris/api", "credential": "id:secret"}
    )
    assert config["catalog_name"] == "gold"
    assert config["catalog_properties"]["uri"] == "https://polaris/api"
    assert "secret" not in json.dumps(config)
    with pytest.raises(ValueError, match="type"):
        plugin.get_source_config({})
