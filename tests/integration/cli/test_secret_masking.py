"""Credentials a destination echoes back never leave masked-less: not in `sync`'s output
and logs, `failures --json`, `status`, nor the state store's rows.

The destination repeats every credential-bearing header and the raw query string of
each request in its error text, for each credential form the product sends: a bearer
token, Basic auth (base64 of user:password), an API key header, an API key in the query
string (URL-encoded there) and an OAuth access token it handed out itself. The CLI runs
as its own process, as a user runs it, so nothing registered for masking by another
test can hide a leak.
"""

from __future__ import annotations

import base64
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from yarl import URL

from tests.fixtures.crash_harness import EGRESS, PROCESS_TIMEOUT, egress_env
from tests.fixtures.fake_apis import EchoApi
from tests.fixtures.world import World, customers, initial_rows

SECRETS = {
    "BEARER_TOKEN": "bearer-T0k/en+plus=eq",
    "BASIC_USER": "svc-user",
    "BASIC_PASSWORD": "pa:ss/w+rd&x=1",
    "HEADER_KEY": "hdr-K3y/plus+eq=",
    "QUERY_KEY": "qry-K3y/plus+eq=&a;b?c d",
    "HS_CLIENT_ID": "hs-client-7d1e",
    "HS_CLIENT_SECRET": "hs-client-secret-4b2a",
    "HS_REFRESH_TOKEN": "hs-refresh-token-90c3",
}
ACCESS_TOKEN = "ya29.oauth-Acc3ss/tok+en="
"""What the destination's token endpoint hands out."""

AUTHS: dict[str, dict[str, str]] = {
    "bearer": {"type": "bearer", "token": "${env:BEARER_TOKEN}"},
    "basic": {
        "type": "basic",
        "username": "${env:BASIC_USER}",
        "password": "${env:BASIC_PASSWORD}",
    },
    "header": {"type": "api_key", "name": "X-Api-Key", "value": "${env:HEADER_KEY}"},
    "query": {"type": "api_key", "location": "query", "name": "key", "value": "${env:QUERY_KEY}"},
}


def forms(value: str) -> set[str]:
    """`value` as sent and as it may come back: raw, and URL-encoded three ways (a path
    segment, a form body, yarl's query string)."""
    query = URL.build(query={"k": value}).raw_query_string.removeprefix("k=")
    return {value, quote(value, safe=""), quote_plus(value), query}


def credentials() -> dict[str, set[str]]:
    basic = f"{SECRETS['BASIC_USER']}:{SECRETS['BASIC_PASSWORD']}".encode()
    return {
        "bearer token": forms(SECRETS["BEARER_TOKEN"]),
        "basic password": forms(SECRETS["BASIC_PASSWORD"]),
        "basic header": {base64.b64encode(basic).decode()},
        "api key header": forms(SECRETS["HEADER_KEY"]),
        "api key query": forms(SECRETS["QUERY_KEY"]),
        "oauth access token": forms(ACCESS_TOKEN),
        "oauth client secret": forms(SECRETS["HS_CLIENT_SECRET"]),
        "oauth refresh token": forms(SECRETS["HS_REFRESH_TOKEN"]),
    }


@pytest.fixture
def echo() -> Iterator[EchoApi]:
    with EchoApi(access_token=ACCESS_TOKEN).in_thread() as server:
        yield server


MAPPING = {"customer_id": "external_id", "email": "email"}


def rest(name: str, echo: EchoApi, status: int, auth: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "source_table": "gold.customers",
        "mode": "upsert",
        "sink_type": "rest_api",
        "allow_private_network": True,
        "sink_config": {
            "url": f"{echo.url}/echo/{status}/v1/contacts",
            "check_url": f"{echo.url}/ok/",
            "auth": auth,
        },
        "field_mapping": MAPPING,
        "retry": {"max_attempts": 1},
    }


def hubspot(name: str, echo: EchoApi, status: int) -> dict[str, Any]:
    grant = {
        "client_id": "${env:HS_CLIENT_ID}",
        "client_secret": "${env:HS_CLIENT_SECRET}",
        "refresh_token": "${env:HS_REFRESH_TOKEN}",
        "token_url": f"{echo.url}/oauth/token",
    }
    return {
        "name": name,
        "source_table": "gold.customers",
        "mode": "upsert",
        "sink_type": "hubspot",
        "allow_private_network": True,
        "sink_config": {
            "object_type": "contacts",
            "base_url": f"{echo.url}/echo/{status}",
            "oauth": grant,
        },
        "field_mapping": MAPPING,
        "retry": {"max_attempts": 1},
    }


def leaks(shown: dict[str, str]) -> list[tuple[str, str]]:
    """(where, which credential) for every form of a credential found in `shown`."""
    return [
        (where, what)
        for where, text in shown.items()
        for what, values in credentials().items()
        if any(value in text for value in values)
    ]


def egress(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [EGRESS, *argv], capture_output=True, text=True, env=env, timeout=PROCESS_TIMEOUT
    )
    assert done.returncode in (0, 1), done.stderr
    return done.stdout + done.stderr


def test_echoed_credentials_are_masked_in_output_status_failures_and_state(
    world: World, echo: EchoApi, tmp_path: Path
) -> None:
    world.table.append(customers(initial_rows(3)))
    destinations = [hubspot("oauth_rows", echo, 422), hubspot("oauth_auth", echo, 401)]
    for kind, auth in AUTHS.items():
        destinations += [
            rest(f"{kind}_rows", echo, 422, auth),
            rest(f"{kind}_auth", echo, 401, auth),
        ]
    config = str(world.write_config(destinations))
    env = {**egress_env(tmp_path / "work"), **SECRETS}
    rows_destinations = ["oauth_rows", *(f"{kind}_rows" for kind in AUTHS)]

    shown: dict[str, str] = {"sync": egress(env, "sync", "--config", config, "--json")}
    shown["status"] = egress(env, "status", "--config", config)
    shown["status --json"] = egress(env, "status", "--config", config, "--json")
    for name in rows_destinations:
        shown[f"failures {name}"] = egress(env, "failures", name, "--config", config, "--json")
    state = sqlite3.connect(world.state_url.removeprefix("sqlite:///"))
    try:
        shown["state store"] = "\n".join(state.iterdump())
    finally:
        state.close()

    assert leaks(shown) == []

    # The destination did echo them: every failed row and every refusal carries a mask.
    for name in rows_destinations:
        assert shown[f"failures {name}"].count("refused, you sent") == 3
    failed_rows = "\n".join(shown[f"failures {name}"] for name in rows_destinations)
    assert failed_rows.count("***") >= 3 * len(rows_destinations)
    assert shown["status --json"].count("HTTP 401 (refused, you sent") == 1 + len(AUTHS)
