"""Fixtures for the config tests: the test sink types registered, a base floe.yaml, secrets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from floe_egress.sinks.registry import registered
from tests.fixtures.sink_types import TEST_API, TEST_DB

EXAMPLE = Path(__file__).parent / "data" / "floe.example.yaml"
TOKEN_VALUE = "zebra-7f3a9c-not-a-real-token"
DB_URL_VALUE = "postgresql://app:quokka-91b2@db.internal:5432/app"

# The line numbers in the tests refer to this text: keep it as it is, add cases instead.
BASE_YAML = """\
apiVersion: floe.dev/v1
kind: FloeSpec
metadata:
  name: test-floe
catalog:
  name: gold
  uri: sqlite:///catalog.db
state:
  url: sqlite:///state.db
server:
  host: 127.0.0.1
  port: 8686
ingestion:
  destinations:
    - name: crm_contacts
      source_table: gold.customers
      mode: mirror
      sink_type: test_api
      sink_config:
        url: https://api.example.com/v1/contacts
        headers:
          Authorization: "Bearer ${env:FLOE_TEST_TOKEN}"
      batch_size: 100
      rate_limit:
        requests_per_second: 10
      schedule:
        interval_seconds: 5
    - name: app_db
      source_table: gold.customers
      sink_type: test_db
      sink_config:
        credentials: ${credential:app_db_url}
        table: customers
      schedule:
        cron: "*/5 * * * *"
"""


@pytest.fixture(autouse=True)
def test_sink_types() -> Iterator[None]:
    with registered(TEST_API, TEST_DB):
        yield


@pytest.fixture
def credentials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "app_db_url").write_text(DB_URL_VALUE + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


@pytest.fixture
def secrets_env(credentials_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every secret BASE_YAML references can be resolved; returns the credentials dir."""
    monkeypatch.setenv("FLOE_TEST_TOKEN", TOKEN_VALUE)
    return credentials_dir


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "floe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def edit(text: str, old: str, new: str) -> str:
    """`text` with the one occurrence of `old` replaced (fails loudly if not exactly one)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


EVERY_SETTING = Path(__file__).parent / "data" / "floe.every-setting.yaml"
EVERY_SETTING_SECRETS = {
    "FLOE_TEST_SERVER_TOKEN": "otter-5d1e-server-token",
    "FLOE_TEST_CRM_TOKEN": "heron-8c2b-crm-token",
    "FLOE_TEST_HUBSPOT_TOKEN": "lynx-3a9f-hubspot-token",
    "FLOE_TEST_SALESFORCE_TOKEN": "ibis-7e4d-salesforce-token",
}


@pytest.fixture
def every_setting_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """The secrets floe.every-setting.yaml references are set; returns its text."""
    for name, value in EVERY_SETTING_SECRETS.items():
        monkeypatch.setenv(name, value)
    return EVERY_SETTING.read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the one occurrence of `needle` in `text`."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times"
    return text[: text.index(needle)].count("\n") + 1
