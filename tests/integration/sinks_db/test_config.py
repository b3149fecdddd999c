"""sink_config of the database types: keys, secret references, registration, build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from floe_egress.config.models import Destination
from floe_egress.daemon.runtime import build_sink
from floe_egress.sinks.checks import check_destination_items
from floe_egress.sinks.database import DuckdbConfig, MysqlConfig, PostgresConfig, SqliteConfig
from floe_egress.sinks.database.sink import DatabaseSink
from floe_egress.sinks.registry import sink_types

MODES = {"upsert", "update", "insert", "mirror", "append"}


@pytest.mark.parametrize("name", ["postgres", "mysql", "sqlite", "duckdb"])
def test_each_type_is_registered_with_every_mode(name: str) -> None:
    sink_type = sink_types()[name]
    assert sink_type.modes == MODES
    assert sink_type.default_batch_size == 100_000


@pytest.mark.parametrize(
    ("model", "config"),
    [
        (
            PostgresConfig,
            {"credentials": "${env:APP_DB_URL}", "dataset": "activation", "table": "customers"},
        ),
        (PostgresConfig, {"credentials": "postgresql://u:p@db:5432/app", "table": "customers"}),
        (MysqlConfig, {"credentials": "mysql://u:p@db:3306/app", "table": "customers"}),
        (MysqlConfig, {"credentials": "${credential:APP_DB}", "table": "t", "dataset": "other"}),
        (SqliteConfig, {"path": "/var/lib/app.db", "table": "customers"}),
        (SqliteConfig, {"credentials": "sqlite:////var/lib/app.db", "table": "customers"}),
        (DuckdbConfig, {"path": "demo.duckdb", "table": "customers"}),
    ],
)
def test_configs_that_are_accepted(model: type[BaseModel], config: dict[str, Any]) -> None:
    assert model.model_validate(config).model_dump(exclude_unset=True) == config


@pytest.mark.parametrize(
    ("model", "config", "message"),
    [
        (PostgresConfig, {"credentials": "mysql://u@db/app", "table": "t"}, "postgresql://"),
        (PostgresConfig, {"credentials": "postgresql://u@db/app", "table": "a b"}, "identifier"),
        (
            PostgresConfig,
            {"credentials": "postgresql://u@db/app", "table": "t", "schema": "x"},
            "Extra",
        ),
        (MysqlConfig, {"credentials": "mysql://u@db:3306", "table": "t"}, "names no database"),
        (SqliteConfig, {"table": "t"}, "either path or credentials"),
        (SqliteConfig, {"path": "a.db", "credentials": "sqlite:///b.db", "table": "t"}, "not both"),
        (DuckdbConfig, {"path": "a.duckdb", "table": "t", "key_index": True}, "not offered"),
    ],
)
def test_configs_that_are_refused(
    model: type[BaseModel], config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(config)


def test_configs_are_frozen() -> None:
    config = PostgresConfig.model_validate({"credentials": "postgresql://u@db/app", "table": "t"})
    with pytest.raises(ValidationError):
        config.table = "other"  # type: ignore[misc]


def test_floe_yaml_checks_report_bad_database_keys_and_accept_references() -> None:
    items = [
        {
            "name": "app_db",
            "source_table": "gold.customers",
            "sink_type": "postgres",
            "sink_config": {"credentials": "${env:APP_DB_URL}", "dataset": "a", "table": "c"},
        },
        {
            "name": "bad",
            "source_table": "gold.customers",
            "sink_type": "mysql",
            "sink_config": {"credentials": "mysql://u@h/db", "tabel": "c"},
        },
    ]
    problems = check_destination_items(items)
    assert sorted(".".join(map(str, p.path)) for p in problems) == [
        "ingestion.destinations.1.sink_config.tabel",
        "ingestion.destinations.1.sink_config.table",
    ]


def test_a_destination_is_built_with_its_secret_resolved_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_URL", "postgresql://app:hunter22@db.internal:5432/app")
    dest = Destination.model_validate(
        {
            "name": "app_db_customers",
            "source_table": "gold.customers",
            "mode": "mirror",
            "sink_type": "postgres",
            "sink_config": {
                "credentials": "${env:APP_DB_URL}",
                "dataset": "activation",
                "table": "customers",
            },
        }
    )
    sink = build_sink(dest, ("customer_id",), tmp_path)
    assert isinstance(sink, DatabaseSink)
    assert sink.name == "app_db_customers"
    assert sink.sink_type == "postgres"
    assert sink.target.where == (
        "postgres postgresql://app@db.internal:5432/app, table activation.customers"
    )
    assert sink.target.masked == ("hunter22",)
    assert sink.db.pipelines_dir == tmp_path / "dlt"
