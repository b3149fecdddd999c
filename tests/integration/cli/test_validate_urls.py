"""`floe-egress validate` on the URL settings of the HTTP sink types: schemes, plain
http:// and its opt-ins, and the warning for credentials sent over plain http://."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.cli.conftest import Cli

SINK_CONFIGS: dict[str, dict[str, Any]] = {
    "rest_api": {
        "url": "https://api.example.com/v1/contacts",
        "headers": {"Authorization": "Bearer ${env:CRM_TOKEN}"},
        "routes": {"delete": {"method": "DELETE", "url": "https://api.example.com/v1/gone"}},
        "check_url": "https://api.example.com/v1/ping",
    },
    "hubspot": {
        "object_type": "contacts",
        "base_url": "https://api.hubapi.com",
        "oauth": {
            "client_id": "app-1",
            "client_secret": "${env:CRM_TOKEN}",
            "refresh_token": "${env:CRM_TOKEN}",
            "token_url": "https://api.hubapi.com/oauth/v1/token",
        },
    },
    "salesforce": {
        "instance_url": "https://acme.my.salesforce.com",
        "sobject": "Contact",
        "oauth": {
            "client_id": "app-1",
            "refresh_token": "${env:CRM_TOKEN}",
            "token_url": "https://login.salesforce.com/services/oauth2/token",
        },
    },
}
URL_SETTINGS = [
    ("rest_api", ("url",)),
    ("rest_api", ("routes", "delete", "url")),
    ("rest_api", ("check_url",)),
    ("hubspot", ("base_url",)),
    ("hubspot", ("oauth", "token_url")),
    ("salesforce", ("instance_url",)),
    ("salesforce", ("oauth", "token_url")),
]
IDS = [f"{sink}.{'.'.join(path)}" for sink, path in URL_SETTINGS]


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "token-for-validation")


def write(
    tmp_path: Path,
    sink_type: str,
    path: tuple[str, ...] = (),
    url: str = "",
    *,
    sink: dict[str, Any] | None = None,
    **top: Any,
) -> Path:
    """floe.yaml with one destination of `sink_type`: its URL at `path` set to `url`, and
    `sink` merged into its sink_config (a None value removes the key)."""
    config = copy.deepcopy(SINK_CONFIGS[sink_type])
    if path:
        *parents, last = path
        at = config
        for name in parents:
            at = at[name]
        at[last] = url
    for name, value in (sink or {}).items():
        if value is None:
            config.pop(name)
        else:
            config[name] = value
    destination = {
        "name": "crm",
        "source_table": "gold.customers",
        "primary_key": ["customer_id"],
        "mode": "upsert",
        "sink_type": sink_type,
        **top,
        "sink_config": config,
    }
    doc = {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": {"name": "t"},
        "ingestion": {"destinations": [destination]},
    }
    file = tmp_path / "floe.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return file


def key(path: tuple[str, ...]) -> str:
    return "ingestion.destinations[0].sink_config." + ".".join(path)


@pytest.mark.parametrize("sink_type", sorted(SINK_CONFIGS))
def test_https_urls_are_valid(tmp_path: Path, cli: Cli, sink_type: str) -> None:
    run = cli("validate", "--config", str(write(tmp_path, sink_type)))

    assert run.code == 0, run.err
    assert run.err == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must be an https:// (or http://) URL; got file://"),
        ("ftp://files.example.com/contacts", "must be an https:// (or http://) URL; got ftp://"),
        ("https:///v1/contacts", "must be an https:// (or http://) URL with a host"),
    ],
    ids=["file", "ftp", "no-host"],
)
@pytest.mark.parametrize(("sink_type", "path"), URL_SETTINGS, ids=IDS)
def test_a_url_that_is_not_http_exits_2_with_its_key_path(
    tmp_path: Path, cli: Cli, sink_type: str, path: tuple[str, ...], url: str, message: str
) -> None:
    config = write(tmp_path, sink_type, path, url)

    run = cli("validate", "--config", str(config))

    assert run.code == 2
    assert f"{key(path)}: {message}" in run.err


@pytest.mark.parametrize(("sink_type", "path"), URL_SETTINGS, ids=IDS)
def test_plain_http_exits_2_without_an_opt_in(
    tmp_path: Path, cli: Cli, sink_type: str, path: tuple[str, ...]
) -> None:
    config = write(tmp_path, sink_type, path, "http://crm.internal.example/v1")

    run = cli("validate", "--config", str(config))

    assert run.code == 2
    assert (
        f"{key(path)}: plain http:// is refused: use https://, or set sink_config.allow_http: "
        "true (or allow_private_network: true on the destination, for an API on your own "
        "network)"
    ) in run.err


@pytest.mark.parametrize("opt_in", ["allow_http", "allow_private_network"])
@pytest.mark.parametrize(("sink_type", "path"), URL_SETTINGS, ids=IDS)
def test_plain_http_with_an_opt_in_is_valid_and_warns_about_the_credentials(
    tmp_path: Path, cli: Cli, sink_type: str, path: tuple[str, ...], opt_in: str
) -> None:
    top = {"allow_private_network": True} if opt_in == "allow_private_network" else {}
    sink = {"allow_http": True} if opt_in == "allow_http" else {}
    config = write(tmp_path, sink_type, path, "http://crm.internal.example/v1", sink=sink, **top)

    run = cli("validate", "--config", str(config))

    assert run.code == 0, run.err
    [warning] = run.err.splitlines()
    assert warning.startswith(f"warning: {config}:")
    assert warning.endswith(
        f" {key(path)}: credentials travel unencrypted over plain http:// to "
        "crm.internal.example: anyone on the network path can read them; use https://"
    )


@pytest.mark.parametrize(
    ("url", "sink"),
    [
        ("http://crm.internal.example/v1", {"headers": None}),
        ("http://localhost:8080/v1", {}),
        ("http://127.0.0.1:8080/v1", {}),
    ],
    ids=["no-credentials", "localhost", "loopback"],
)
def test_no_warning_without_credentials_or_to_this_machine(
    tmp_path: Path, cli: Cli, url: str, sink: dict[str, Any]
) -> None:
    only_url = {"routes": None, "check_url": None, "allow_http": True, **sink}
    config = write(tmp_path, "rest_api", ("url",), url, sink=only_url)

    run = cli("validate", "--config", str(config))

    assert run.code == 0, run.err
    assert run.err == ""


def test_allow_private_network_must_be_a_boolean(tmp_path: Path, cli: Cli) -> None:
    config = write(tmp_path, "rest_api", allow_private_network="yes")

    run = cli("validate", "--config", str(config))

    assert run.code == 2
    assert "ingestion.destinations[0].allow_private_network: must be" in run.err
