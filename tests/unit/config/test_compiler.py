"""Compiled artifacts: defaults resolved, secrets left as references, loadable again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from floe_egress import __version__
from floe_egress.config import ARTIFACT_VERSION, ConfigValidationError, LoadedConfig, compile_spec
from floe_egress.spec import compile_artifacts, load_spec
from tests.unit.config.conftest import BASE_YAML, DB_URL_VALUE, TOKEN_VALUE, edit

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


@pytest.fixture
def loaded(write_config: Callable[[str], Path], secrets_env: Path) -> LoadedConfig:
    return load_spec(write_config(BASE_YAML), check_secrets=True)


@pytest.fixture
def artifacts(loaded: LoadedConfig) -> dict[str, Any]:
    return compile_artifacts(loaded, now=NOW)


def test_header(artifacts: dict[str, Any], loaded: LoadedConfig) -> None:
    assert artifacts["kind"] == "CompiledArtifacts"
    assert artifacts["version"] == ARTIFACT_VERSION == "1.0.0"
    assert artifacts["floe_egress_version"] == __version__
    assert artifacts["generated_at"] == "2026-03-01T12:30:00+00:00"
    assert artifacts["source"] == {
        "path": str(loaded.source),
        "sha256": hashlib.sha256(loaded.source.read_bytes()).hexdigest(),
        "format": "yaml",
    }


def test_generated_at_defaults_to_now(loaded: LoadedConfig) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    generated = datetime.fromisoformat(compile_artifacts(loaded)["generated_at"])

    assert generated.tzinfo is not None
    assert before <= generated <= datetime.now(UTC)


def test_spec_has_every_default_resolved(artifacts: dict[str, Any]) -> None:
    spec = artifacts["spec"]

    assert spec["apiVersion"] == "floe.dev/v1"
    assert spec["server"] == {
        "host": "127.0.0.1",
        "port": 8686,
        "token": None,
        "shutdown_grace_seconds": 30.0,
        "lease_seconds": 30.0,
    }
    assert spec["catalog"] == {"name": "gold", "type": "sql", "uri": "sqlite:///catalog.db"}
    assert spec["ingestion"]["destinations"][1]["mode"] == "upsert"
    assert spec["ingestion"]["destinations"][1]["retry"]["max_attempts"] == 5


def test_destinations_are_resolved_for_the_daemon(artifacts: dict[str, Any]) -> None:
    crm, app_db = artifacts["destinations"]

    assert crm == {
        "name": "crm_contacts",
        "enabled": True,
        "source_table": "gold.customers",
        "ref": "main",
        "sink_type": "test_api",
        "mode": "mirror",
        "primary_key": None,
        "field_mapping": None,
        "batch_size": 100,
        "rate_limit": {
            "requests_per_second": 10.0,
            "burst": None,
            "max_concurrency": 4,
            "account": None,
        },
        "schedule": {"kind": "interval", "interval_seconds": 5.0},
        "retry": {
            "max_attempts": 5,
            "initial_backoff_seconds": 0.5,
            "max_backoff_seconds": 60.0,
            "timeout_seconds": 30.0,
        },
        "max_attempts": 10,
        "max_delete_fraction": 0.5,
        "sink_config": {
            "url": "https://api.example.com/v1/contacts",
            "headers": {"Authorization": "Bearer ${env:FLOE_TEST_TOKEN}"},
        },
    }
    assert app_db["batch_size"] == 500  # test_db's default_batch_size
    assert app_db["schedule"] == {"kind": "cron", "cron": "*/5 * * * *"}
    assert app_db["rate_limit"] is None


def test_batch_size_defaults_come_from_the_caller(loaded: LoadedConfig) -> None:
    sizes = {"test_api": 7, "test_db": 9}

    alone = compile_spec(loaded, now=NOW)["destinations"]
    given = compile_spec(loaded, now=NOW, batch_size_of=sizes.get)["destinations"]

    assert [d["batch_size"] for d in alone] == [100, None]
    assert [d["batch_size"] for d in given] == [100, 9]


def test_interval_defaults_when_no_schedule_given(
    write_config: Callable[[str], Path], secrets_env: Path
) -> None:
    text = edit(BASE_YAML, "      schedule:\n        interval_seconds: 5\n", "")
    compiled = compile_artifacts(load_spec(write_config(text)))

    assert compiled["destinations"][0]["schedule"] == {"kind": "interval", "interval_seconds": 1.0}


def test_secrets_never_in_compiled_output(artifacts: dict[str, Any]) -> None:
    text = json.dumps(artifacts)

    assert TOKEN_VALUE not in text
    assert DB_URL_VALUE not in text
    assert "quokka" not in text
    assert "${env:FLOE_TEST_TOKEN}" in text
    assert "${credential:app_db_url}" in text


def test_roundtrip_gives_an_equal_spec(
    artifacts: dict[str, Any], loaded: LoadedConfig, tmp_path: Path
) -> None:
    path = tmp_path / "compiled.json"
    path.write_text(json.dumps(artifacts, indent=2))

    again = load_spec(path)

    assert again.format == "compiled"
    assert again.spec == loaded.spec
    assert again.line_of(("server", "port")) is None
    assert compile_artifacts(again, now=NOW)["spec"] == artifacts["spec"]


@pytest.mark.parametrize("version", ["1.0.0", "1.4.2"])
def test_same_major_versions_load(artifacts: dict[str, Any], tmp_path: Path, version: str) -> None:
    path = tmp_path / "compiled.json"
    path.write_text(json.dumps({**artifacts, "version": version}))

    assert load_spec(path).spec.metadata.name == "test-floe"


@pytest.mark.parametrize(
    ("version", "shown"),
    [("2.0.0", "'2.0.0'"), ("0.9.0", "'0.9.0'"), (None, "null"), (2, "2")],
)
def test_unknown_major_version_is_a_clear_error(
    artifacts: dict[str, Any], tmp_path: Path, version: object, shown: str
) -> None:
    path = tmp_path / "compiled.json"
    path.write_text(json.dumps({**artifacts, "version": version}))

    with pytest.raises(ConfigValidationError) as info:
        load_spec(path)

    assert str(info.value) == (
        f"{path} version: compiled artifacts format {shown} is not supported: floe-egress "
        f"{__version__} reads format 1.x; recompile floe.yaml with `floe-egress compile`"
    )


def test_compiled_spec_problems_point_into_spec(artifacts: dict[str, Any], tmp_path: Path) -> None:
    artifacts["spec"]["server"]["port"] = "abc"
    artifacts["spec"]["ingestion"]["destinations"][1]["sink_type"] = "nope"
    path = tmp_path / "compiled.json"
    path.write_text(json.dumps(artifacts))

    with pytest.raises(ConfigValidationError) as info:
        load_spec(path)

    assert [(p.key, p.line) for p in info.value.problems] == [
        ("spec.server.port", None),
        ("spec.ingestion.destinations[1].sink_type", None),
    ]


def test_compiled_without_spec(artifacts: dict[str, Any], tmp_path: Path) -> None:
    del artifacts["spec"]
    path = tmp_path / "compiled.json"
    path.write_text(json.dumps(artifacts))

    with pytest.raises(ConfigValidationError, match="spec: required key is missing"):
        load_spec(path)
