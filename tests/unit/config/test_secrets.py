"""Secret references: found, resolved from env and credentials, never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from floe_egress.config.secrets import (
    ResolvedSecret,
    SecretRef,
    find_references,
    malformed_references,
    mask_values,
    redact,
    resolve,
    unmask_values,
)
from floe_egress.errors import SecretError

SECRET = "otter-55d1e0-top-secret"


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    (tmp_path / "crm_token").write_text(SECRET + "\n")
    (tmp_path / "two_lines").write_text("line1\nline2\r\n")
    return tmp_path


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${env:TOKEN}", {"TOKEN": SECRET}, SECRET),
        ("Bearer ${env:TOKEN}", {"TOKEN": SECRET}, f"Bearer {SECRET}"),
        ("${env:A}:${env:B}", {"A": "left", "B": "right"}, "left:right"),
        ("no reference", {}, "no reference"),
        ("dollar $ and {braces}", {}, "dollar $ and {braces}"),
        (
            {"h": {"Authorization": "Bearer ${env:TOKEN}"}, "n": 3, "l": ["${env:TOKEN}", None]},
            {"TOKEN": SECRET},
            {"h": {"Authorization": f"Bearer {SECRET}"}, "n": 3, "l": [SECRET, None]},
        ),
    ],
    ids=["whole", "embedded", "two", "plain", "look-alike", "nested"],
)
def test_resolve_env(value: Any, environ: dict[str, str], expected: Any) -> None:
    assert resolve(value, environ=environ) == expected


def test_resolve_credential_strips_trailing_newline(creds: Path) -> None:
    environ = {"CREDENTIALS_DIRECTORY": str(creds)}

    assert resolve("${credential:crm_token}", environ=environ) == SECRET
    assert resolve("${credential:two_lines}", environ=environ) == "line1\nline2"


def test_resolved_strings_are_masked_in_repr() -> None:
    resolved = resolve(
        {"Authorization": "Bearer ${env:TOKEN}", "plain": "x"}, environ={"TOKEN": SECRET}
    )

    assert isinstance(resolved["Authorization"], ResolvedSecret)
    assert type(resolved["plain"]) is str
    assert SECRET not in repr(resolved)
    assert repr(resolved) == "{'Authorization': '***', 'plain': 'x'}"
    assert f"{resolved['Authorization']}" == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("value", "environ", "message"),
    [
        (
            {"headers": {"Authorization": "Bearer ${env:CRM_TOKEN}"}},
            {},
            "secret ${env:CRM_TOKEN} at sink_config.headers.Authorization cannot be resolved: "
            "environment variable CRM_TOKEN is not set; set the environment variable CRM_TOKEN "
            "(systemd: Environment= or EnvironmentFile=)",
        ),
        (
            {"headers": {"Authorization": "${env:CRM_TOKEN}"}},
            {"CRM_TOKEN": ""},
            "secret ${env:CRM_TOKEN} at sink_config.headers.Authorization cannot be resolved: "
            "environment variable CRM_TOKEN is empty; set the environment variable CRM_TOKEN "
            "(systemd: Environment= or EnvironmentFile=)",
        ),
        (
            {"password": "${credential:db}"},
            {},
            "secret ${credential:db} at sink_config.password cannot be resolved: "
            "CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=); "
            "add LoadCredential=db:/path/to/secret to the systemd unit",
        ),
        (
            {"password": ["${env:SET} ${env:UNSET}"]},
            {"SET": SECRET},
            "secret ${env:UNSET} at sink_config.password[0] cannot be resolved: "
            "environment variable UNSET is not set; set the environment variable UNSET "
            "(systemd: Environment= or EnvironmentFile=)",
        ),
        (
            {"password": "${vault:db}"},
            {},
            "sink_config.password: ${vault:db} has an unknown source 'vault': "
            "use ${env:NAME}, ${credential:NAME} or ${secret:SECRET/KEY}",
        ),
    ],
    ids=["env unset", "env empty", "no credentials dir", "second of two", "malformed"],
)
def test_resolve_error_names_reference_place_and_remedy(
    value: Any, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SecretError) as info:
        resolve(value, path=("sink_config",), environ=environ)

    assert str(info.value) == message
    assert SECRET not in str(info.value)


def test_resolve_missing_credential_file(creds: Path) -> None:
    with pytest.raises(SecretError) as info:
        resolve("${credential:nope}", environ={"CREDENTIALS_DIRECTORY": str(creds)})

    assert str(info.value) == (
        f"secret ${{credential:nope}} cannot be resolved: no file nope in "
        f"$CREDENTIALS_DIRECTORY={creds}; add LoadCredential=nope:/path/to/secret to the "
        "systemd unit"
    )


def test_find_references_with_key_paths() -> None:
    obj = {
        "url": "https://x",
        "headers": {"Authorization": "Bearer ${env:CRM_TOKEN}", "X-Key": "${credential:key}"},
        "dsns": ["${env:A}-${env:B}"],
    }

    assert find_references(obj, ("sink_config",)) == [
        (("sink_config", "headers", "Authorization"), SecretRef("env", "CRM_TOKEN")),
        (("sink_config", "headers", "X-Key"), SecretRef("credential", "key")),
        (("sink_config", "dsns", 0), SecretRef("env", "A")),
        (("sink_config", "dsns", 0), SecretRef("env", "B")),
    ]
    assert str(SecretRef("credential", "key")) == "${credential:key}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "${foo:X}",
            "${foo:X} has an unknown source 'foo': use ${env:NAME}, ${credential:NAME} "
            "or ${secret:SECRET/KEY}",
        ),
        ("${env:}", "${env:} names no environment variable"),
        ("${credential:}", "${credential:} names no credential"),
        ("${TOKEN}", "${TOKEN} is not a secret reference: use ${env:TOKEN} or ${credential:TOKEN}"),
        ("${env:1ABC}", "${env:1ABC}: '1ABC' is not a valid environment variable name"),
        (
            "${credential:../etc/passwd}",
            "${credential:../etc/passwd}: '../etc/passwd' is not a valid credential name "
            "(letters, digits, _ . -)",
        ),
        ("Bearer ${env:TOKEN", "a secret reference is not closed: expected ${env:NAME}"),
    ],
    ids=[
        "unknown source",
        "empty env",
        "empty credential",
        "no source",
        "bad env",
        "traversal",
        "unclosed",
    ],
)
def test_malformed_references(text: str, message: str) -> None:
    assert [(p.path, p.message) for p in malformed_references({"k": text})] == [(("k",), message)]
    assert find_references({"k": text}) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:hunter22@db:5432/app", "postgresql://app:***@db:5432/app"),
        (
            "connect to mysql+pymysql://u:p%40ss@h/db failed",
            "connect to mysql+pymysql://u:***@h/db failed",
        ),
        ("postgresql://app@db:5432/app", "postgresql://app@db:5432/app"),
        ("https://api.example.com:8443/v1", "https://api.example.com:8443/v1"),
    ],
    ids=["password", "embedded", "no password", "port only"],
)
def test_redact_url_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_resolved_values_everywhere() -> None:
    resolved = resolve({"auth": "Bearer ${env:TOKEN}"}, environ={"TOKEN": SECRET})
    message = f"request failed: 401 for token {SECRET}"

    assert redact(message) == "request failed: 401 for token ***"
    assert redact(resolved) == {"auth": "***"}
    assert redact({"log": [message], "n": 1}) == {
        "log": ["request failed: 401 for token ***"],
        "n": 1,
    }


def test_a_resolved_secret_is_masked_url_encoded_too() -> None:
    value = "k3y/with+plus=&amp more"
    resolve("${env:API_KEY}", environ={"API_KEY": value})
    echoed = f"got {quote(value, safe='')} in the path and {quote_plus(value)} in a form"

    assert redact(echoed) == "got *** in the path and *** in a form"


def test_an_unmasked_value_is_forgotten_in_every_form() -> None:
    value = "old-token/+=-7f3a"
    mask_values([value])
    unmask_values([value])

    assert redact(f"{value} {quote(value, safe='')}") == f"{value} {quote(value, safe='')}"


@pytest.fixture
def mounted(tmp_path: Path) -> dict[str, str]:
    """A Kubernetes Secret `crm-api` mounted as Kubernetes mounts it: a file per key."""
    (tmp_path / "crm-api").mkdir()
    (tmp_path / "crm-api" / "token").write_text(SECRET + "\n")
    (tmp_path / "crm-api" / "db.url").write_text("postgresql://app:pw-55d1e0@db/app")
    return {"FLOE_SECRETS_DIR": str(tmp_path)}


def test_a_kubernetes_secret_key_is_read_from_its_mounted_file(mounted: dict[str, str]) -> None:
    value = resolve({"h": "Bearer ${secret:crm-api/token}"}, environ=mounted)
    assert value == {"h": f"Bearer {SECRET}"} and SECRET not in repr(value)
    assert (
        resolve("${secret:crm-api/db.url}", environ=mounted) == "postgresql://app:pw-55d1e0@db/app"
    )
    assert redact(f"failed with {SECRET}") == "failed with ***"
    assert find_references({"k": "${secret:crm-api/token}"}) == [
        (("k",), SecretRef("secret", "crm-api/token"))
    ]


@pytest.mark.parametrize(
    ("reference", "environ", "reason"),
    [
        (
            "${secret:crm-api/missing}",
            None,
            "the Secret crm-api has no key missing (no file",
        ),
        ("${secret:other/token}", None, "the Secret other is not mounted under $FLOE_SECRETS_DIR="),
        (
            "${secret:crm-api/token}",
            {},
            "the Secret crm-api is not mounted under /var/run/secrets/floe",
        ),
    ],
    ids=["no key", "no secret", "default base"],
)
def test_a_secret_that_is_not_mounted_says_what_to_mount_and_where(
    mounted: dict[str, str], reference: str, environ: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(SecretError) as info:
        resolve(
            {"sink_config": {"url": reference}}, environ=mounted if environ is None else environ
        )
    message = str(info.value)
    assert f"secret {reference} at sink_config.url cannot be resolved: {reason}" in message
    assert "mount the Secret" in message and SECRET not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${secret:token}", "${secret:token} names no key: use ${secret:SECRET/KEY}"),
        ("${secret:Crm/token}", "'Crm' is not a Kubernetes Secret name"),
        ("${secret:../etc/passwd}", "'..' is not a Kubernetes Secret name"),
        ("${secret:crm/../x}", "'../x' is not a Secret key"),
        ("${secret:crm/..}", "'..' is not a Secret key"),
        ("${secret:}", "${secret:} names no Secret"),
    ],
)
def test_malformed_kubernetes_secret_references(text: str, message: str) -> None:
    [problem] = malformed_references({"k": text})
    assert message in problem.message
