"""A resolvable secret's value appears in no message, repr or artifact floe-egress produces."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from floe_egress.config import ConfigValidationError
from floe_egress.spec import compile_artifacts, load_spec
from tests.unit.config.conftest import BASE_YAML, DB_URL_VALUE, TOKEN_VALUE, edit

VALUES = [TOKEN_VALUE, DB_URL_VALUE, "quokka-91b2"]


@pytest.mark.usefixtures("secrets_env")
def test_problems_never_show_secret_values(write_config: Callable[[str], Path]) -> None:
    text = edit(BASE_YAML, "port: 8686", "port: abc")
    text = edit(text, "${env:FLOE_TEST_TOKEN}", "${env:FLOE_TEST_TOKEN} ${env:FLOE_TEST_MISSING}")
    text = edit(text, "        table: customers", "        table: customers\n        port: no")

    with pytest.raises(ConfigValidationError) as info:
        load_spec(write_config(text), check_secrets=True)

    message = str(info.value)
    assert len(info.value.problems) == 3
    for value in VALUES:
        assert value not in message
        assert value not in repr(info.value.problems)


@pytest.mark.usefixtures("secrets_env")
def test_loaded_spec_and_artifacts_never_hold_secret_values(
    write_config: Callable[[str], Path],
) -> None:
    loaded = load_spec(write_config(BASE_YAML), check_secrets=True)
    artifacts = json.dumps(compile_artifacts(loaded))

    for value in VALUES:
        assert value not in artifacts
        assert value not in repr(loaded)
        assert value not in loaded.spec.model_dump_json()
