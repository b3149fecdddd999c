"""Loading floe.yaml: every problem at once, with key path, line and plain message.

Through `load_spec`, which hands the sink registry's checks to config's `load_config`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from floe_egress.config import (
    ConfigValidationError,
    LoadedConfig,
    Problem,
    compile_spec,
    default_config_path,
    load_config,
)
from floe_egress.config.models import FloeSpec
from floe_egress.errors import ConfigError
from floe_egress.sinks.registry import sink_types
from floe_egress.spec import load_spec
from tests.unit.config.conftest import BASE_YAML, TOKEN_VALUE, edit

D0 = "ingestion.destinations[0]"
D1 = "ingestion.destinations[1]"
NAME_RULE = "use lowercase letters, digits and underscores ([a-z0-9_]+)"
CRON_FIELDS = "(expected five fields: minute hour day month day_of_week)"


def problems_of(path: Path, *, check_secrets: bool = True) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigValidationError) as info:
        load_spec(path, check_secrets=check_secrets)
    return [(p.key, p.line, p.message) for p in info.value.problems]


@pytest.mark.usefixtures("secrets_env")
def test_base_config_loads_with_lines(write_config: Callable[[str], Path]) -> None:
    path = write_config(BASE_YAML)
    loaded = load_spec(path, check_secrets=True)

    assert isinstance(loaded, LoadedConfig)
    assert loaded.format == "yaml"
    assert loaded.source == loaded.path == path
    assert [d.name for d in loaded.spec.ingestion.destinations] == ["crm_contacts", "app_db"]
    assert loaded.line_of(("ingestion", "destinations", 1, "sink_config", "table")) == 33
    assert loaded.line_of(("server", "port")) == 12
    # A key that is not in the file maps to its nearest parent that is.
    assert loaded.line_of(("ingestion", "destinations", 1, "batch_size")) == 28


# (old text, new text, [(key path, line, message)]): each edit of BASE_YAML and exactly the
# problems it must produce.
BROKEN: dict[str, tuple[str, str, list[tuple[str, int, str]]]] = {
    "port not an integer": (
        "port: 8686",
        "port: abc",
        [("server.port", 12, "must be an integer, got 'abc'")],
    ),
    "port out of range": (
        "port: 8686",
        "port: 70000",
        [("server.port", 12, "must be at most 65535")],
    ),
    "batch_size not an integer": (
        "batch_size: 100",
        "batch_size: x",
        [(f"{D0}.batch_size", 23, "must be an integer, got 'x'")],
    ),
    "requests_per_second zero": (
        "requests_per_second: 10",
        "requests_per_second: 0",
        [(f"{D0}.rate_limit.requests_per_second", 25, "must be at least 0.01")],
    ),
    "host not a string": (
        "host: 127.0.0.1",
        "host: [a, b]",
        [("server.host", 11, "must be a string, got a list")],
    ),
    "unknown key schedule typo": (
        "      schedule:\n        interval_seconds: 5",
        "      shedule:\n        interval_seconds: 5",
        [(f"{D0}.shedule", 26, "unknown key 'shedule'; did you mean 'schedule'?")],
    ),
    "unknown key sink_config typo": (
        "      sink_config:\n        credentials",
        "      sink_confg:\n        credentials",
        [(f"{D1}.sink_confg", 31, "unknown key 'sink_confg'; did you mean 'sink_config'?")],
    ),
    "unknown key without a close match": (
        "  port: 8686",
        "  port: 8686\n  zzz: 1",
        [("server.zzz", 13, "unknown key 'zzz'")],
    ),
    "missing name": (
        "    - name: app_db\n      source_table",
        "    - source_table",
        [(f"{D1}.name", 28, "required key is missing")],
    ),
    "missing source_table": (
        "    - name: app_db\n      source_table: gold.customers\n",
        "    - name: app_db\n",
        [(f"{D1}.source_table", 28, "required key is missing")],
    ),
    "missing sink_type": (
        "      sink_type: test_db\n",
        "",
        [(f"{D1}.sink_type", 28, "required key is missing")],
    ),
    "missing metadata": (
        "metadata:\n  name: test-floe\n",
        "",
        [("metadata", 1, "required key is missing")],
    ),
    "duplicate destination name": (
        "name: app_db",
        "name: crm_contacts",
        [
            (
                f"{D1}.name",
                28,
                "duplicate destination name 'crm_contacts': already used by "
                "ingestion.destinations[0]",
            )
        ],
    ),
    "malformed source_table": (
        "source_table: gold.customers\n      mode: mirror",
        "source_table: customers\n      mode: mirror",
        [
            (
                f"{D0}.source_table",
                16,
                "'customers' is not a table identifier: expected namespace.table "
                "(for example gold.customers)",
            )
        ],
    ),
    "bad destination name": (
        "name: crm_contacts",
        "name: CRM-Contacts",
        [(f"{D0}.name", 15, f"'CRM-Contacts' is not a valid destination name: {NAME_RULE}")],
    ),
    "bad cron": (
        'cron: "*/5 * * * *"',
        'cron: "*/5 * * *"',
        [
            (
                f"{D1}.schedule.cron",
                35,
                "invalid cron expression '*/5 * * *': Wrong number of fields; got 4, "
                f"expected 5 {CRON_FIELDS}",
            )
        ],
    ),
    "both interval and cron": (
        "interval_seconds: 5",
        'interval_seconds: 5\n        cron: "0 * * * *"',
        [(f"{D0}.schedule", 26, "give either interval_seconds or cron, not both")],
    ),
    "unknown mode": (
        "mode: mirror",
        "mode: mirorr",
        [
            (
                f"{D0}.mode",
                17,
                "must be one of upsert, update, insert, mirror, append; got 'mirorr'; "
                "did you mean 'mirror'?",
            )
        ],
    ),
    "wrong apiVersion": (
        "apiVersion: floe.dev/v1",
        "apiVersion: floe.dev/v2",
        [("apiVersion", 1, "must be 'floe.dev/v1', got 'floe.dev/v2'")],
    ),
    "mode the sink type cannot do": (
        "      sink_type: test_db\n",
        "      sink_type: test_db\n      mode: mirror\n",
        [
            (
                f"{D1}.mode",
                31,
                "sink_type 'test_db' cannot do mode 'mirror'; it supports: upsert, insert",
            )
        ],
    ),
    "sink_config missing a required key": (
        "        url: https://api.example.com/v1/contacts\n",
        "",
        [(f"{D0}.sink_config.url", 19, "required key is missing")],
    ),
    "sink_config unknown key": (
        "        url: https://",
        "        ulr: https://",
        [
            (f"{D0}.sink_config.url", 19, "required key is missing"),
            (f"{D0}.sink_config.ulr", 20, "unknown key 'ulr'; did you mean 'url'?"),
        ],
    ),
    "sink_config wrong type": (
        "        table: customers",
        "        table: customers\n        port: abc",
        [(f"{D1}.sink_config.port", 34, "must be an integer, got 'abc'")],
    ),
    "missing env secret": (
        "${env:FLOE_TEST_TOKEN}",
        "${env:FLOE_TEST_MISSING}",
        [
            (
                f"{D0}.sink_config.headers.Authorization",
                22,
                "secret ${env:FLOE_TEST_MISSING} cannot be resolved: "
                "environment variable FLOE_TEST_MISSING is not set",
            )
        ],
    ),
    "unknown secret source": (
        "${env:FLOE_TEST_TOKEN}",
        "${vault:FLOE_TEST_TOKEN}",
        [
            (
                f"{D0}.sink_config.headers.Authorization",
                22,
                "${vault:FLOE_TEST_TOKEN} has an unknown source 'vault': "
                "use ${env:NAME}, ${credential:NAME} or ${secret:SECRET/KEY}",
            )
        ],
    ),
    "secret reference without a name": (
        "${env:FLOE_TEST_TOKEN}",
        "${env:}",
        [(f"{D0}.sink_config.headers.Authorization", 22, "${env:} names no environment variable")],
    ),
    "secret reference not closed": (
        "${env:FLOE_TEST_TOKEN}",
        "${env:FLOE_TEST_TOKEN",
        [
            (
                f"{D0}.sink_config.headers.Authorization",
                22,
                "a secret reference is not closed: expected ${env:NAME}",
            )
        ],
    ),
    "field mapped onto an unmapped key column's name": (
        "      batch_size: 100",
        "      primary_key: [customer_id]\n"
        "      field_mapping:\n        email: customer_id\n"
        "      batch_size: 100",
        [
            (
                D0,
                15,
                "field_mapping maps 'email' onto 'customer_id', the name key column "
                "'customer_id' is sent under (it is not in field_mapping); map the key column "
                "as well, or choose another field",
            )
        ],
    ),
    "secret reference where none is resolved": (
        "name: test-floe",
        "name: ${env:FLOE_TEST_TOKEN}",
        [
            (
                "metadata.name",
                4,
                "secret ${env:FLOE_TEST_TOKEN} is not allowed here: references are resolved "
                "only in sink_config, catalog properties, state.url and server.token",
            )
        ],
    ),
}


@pytest.mark.usefixtures("secrets_env")
@pytest.mark.parametrize(("old", "new", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_variant_reports_exact_problems(
    write_config: Callable[[str], Path],
    old: str,
    new: str,
    expected: list[tuple[str, int, str]],
) -> None:
    path = write_config(edit(BASE_YAML, old, new))

    assert problems_of(path) == expected


def test_missing_credential_file_names_the_directory(
    write_config: Callable[[str], Path], secrets_env: Path
) -> None:
    path = write_config(edit(BASE_YAML, "${credential:app_db_url}", "${credential:nope}"))

    assert problems_of(path) == [
        (
            f"{D1}.sink_config.credentials",
            32,
            "secret ${credential:nope} cannot be resolved: "
            f"no file nope in $CREDENTIALS_DIRECTORY={secrets_env}",
        )
    ]


def test_credential_without_credentials_directory(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOE_TEST_TOKEN", TOKEN_VALUE)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = write_config(BASE_YAML)

    assert problems_of(path) == [
        (
            f"{D1}.sink_config.credentials",
            32,
            "secret ${credential:app_db_url} cannot be resolved: "
            "CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)",
        )
    ]


def test_unresolvable_secrets_pass_without_check_secrets(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOE_TEST_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    loaded = load_spec(write_config(BASE_YAML), check_secrets=False)

    headers = loaded.spec.ingestion.destinations[0].sink_config["headers"]
    assert headers == {"Authorization": "Bearer ${env:FLOE_TEST_TOKEN}"}


@pytest.mark.usefixtures("secrets_env")
def test_unknown_sink_type_lists_available_types(write_config: Callable[[str], Path]) -> None:
    path = write_config(edit(BASE_YAML, "sink_type: test_db", "sink_type: test_dbb"))
    available = ", ".join(sorted(sink_types()))

    assert "test_api" in available
    assert problems_of(path) == [
        (
            f"{D1}.sink_type",
            30,
            f"unknown sink_type 'test_dbb'; available: {available}; did you mean 'test_db'?",
        )
    ]


@pytest.mark.usefixtures("secrets_env")
def test_every_problem_reported_at_once_sorted_by_line(
    write_config: Callable[[str], Path],
) -> None:
    text = BASE_YAML
    text = edit(text, "requests_per_second: 10", "requests_per_second: 0")
    text = edit(text, "name: app_db", "name: crm_contacts")
    text = edit(text, "port: 8686", "port: abc")
    text = edit(text, "${env:FLOE_TEST_TOKEN}", "${env:FLOE_TEST_MISSING}")
    text = edit(text, "sink_type: test_db", "sink_type: nope")
    path = write_config(text)

    with pytest.raises(ConfigValidationError) as info:
        load_spec(path, check_secrets=True)

    assert str(info.value).splitlines() == [
        f"{path}:12 server.port: must be an integer, got 'abc'",
        f"{path}:22 {D0}.sink_config.headers.Authorization: secret ${{env:FLOE_TEST_MISSING}} "
        "cannot be resolved: environment variable FLOE_TEST_MISSING is not set",
        f"{path}:25 {D0}.rate_limit.requests_per_second: must be at least 0.01",
        f"{path}:28 {D1}.name: duplicate destination name 'crm_contacts': "
        "already used by ingestion.destinations[0]",
        f"{path}:30 {D1}.sink_type: unknown sink_type 'nope'; available: "
        + ", ".join(sorted(sink_types())),
    ]
    assert [p.line for p in info.value.problems] == [12, 22, 25, 28, 30]
    assert isinstance(info.value, ConfigError)


def test_problem_renders_like_a_compiler_message() -> None:
    problem = Problem(
        ("ingestion", "destinations", 1, "rate_limit", "requests_per_second"),
        "must be greater than 0",
        23,
    )

    assert problem.render("floe.yaml") == (
        "floe.yaml:23 ingestion.destinations[1].rate_limit.requests_per_second: "
        "must be greater than 0"
    )
    assert (
        Problem(("catalog", "s3.endpoint"), "x").render("f.yaml")
        == "f.yaml catalog['s3.endpoint']: x"
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("apiVersion: [floe.dev/v1\nkind: FloeSpec\n", 2, "invalid YAML: expected ',' or ']'"),
        (
            "kind: FloeSpec\nmetadata:\n  name: x\n name: y\n",
            4,
            "invalid YAML: expected <block end>",
        ),
        ("kind: 'FloeSpec\n", 2, "invalid YAML: found unexpected end of stream"),
        ("kind: FloeSpec\n\tmetadata: {}\n", 2, "invalid YAML: found character '\\t'"),
        ("kind: FloeSpec\n---\nkind: FloeSpec\n", 2, "invalid YAML: but found another document"),
    ],
    ids=["unclosed flow list", "bad indentation", "unclosed quote", "tab", "two documents"],
)
def test_yaml_syntax_error_has_line(
    write_config: Callable[[str], Path], text: str, line: int, message: str
) -> None:
    path = write_config(text)

    with pytest.raises(ConfigValidationError) as info:
        load_spec(path)

    (problem,) = info.value.problems
    assert problem.line == line
    assert problem.message.startswith(message)
    assert str(info.value).startswith(f"{path}:{line}: invalid YAML")


def test_duplicate_yaml_key_does_not_echo_values(write_config: Callable[[str], Path]) -> None:
    path = write_config("kind: FloeSpec\nserver:\n  token: first-value\n  token: second-value\n")

    with pytest.raises(ConfigValidationError) as info:
        load_spec(path)

    assert [(p.line, p.message) for p in info.value.problems] == [(4, "duplicate key 'token'")]
    assert "value" not in str(info.value).replace(str(path), "")


EXPECTED_TOP = "a mapping with apiVersion, kind, metadata and ingestion"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", f"the file is empty: expected {EXPECTED_TOP}", None),
        ("# only a comment\n\n", f"the file is empty: expected {EXPECTED_TOP}", None),
        ("- a\n- b\n", f"the top level must be {EXPECTED_TOP}, got a list", 1),
        ("just text\n", f"the top level must be {EXPECTED_TOP}, got 'just text'", 1),
    ],
    ids=["empty", "comments only", "list", "scalar"],
)
def test_unusable_top_level(
    write_config: Callable[[str], Path], text: str, message: str, line: int | None
) -> None:
    with pytest.raises(ConfigValidationError) as info:
        load_spec(write_config(text))

    assert [(p.path, p.line, p.message) for p in info.value.problems] == [((), line, message)]


def test_not_utf8(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    path = tmp_path / "floe.yaml"
    path.write_bytes(b"kind: FloeSpec\nmetadata:\n  name: caf\xe9\n")

    with pytest.raises(ConfigValidationError) as info:
        load_spec(path)

    assert [(p.line, p.message) for p in info.value.problems] == [
        (3, "not UTF-8 text (byte 36); save the file as UTF-8")
    ]


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(tmp_path / "nope.yaml")

    assert not isinstance(info.value, ConfigValidationError)
    assert str(info.value) == (
        f"no configuration file at {tmp_path / 'nope.yaml'}: "
        "pass --config PATH or set FLOE_EGRESS_CONFIG"
    )


def test_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a directory, not a floe\.yaml file"):
        load_spec(tmp_path)


@pytest.mark.parametrize(
    ("env_value", "expected"),
    [
        (None, Path("floe.yaml")),
        ("", Path("floe.yaml")),
        ("/etc/floe/x.yaml", Path("/etc/floe/x.yaml")),
    ],
    ids=["unset", "empty", "set"],
)
def test_default_config_path(
    monkeypatch: pytest.MonkeyPatch, env_value: str | None, expected: Path
) -> None:
    if env_value is None:
        monkeypatch.delenv("FLOE_EGRESS_CONFIG", raising=False)
    else:
        monkeypatch.setenv("FLOE_EGRESS_CONFIG", env_value)

    assert default_config_path() == expected


@pytest.mark.usefixtures("secrets_env")
def test_loading_without_path_uses_env_var(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(BASE_YAML, "elsewhere.yaml")
    monkeypatch.setenv("FLOE_EGRESS_CONFIG", str(path))

    assert load_spec().source == path


@pytest.mark.usefixtures("secrets_env")
def test_yaml_written_as_json_is_still_floe_yaml(write_config: Callable[[str], Path]) -> None:
    text = (
        '{"apiVersion": "floe.dev/v1", "kind": "FloeSpec", "metadata": {"name": "j"},\n'
        ' "server": {"port": "abc"}}\n'
    )

    assert problems_of(write_config(text)) == [("server.port", 2, "must be an integer, got 'abc'")]


def test_models_reject_duplicate_names_when_built_directly() -> None:
    dest = {"name": "a", "source_table": "gold.t", "sink_type": "test_db"}
    raw = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "m"},
        "ingestion": {"destinations": [dest, dest]},
    }

    with pytest.raises(ValidationError, match="duplicate destination name 'a'"):
        FloeSpec.model_validate(raw)


def test_config_alone_leaves_sink_types_unjudged(write_config: Callable[[str], Path]) -> None:
    path = write_config(edit(BASE_YAML, "sink_type: test_db", "sink_type: test_dbb"))

    loaded = load_config(path)

    assert loaded.spec.ingestion.destinations[1].sink_type == "test_dbb"


@pytest.mark.parametrize(
    ("compiled", "prefix"), [(False, ""), (True, "spec.")], ids=["floe.yaml", "compiled"]
)
def test_sink_check_judges_the_destinations(
    write_config: Callable[[str], Path], tmp_path: Path, compiled: bool, prefix: str
) -> None:
    seen: list[list[str]] = []

    def refuse_first(items: list[Any]) -> list[Problem]:
        seen.append([item["name"] for item in items])
        return [Problem(("ingestion", "destinations", 0, "sink_type"), "not this one")]

    path = write_config(BASE_YAML)
    if compiled:
        artifacts = compile_spec(load_config(path))
        path = tmp_path / "compiled.json"
        path.write_text(json.dumps(artifacts))

    with pytest.raises(ConfigValidationError) as info:
        load_config(path, sink_check=refuse_first)

    assert [(p.key, p.message) for p in info.value.problems] == [
        (f"{prefix}{D0}.sink_type", "not this one")
    ]
    assert seen == [["crm_contacts", "app_db"]]
