"""floe_egress.config exports exactly what its __all__ declares."""

from __future__ import annotations

import inspect

import floe_egress.config as config


def test_all_names_exist() -> None:
    missing = [name for name in config.__all__ if not hasattr(config, name)]

    assert missing == []


def test_public_members_are_declared() -> None:
    public = {
        name
        for name, value in vars(config).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }

    assert public == set(config.__all__)


def test_entry_points_floe_egress_spec_calls() -> None:
    assert list(inspect.signature(config.load_config).parameters) == [
        "path",
        "check_secrets",
        "environ",
        "sink_check",
    ]
    assert list(inspect.signature(config.compile_spec).parameters) == [
        "loaded",
        "now",
        "batch_size_of",
    ]
    assert list(inspect.signature(config.json_schema).parameters) == ["sink_configs"]
