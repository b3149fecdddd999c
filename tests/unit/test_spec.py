"""floe_egress.spec: config's loader, schema and compiler with the sink registry handed in."""

from __future__ import annotations

import inspect

import floe_egress.spec as spec


def test_public_members_are_declared() -> None:
    public = {
        name
        for name, value in vars(spec).items()
        if inspect.isfunction(value)
        and value.__module__ == spec.__name__
        and not name.startswith("_")
    }

    assert public == set(spec.__all__)


def test_entry_points_the_cli_and_the_daemon_call() -> None:
    assert list(inspect.signature(spec.load_spec).parameters) == [
        "path",
        "check_secrets",
        "environ",
    ]
    assert list(inspect.signature(spec.compile_artifacts).parameters) == ["loaded", "now"]
    assert list(inspect.signature(spec.spec_schema).parameters) == []
