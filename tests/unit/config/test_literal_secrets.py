"""Secrets written as plain text in floe.yaml: found with their line, masked, never compiled."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from floe_egress import logs
from floe_egress.cli import main
from floe_egress.config.secrets import literal_secrets, redact
from floe_egress.spec import load_spec
from tests.fixtures.cli_runner import cli_isolation
from tests.unit.config.conftest import BASE_YAML, edit

__all__ = ["cli_isolation"]

LITERAL_TOKEN = "Bearer walrus-5d1e-literal"
LITERAL_YAML = edit(
    edit(
        BASE_YAML,
        '"Bearer ${env:FLOE_TEST_TOKEN}"',
        f'"{LITERAL_TOKEN}"\n          X-Trace: "yes"',
    ),
    "url: sqlite:///state.db",
    "url: postgresql://egress:narwhal-77@127.0.0.1:5432/test",
)


@pytest.fixture(autouse=True)
def _isolated(cli_isolation: None) -> None:
    return


def test_secret_named_keys_and_url_passwords_are_found() -> None:
    raw = {
        "state": {"url": "postgresql://u:pw-123@h/db"},
        "catalog": {"uri": "postgresql://u:${env:PW}@h/db", "token": "t-1234"},
        "sink_config": {
            "access_token": "pat-1234",
            "client-secret": "s-1234",
            "headers": {"Authorization": "Bearer ${env:X}", "X-Api-Key": "k-1234", "Accept": "*/*"},
            "auth": {"type": "api_key", "name": "X-Key", "value": "v-1234"},
            "password": "",
            "url": "https://api.example.com/v1",
            "db_password": 12345678,
        },
        # Column names, not settings.
        "field_mapping": {"reset_token": "ResetToken__c", "api_key": "ApiKey__c"},
        "primary_key": ["token"],
    }
    found = {".".join(map(str, path)): value for path, value in literal_secrets(raw)}
    assert found == {
        "state.url": "pw-123",
        "catalog.token": "t-1234",
        "sink_config.access_token": "pat-1234",
        "sink_config.client-secret": "s-1234",
        "sink_config.headers.X-Api-Key": "k-1234",
        "sink_config.auth.value": "v-1234",
        "sink_config.db_password": "12345678",
    }


def test_loading_reports_them_with_lines_and_masks_them(
    write_config: Callable[[str], Path],
) -> None:
    loaded = load_spec(write_config(LITERAL_YAML))
    assert [(p.line, p.key) for p in loaded.literal_secrets] == [
        (9, "state.url"),
        (22, "ingestion.destinations[0].sink_config.headers.Authorization"),
    ]
    assert (
        "use ${env:NAME}, ${credential:NAME} or ${secret:SECRET/KEY}"
        in loaded.literal_secrets[0].message
    )
    assert redact(f"401 for {LITERAL_TOKEN}") == "401 for ***"
    assert redact("token walrus-5d1e-literal expired") == "token *** expired"
    assert "narwhal-77" not in redact("connect failed: narwhal-77")
    assert "narwhal-77" not in redact("postgresql://egress:narwhal-77@db:5432/x")


def test_short_literals_are_reported_but_do_not_mask_common_words(
    write_config: Callable[[str], Path],
) -> None:
    text = edit(BASE_YAML, "url: sqlite:///state.db", "url: postgresql://floe:floe@db:5432/x")
    loaded = load_spec(write_config(text))
    assert [p.key for p in loaded.literal_secrets] == ["state.url"]
    assert redact("table floe.events of floe_egress") == "table floe.events of floe_egress"
    assert redact("postgresql://floe:floe@db:5432/x") == "postgresql://floe:***@db:5432/x"

    out = io.StringIO()
    logs.configure(stream=out, json=True)
    structlog.get_logger().warning("sink_refused", detail=f"sent {LITERAL_TOKEN}")
    assert "walrus" not in out.getvalue() and "***" in out.getvalue()


def test_validate_warns_and_compile_refuses(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    secrets_env: Path,
) -> None:
    path = write_config(LITERAL_YAML)
    assert main(["validate", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "valid (2 destinations)" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: {path}:9 state.url: a secret written as plain text")
    assert "walrus" not in captured.err and "narwhal" not in captured.err

    output = tmp_path / "compiled.json"
    assert main(["compile", "--config", str(path), "-o", str(output)]) == 2
    captured = capsys.readouterr()
    assert not output.exists(), "no artifact holds a plain-text secret"
    assert f"{path}:22 ingestion.destinations[0].sink_config.headers.Authorization" in captured.err


def test_references_compile_as_before(
    write_config: Callable[[str], Path], tmp_path: Path, secrets_env: Path
) -> None:
    output = tmp_path / "compiled.json"
    assert main(["compile", "--config", str(write_config(BASE_YAML)), "-o", str(output)]) == 0
    assert "${env:FLOE_TEST_TOKEN}" in json.dumps(json.loads(output.read_text()))
    assert load_spec(output).literal_secrets == ()
