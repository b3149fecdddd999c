"""Values `validate` used to accept that then did something else than written: a name
with a trailing line break, an in-memory state store, an empty field name, a URL or a
header with CR/LF in it, a URL without a host or with port 99999, a cron expression
that never fires, a server open to the network without a token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from floe_egress.config import ConfigValidationError, Problem, find_references
from floe_egress.config.secrets import malformed_references
from floe_egress.errors import StateSetupError
from floe_egress.spec import load_spec
from floe_egress.state.urls import postgres_dsn
from tests.unit.config.conftest import edit, line_of

D0 = "ingestion.destinations[0]"
D1 = "ingestion.destinations[1]"
D3 = "ingestion.destinations[3]"
CONTROL = (
    "contains the control character {}, which does not belong in this value (a pasted "
    "line break?): remove it"
)
IN_MEMORY = (
    "is an in-memory SQLite database: the checkpoint would vanish when the process exits "
    "and every row would be sent again; use sqlite:///path/to/state.db"
)
NO_HOST = "names no host: expected scheme://host[:port]/path"
NO_TOKEN = (
    "set server.token (a secret reference such as ${credential:floe-token}) so that "
    "POST /v1/destinations/{name}/sync needs a bearer token, or bind server.host to 127.0.0.1"
)
NOT_A_FIELD = (
    "is not a field name: use letters, digits and underscores, not starting with a digit "
    "(for example external_id)"
)

# (old text, new text, [(key path, message)]); every problem is on the line of `old`.
WRONG: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "name with a trailing line break": (
        "    - name: crm\n",
        '    - name: "crm\\n"\n',
        [
            (
                f"{D0}.name",
                "'crm\\n' is not a valid destination name: use lowercase letters, digits "
                "and underscores ([a-z0-9_]+)",
            )
        ],
    ),
    "source_table with a trailing line break": (
        "      source_table: gold.customers\n      ref: main",
        '      source_table: "gold.customers\\n"\n      ref: main',
        [
            (
                f"{D0}.source_table",
                "'gold.customers\\n' is not a table identifier: expected namespace.table "
                "(for example gold.customers)",
            )
        ],
    ),
    "ref with a trailing line break": (
        "      ref: main",
        '      ref: "main\\n"',
        [(f"{D0}.ref", CONTROL.format("'\\n'"))],
    ),
    "primary key column with a control character": (
        "primary_key: [customer_id]",
        'primary_key: ["customer_id\\r"]',
        [(f"{D0}.primary_key[0]", CONTROL.format("'\\r'"))],
    ),
    "metadata name with a line break": (
        "  name: every-setting",
        '  name: "every-\\nsetting"',
        [("metadata.name", CONTROL.format("'\\n'"))],
    ),
    "rate limit account with an escape": (
        "        account: crm",
        '        account: "crm\\e"',
        [(f"{D0}.rate_limit.account", CONTROL.format("'\\x1b'"))],
    ),
    "database table with a trailing line break": (
        "        table: customers",
        '        table: "customers\\n"',
        [
            (
                f"{D3}.sink_config.table",
                "'customers\\n' is not a plain SQL identifier: use letters, digits and "
                "underscores, starting with a letter or underscore, at most 63 characters",
            )
        ],
    ),
    "state in memory: sqlite://": (
        "  url: sqlite:///state.db",
        "  url: sqlite://",
        [("state.url", IN_MEMORY)],
    ),
    "state in memory: :memory:": (
        "  url: sqlite:///state.db",
        '  url: "sqlite:///:memory:"',
        [("state.url", IN_MEMORY)],
    ),
    "state in memory: mode=memory": (
        "  url: sqlite:///state.db",
        "  url: sqlite:///state.db?mode=memory&cache=shared",
        [("state.url", IN_MEMORY)],
    ),
    "state sqlite with a host and no file": (
        "  url: sqlite:///state.db",
        "  url: sqlite://state.db",
        [
            (
                "state.url",
                "names no file: use sqlite:///relative/path.db or sqlite:////absolute/path.db",
            )
        ],
    ),
    "state sqlite with query parameters": (
        "  url: sqlite:///state.db",
        "  url: sqlite:///state.db?timeout=5",
        [("state.url", "query parameters are not supported for SQLite; remove them")],
    ),
    "state url with CR LF": (
        "  url: sqlite:///state.db",
        '  url: "sqlite:///state.db\\r\\n"',
        [("state.url", CONTROL.format("'\\r'"))],
    ),
    "state postgresql port 99999": (
        "  url: sqlite:///state.db",
        "  url: postgresql://floe@db.internal:99999/floe",
        [("state.url", "has an invalid port '99999': a port is a number from 1 to 65535")],
    ),
    "catalog uri with CR LF": (
        "  uri: sqlite:///catalog.db",
        '  uri: "https://catalog.example.com/\\r\\napi"',
        [("catalog.uri", CONTROL.format("'\\r'"))],
    ),
    "catalog uri without a host": (
        "  uri: sqlite:///catalog.db",
        "  uri: http://",
        [("catalog.uri", NO_HOST)],
    ),
    "catalog uri with port 99999": (
        "  uri: sqlite:///catalog.db",
        "  uri: http://catalog.example.com:99999/api",
        [("catalog.uri", "has an invalid port '99999': a port is a number from 1 to 65535")],
    ),
    "catalog uri with a malformed host": (
        "  uri: sqlite:///catalog.db",
        "  uri: http://catalog example.com/api",
        [("catalog.uri", "has a malformed host 'catalog example.com'")],
    ),
    "catalog warehouse s3 without a bucket": (
        "  warehouse: file:///var/lib/floe-egress/warehouse",
        "  warehouse: s3://",
        [("catalog.warehouse", NO_HOST)],
    ),
    "catalog property with a line break": (
        "  uri: sqlite:///catalog.db",
        '  credential: "client:se\\ncret"',
        [("catalog.credential", CONTROL.format("'\\n'"))],
    ),
    "field_mapping target empty": (
        "customer_id: external_id",
        "customer_id: ''",
        [(f"{D0}.field_mapping.customer_id", "must not be empty")],
    ),
    "field_mapping target with a space": (
        "customer_id: external_id",
        "customer_id: external id",
        [(f"{D0}.field_mapping.customer_id", f"'external id' {NOT_A_FIELD}")],
    ),
    "field_mapping target with a line break": (
        "customer_id: external_id",
        'customer_id: "external_id\\n"',
        [(f"{D0}.field_mapping.customer_id", CONTROL.format("'\\n'"))],
    ),
    "field_mapping source empty": (
        "customer_id: external_id",
        "'': external_id",
        [(f"{D0}.field_mapping['']", "must not be empty")],
    ),
    "rest_api url with CR LF": (
        "        url: https://api.example.com/v1/contacts",
        '        url: "https://api.example.com/v1/contacts\\r\\nX-Admin: yes"',
        [(f"{D0}.sink_config.url", CONTROL.format("'\\r'"))],
    ),
    "header value with CR LF": (
        "          X-Tenant: acme",
        '          X-Tenant: "acme\\r\\nX-Admin: yes"',
        [(f"{D0}.sink_config.headers.X-Tenant", CONTROL.format("'\\r'"))],
    ),
    "header name with a space": (
        "          X-Tenant: acme",
        "          X Tenant: acme",
        [
            (
                f"{D0}.sink_config.headers['X Tenant']",
                "'X Tenant' is not an HTTP header name: use letters, digits and - (for "
                "example X-Api-Key)",
            )
        ],
    ),
    "bearer token with a line break after its reference": (
        'token: "${env:FLOE_TEST_CRM_TOKEN}"',
        'token: "${env:FLOE_TEST_CRM_TOKEN}\\n"',
        [(f"{D0}.sink_config.auth.token", CONTROL.format("'\\n'"))],
    ),
    "hubspot access token with a line break": (
        "access_token: ${env:FLOE_TEST_HUBSPOT_TOKEN}",
        'access_token: "${env:FLOE_TEST_HUBSPOT_TOKEN}\\r\\n"',
        [(f"{D1}.sink_config.access_token", CONTROL.format("'\\r'"))],
    ),
    "cron on february 30": (
        'cron: "*/5 * * * *"',
        'cron: "0 0 30 2 *"',
        [
            (
                f"{D1}.schedule.cron",
                "cron expression '0 0 30 2 *' never fires (no time in the next ten years "
                "matches it): check the day and month fields",
            )
        ],
    ),
    "cron on april 31": (
        'cron: "*/5 * * * *"',
        'cron: "15 4 31 4 *"',
        [
            (
                f"{D1}.schedule.cron",
                "cron expression '15 4 31 4 *' never fires (no time in the next ten years "
                "matches it): check the day and month fields",
            )
        ],
    ),
    "server on every address without a token": (
        "  host: 127.0.0.1\n  port: 8686\n  token: ${env:FLOE_TEST_SERVER_TOKEN}\n",
        "  host: 0.0.0.0\n  port: 8686\n",
        [
            (
                "server.host",
                "'0.0.0.0' is reachable beyond this machine and server.token is not set: "
                + NO_TOKEN,
            )
        ],
    ),
    "server host that is not a host": (
        "  host: 127.0.0.1",
        "  host: local host",
        [("server.host", "'local host' is not an IP address or a host name")],
    ),
    "server port 0": (
        "  port: 8686",
        "  port: 0",
        [("server.port", "must be at least 1")],
    ),
}


def problems(path: Path) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigValidationError) as info:
        load_spec(path, check_secrets=True)
    return [(p.key, p.line, p.message) for p in info.value.problems]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    WRONG.values(),
    ids=WRONG.keys(),
)
def test_a_value_that_would_do_something_else_is_refused_at_its_key_and_line(
    every_setting_env: str,
    write_config: Callable[[str], Path],
    old: str,
    new: str,
    expected: list[tuple[str, str]],
) -> None:
    path = write_config(edit(every_setting_env, old, new))

    line = line_of(every_setting_env, old)
    assert problems(path) == [(key, line, message) for key, message in expected]


def test_a_server_on_every_address_with_a_null_token_names_the_token(
    every_setting_env: str, write_config: Callable[[str], Path]
) -> None:
    text = edit(every_setting_env, "  host: 127.0.0.1", "  host: 0.0.0.0")
    text = edit(text, "  token: ${env:FLOE_TEST_SERVER_TOKEN}", "  token: null")

    assert problems(write_config(text)) == [
        (
            "server.token",
            line_of(every_setting_env, "  token: ${env:FLOE_TEST_SERVER_TOKEN}"),
            f"must be set: server.host '0.0.0.0' is reachable beyond this machine; {NO_TOKEN}",
        )
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  url: sqlite:///state.db", "  url: sqlite:////var/lib/floe-egress/state.db"),
        (
            "  url: sqlite:///state.db",
            "  url: postgresql://floe:${env:FLOE_TEST_CRM_TOKEN}@db:5432/f",
        ),
        ("  url: sqlite:///state.db", "  url: postgresql:///floe"),
        ("  url: sqlite:///state.db", "  url: ${env:FLOE_TEST_CRM_TOKEN}"),
        ("  uri: sqlite:///catalog.db", "  uri: thrift://hive.internal:9083"),
        ("  uri: sqlite:///catalog.db", "  uri: https://polaris.example.com/api/catalog"),
        ("  uri: sqlite:///catalog.db", "  uri: http://[::1]:8181"),
        ("  type: sql", "  type: sql\n  s3.endpoint: http://127.0.0.1:9000"),
        ('cron: "*/5 * * * *"', 'cron: "0 0 29 2 *"'),
        ("  host: 127.0.0.1", "  host: localhost"),
        ("  host: 127.0.0.1", "  host: ::1"),
        ("  host: 127.0.0.1\n  port: 8686\n  token: ${env:FLOE_TEST_SERVER_TOKEN}", "  host: ::1"),
        ("  host: 127.0.0.1", "  host: 0.0.0.0"),
        ("customer_id: external_id", "customer_id: External_Id__c"),
        ("          X-Tenant: acme", '          X-Tenant: "acme\\tcorp"'),
    ],
)
def test_values_like_the_refused_ones_that_are_right_still_load(
    every_setting_env: str, write_config: Callable[[str], Path], old: str, new: str
) -> None:
    loaded = load_spec(write_config(edit(every_setting_env, old, new)), check_secrets=True)

    assert len(loaded.spec.ingestion.destinations) == 4


@pytest.mark.parametrize("text", ["${env:TOKEN\n}", "${credential:token\n}"])
def test_a_secret_name_with_a_trailing_line_break_is_no_reference(text: str) -> None:
    assert find_references(text) == []
    assert len(malformed_references(text)) == 1


def test_a_key_with_a_line_break_is_quoted_in_messages() -> None:
    assert (
        Problem(("labels", "team\n"), "x").render("floe.yaml") == "floe.yaml labels['team\\n']: x"
    )


def test_a_state_schema_with_a_trailing_line_break_is_refused() -> None:
    with pytest.raises(StateSetupError, match="is not a plain lowercase identifier"):
        postgres_dsn("postgresql://floe@db/floe?schema=egress%0A")
