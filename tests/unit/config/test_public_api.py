"""floe_egress.config exports exactly what its __all__ declares."""

from __future__ import annotations

import inspect

import floe_egress.config as config


def test_entry_points_floe_egress_spec_calls() -> None:
    assert list(inspect.signature(config.load_config).parameters) == [
        "path",
        "check_secrets",
        "environ",
        "sink_check",
        "secret_fields",
        "manifest",
    ]
    assert list(inspect.signature(config.compile_spec).parameters) == [
        "loaded",
        "now",
        "batch_size_of",
    ]
    assert list(inspect.signature(config.json_schema).parameters) == ["sink_configs"]
