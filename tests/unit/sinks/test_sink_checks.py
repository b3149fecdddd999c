"""Destinations checked against their sink types through the registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from floe_egress.config.models import SYNC_MODES, FloeSpec
from floe_egress.sinks.checks import check_destination_items, check_destinations
from floe_egress.sinks.registry import SinkType, get_sink_type, registered, sink_types
from tests.fixtures.sink_types import TEST_API, TEST_DB, DbConfig, not_built

APPEND_ONLY = SinkType("test_events", DbConfig, frozenset({"append"}), not_built)


@pytest.fixture(autouse=True)
def registered_test_types() -> Iterator[None]:
    with registered(TEST_API, TEST_DB):
        yield


def spec_with(*destinations: dict[str, Any]) -> FloeSpec:
    return FloeSpec.model_validate(
        {
            "apiVersion": "floe.dev/v1",
            "kind": "FloeSpec",
            "metadata": {"name": "t"},
            "ingestion": {"destinations": list(destinations)},
        }
    )


def dest(name: str, sink_type: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "source_table": "gold.t", "sink_type": sink_type, **extra}


def test_check_destinations_of_a_validated_spec() -> None:
    spec = spec_with(
        dest("ok", "test_api", sink_config={"url": "https://x"}),
        dest("no_url", "test_api", sink_config={"headers": {}}),
        dest("typo", "test_apii"),
        dest("bad_mode", "test_db", mode="mirror"),
    )

    problems = [(p.key, p.message) for p in check_destinations(spec)]

    available = ", ".join(sorted(sink_types()))
    assert problems == [
        ("ingestion.destinations[1].sink_config.url", "required key is missing"),
        (
            "ingestion.destinations[2].sink_type",
            f"unknown sink_type 'test_apii'; available: {available}; did you mean 'test_api'?",
        ),
        (
            "ingestion.destinations[3].mode",
            "sink_type 'test_db' cannot do mode 'mirror'; it supports: upsert, insert",
        ),
    ]


def test_default_mode_the_type_cannot_do_says_it_is_the_default() -> None:
    with registered(APPEND_ONLY):
        problems = check_destination_items([dest("e", "test_events")])

    assert [(p.key, p.message) for p in problems] == [
        (
            "ingestion.destinations[0].mode",
            "sink_type 'test_events' cannot do mode 'upsert' (the default); it supports: append",
        )
    ]


@pytest.mark.parametrize(
    ("sink_config", "expected"),
    [
        ({"port": "${env:DB_PORT}"}, []),
        ({"port": "x${env:DB_PORT}"}, []),
        (
            {"port": "5432x"},
            [("ingestion.destinations[0].sink_config.port", "must be an integer, got '5432x'")],
        ),
        (
            {"prot": "${env:DB_PORT}"},
            [
                (
                    "ingestion.destinations[0].sink_config.prot",
                    "unknown key 'prot'; did you mean 'port'?",
                )
            ],
        ),
    ],
    ids=["reference", "embedded reference", "no reference", "unknown key holding a reference"],
)
def test_secret_reference_values_are_judged_after_resolution(
    sink_config: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    problems = check_destination_items([dest("d", "test_db", sink_config=sink_config)])

    assert [(p.key, p.message) for p in problems] == expected


@pytest.mark.parametrize(
    "item",
    [
        "not a mapping",
        {"name": "x"},
        {"sink_type": 5},
        {"sink_type": "test_db", "sink_config": "s"},
    ],
    ids=["scalar", "no sink_type", "sink_type not a string", "sink_config not a mapping"],
)
def test_malformed_items_are_left_to_the_models(item: Any) -> None:
    assert check_destination_items([item]) == []


def test_registered_removes_its_types_afterwards() -> None:
    with registered(APPEND_ONLY):
        assert get_sink_type("test_events") is APPEND_ONLY

    assert get_sink_type("test_events") is None


def test_registered_twice_fails_and_keeps_the_first() -> None:
    with pytest.raises(ValueError, match="registered twice"), registered(APPEND_ONLY, TEST_API):
        pass

    assert get_sink_type("test_events") is None
    assert get_sink_type("test_api") is TEST_API


class Bearer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["bearer"]
    token: str


class Basic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["basic"]
    username: str


class UnionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    auth: Annotated[Bearer | Basic, Field(discriminator="type")] | None = None
    size: int | str = 1


UNIONS = SinkType("test_unions", UnionConfig, frozenset(SYNC_MODES), not_built)
AT = "ingestion.destinations[0].sink_config"


@pytest.mark.parametrize(
    ("sink_config", "expected"),
    [
        (
            {"auth": {"type": "bearer", "tokn": "a"}},
            [
                (f"{AT}.auth.token", "required key is missing"),
                (f"{AT}.auth.tokn", "unknown key 'tokn'; did you mean 'token'?"),
            ],
        ),
        (
            {"auth": {"type": "bearr"}},
            [
                (
                    f"{AT}.auth.type",
                    "must be one of bearer, basic; got 'bearr'; did you mean 'bearer'?",
                )
            ],
        ),
        ({"auth": {"token": "t"}}, [(f"{AT}.auth.type", "required key is missing")]),
        ({"size": [1]}, [(f"{AT}.size", "must be an integer or a string, got a list")]),
        ({"auth": {"type": "basic", "username": "${env:USER}"}}, []),
    ],
    ids=["member key wrong", "unknown tag", "no tag", "union of scalars", "reference in member"],
)
def test_union_errors_point_at_input_keys(
    sink_config: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    with registered(UNIONS):
        problems = check_destination_items([dest("u", "test_unions", sink_config=sink_config)])

    assert [(p.key, p.message) for p in problems] == expected


@pytest.mark.parametrize(
    ("sink_type", "option", "config"),
    [
        ("hubspot", "id_property", {"object_type": "contacts", "access_token": "${env:T}"}),
        (
            "salesforce",
            "external_id_field",
            {
                "instance_url": "https://x.my.salesforce.com",
                "access_token": "${env:T}",
                "sobject": "Contact",
            },
        ),
    ],
)
def test_crm_match_field_must_be_a_key_field_in_mirror_mode(
    sink_type: str, option: str, config: dict[str, Any]
) -> None:
    by_email = {**config, option: "Email"}
    items = [
        # mirror, matched on a field that is not the key: deletes could not be sent
        dest("a", sink_type, mode="mirror", primary_key=["id"], sink_config=by_email),
        # the key mapped to that field: fine
        dest(
            "b",
            sink_type,
            mode="mirror",
            primary_key=["mail"],
            field_mapping={"mail": "Email"},
            sink_config=by_email,
        ),
        # upsert never deletes: fine
        dest("c", sink_type, mode="upsert", primary_key=["id"], sink_config=by_email),
        # a composite key without the option: which field?
        dest("d", sink_type, mode="upsert", primary_key=["region", "id"], sink_config=config),
        # no primary_key: the table's identifier fields, judged when the sink is built
        dest("e", sink_type, mode="mirror", sink_config=by_email),
    ]
    problems = [(p.key, p.message) for p in check_destination_items(items)]
    assert [key for key, _ in problems] == [
        f"ingestion.destinations[0].sink_config.{option}",
        "ingestion.destinations[3].sink_config",
    ]
    assert "'Email' is not a key field (key fields: id)" in problems[0][1]
    assert "or use mode: upsert" in problems[0][1]
    assert f"the key has 2 columns, so set sink_config.{option}" in problems[1][1]
