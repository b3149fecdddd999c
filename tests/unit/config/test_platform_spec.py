"""floe's own configuration: a floe platform spec and its manifest, read as floe writes
them, compiled to the same model as floe.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from floe_egress.config import ConfigValidationError
from floe_egress.config.loader import MANIFEST_ENV_VAR
from floe_egress.errors import ConfigError
from floe_egress.spec import compile_artifacts, load_spec
from tests.unit.config.conftest import EXAMPLE

DATA = Path(__file__).parent / "data" / "platform"


@pytest.fixture
def spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(MANIFEST_ENV_VAR, raising=False)
    for name in ("floe.yaml", "manifest.yaml"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_floe_shaped_example_compiles_to_floe_egress_destinations(spec_dir: Path) -> None:
    spec = load_spec(spec_dir / "floe.yaml").spec
    assert spec.metadata.name == "customer-activation"
    assert spec.catalog.name == "gold" and spec.catalog.properties()["type"] == "sql"
    assert spec.state.url == "sqlite:////var/lib/floe-egress/state.db"
    crm, app_db = spec.ingestion.destinations
    assert (crm.name, crm.sink_type, crm.mode, crm.batch_size) == ("crm", "rest_api", "upsert", 500)
    assert crm.primary_key == ["customer_id"]
    assert crm.field_mapping == {"customer_id": "external_id", "email": "email"}
    assert crm.rate_limit is not None and crm.rate_limit.requests_per_second == 10
    # ${secret:KEY} is a key of the destination's own Secret
    assert crm.sink_config["headers"] == {"Authorization": "Bearer ${secret:crm-api/api-token}"}
    # what floe forbids writing but the sink type requires comes from the Secret
    assert app_db.sink_config == {
        "dataset": "activation",
        "table": "customers",
        "credentials": "${secret:app-db/credentials}",
    }
    assert (app_db.mode, app_db.schedule.interval_seconds) == ("mirror", 5)


def test_secrets_resolve_from_the_mounted_secrets(
    spec_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    for secret, key, value in (
        ("crm-api", "api-token", "tok-55d1e0"),
        ("app-db", "credentials", "postgresql://app:pw-55d1e0@db:5432/app"),
    ):
        (secrets / secret).mkdir(parents=True)
        (secrets / secret / key).write_text(value + "\n")
    monkeypatch.setenv("FLOE_SECRETS_DIR", str(secrets))
    load_spec(spec_dir / "floe.yaml", check_secrets=True)
    (secrets / "app-db" / "credentials").unlink()
    with pytest.raises(ConfigValidationError) as info:
        load_spec(spec_dir / "floe.yaml", check_secrets=True)
    message = str(info.value)
    assert "the Secret app-db has no key credentials" in message
    assert "pw-55d1e0" not in message and "tok-55d1e0" not in message


@pytest.mark.parametrize(
    ("old", "new", "path", "line", "says"),
    [
        (
            "        table: customers",
            "        table: customers\n        password: hunter22",
            "destinations[1].config.sink_config.password",
            41,
            "an environment field is not allowed in a floe spec (FR-014)",
        ),
        (
            "      mode: mirror",
            "      mode: mirrror",
            "destinations[1].config.mode",
            35,
            "mirrror",
        ),
        (
            "      schedule: {interval_seconds: 5}",
            "      schedule: {interval_seconds: 5}\n      colour: blue",
            "destinations[1].config.colour",
            38,
            "colour",
        ),
        (
            "    connection_secret_ref: crm-api",
            "    connection_secret_ref: CRM_API",
            "destinations[0].connection_secret_ref",
            16,
            "'CRM_API' is not a Kubernetes Secret name",
        ),
        (
            "transforms:\n  - name: customers\n",
            "",
            "transforms",
            None,
            "at least one transform",
        ),
        (
            "    source_table: gold.customers\n    config:\n      mode: mirror",
            "    config:\n      mode: mirror",
            "destinations[1]",
            30,
            "source_table",
        ),
    ],
    ids=[
        "forbidden field",
        "bad mode",
        "unknown setting",
        "secret name",
        "no transform",
        "no table",
    ],
)
def test_problems_are_reported_where_they_are_in_the_floe_spec(
    spec_dir: Path, old: str, new: str, path: str, line: int | None, says: str
) -> None:
    edit(spec_dir / "floe.yaml", old, new)
    with pytest.raises(ConfigValidationError) as info:
        load_spec(spec_dir / "floe.yaml")
    found = [(p.path, p.line, p.message) for p in info.value.problems]
    located = [
        (where, at)
        for where, at, message in found
        if says in message or says in ".".join(map(str, where))
    ]
    assert located, found
    rendered = str(info.value)
    assert path in rendered
    if line is not None:
        assert any(at == line for _, at in located), found


def test_a_manifest_for_another_plugin_is_refused_at_its_own_line(spec_dir: Path) -> None:
    edit(spec_dir / "manifest.yaml", "type: floe-egress", "type: dlt")
    with pytest.raises(ConfigValidationError) as info:
        load_spec(spec_dir / "floe.yaml")
    assert str(spec_dir / "manifest.yaml") in str(info.value)
    [problem] = info.value.problems
    assert problem.line == 9 and "floe-egress reads type floe-egress" in problem.message


def test_a_bad_setting_in_the_manifest_is_reported_in_the_manifest(spec_dir: Path) -> None:
    edit(spec_dir / "manifest.yaml", "port: 8686", "port: 99999")
    with pytest.raises(ConfigValidationError) as info:
        load_spec(spec_dir / "floe.yaml")
    [problem] = info.value.problems
    assert problem.path == ("plugins", "ingestion", "config", "server", "port")
    assert problem.line == 19


def test_a_manifest_in_a_registry_needs_a_local_one(spec_dir: Path) -> None:
    edit(spec_dir / "floe.yaml", "./manifest.yaml", "oci://registry.acme.com/manifests/p:1.0")
    with pytest.raises(ConfigValidationError, match="pass --manifest PATH"):
        load_spec(spec_dir / "floe.yaml")


def test_the_manifest_flag_wins_over_the_spec_reference(
    spec_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere.yaml"
    shutil.copy(spec_dir / "manifest.yaml", other)
    edit(other, "state.db", "other.db")
    edit(spec_dir / "floe.yaml", "./manifest.yaml", "oci://registry.acme.com/manifests/p:1.0")
    monkeypatch.setenv(MANIFEST_ENV_VAR, str(other))
    spec = load_spec(spec_dir / "floe.yaml").spec
    assert spec.state.url.endswith("/other.db")


def test_floe_yaml_of_floe_egress_stays_as_it_is() -> None:
    spec = load_spec(EXAMPLE).spec
    assert spec.ingestion.destinations


def test_the_example_compiles_and_its_secret_references_are_not_plain_text(
    spec_dir: Path,
) -> None:
    loaded = load_spec(spec_dir / "floe.yaml")
    assert loaded.literal_secrets == ()
    artifacts = compile_artifacts(loaded)
    [crm, app_db] = artifacts["spec"]["ingestion"]["destinations"]
    assert crm["sink_config"]["headers"]["Authorization"] == "Bearer ${secret:crm-api/api-token}"
    assert app_db["sink_config"]["credentials"] == "${secret:app-db/credentials}"


@pytest.mark.parametrize(
    ("old", "new", "path", "says"),
    [
        ("kind: FloeSpec", "kind: Other", ("kind",), "must be FloeSpec"),
        ("apiVersion: floe.dev/v1", "apiVersion: floe.dev/v2", ("apiVersion",), "floe.dev/v1"),
        ("transforms:", "colour: blue\ntransforms:", ("colour",), "is not a key of a floe spec"),
        (
            "transforms:",
            "ingestion:\n  destinations: []\ntransforms:",
            ("ingestion", "destinations"),
            "top-level destinations",
        ),
        ("  - name: customers", "  - name: bad name!", ("transforms", 0, "name"), "dbt model"),
        (
            "      mode: mirror",
            "      mode: mirror\n      source_table: gold.orders",
            ("destinations", 1, "config", "source_table"),
            "is the destination's own field",
        ),
        (
            "Bearer ${secret:api-token}",
            "Bearer ${secret:app-db/credentials}",
            ("destinations", 0, "config", "sink_config", "headers", "Authorization"),
            "reads only its own Secret",
        ),
    ],
    ids=["kind", "apiVersion", "top-level key", "ingestion", "transform", "override", "other"],
)
def test_what_floe_refuses_is_refused_without_floe_core_too(
    spec_dir: Path, old: str, new: str, path: tuple[object, ...], says: str
) -> None:
    edit(spec_dir / "floe.yaml", old, new)
    with pytest.raises(ConfigValidationError) as info:
        load_spec(spec_dir / "floe.yaml")
    matching = [p for p in info.value.problems if p.path == path and says in p.message]
    assert matching, [(p.path, p.message) for p in info.value.problems]
    assert matching[0].line is not None


def test_a_manifest_reference_that_does_not_resolve_is_reported_in_the_manifest(
    spec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(
        spec_dir / "manifest.yaml", "uri: sqlite:////var/lib/floe/catalog.db", "uri: ${env:CAT_URI}"
    )
    monkeypatch.delenv("CAT_URI", raising=False)
    load_spec(spec_dir / "floe.yaml")  # its form is right
    with pytest.raises(ConfigValidationError) as info:
        load_spec(spec_dir / "floe.yaml", check_secrets=True)
    assert str(spec_dir / "manifest.yaml") in str(info.value)
    [problem] = info.value.problems
    assert problem.path == ("plugins", "ingestion", "config", "catalog", "uri")
    assert problem.line == 14 and "CAT_URI is not set" in problem.message


def test_a_missing_manifest_is_named_as_a_manifest(spec_dir: Path) -> None:
    (spec_dir / "manifest.yaml").unlink()
    with pytest.raises(ConfigError, match=r"no platform manifest at .*manifest\.yaml"):
        load_spec(spec_dir / "floe.yaml")
