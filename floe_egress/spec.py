"""floe.yaml as the sink types judge it: config's loader, schema and compiler, with what
the sink registry knows handed in.

Config comes before sinks in the data flow and imports nothing from them; this module
sits above both, and the CLI, the daemon and the demo load floe.yaml through it.
Loading imports only the sink modules of the types the file names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from floe_egress.config import LoadedConfig, compile_spec, json_schema, load_config
from floe_egress.config.platform import FORBIDDEN_FIELDS
from floe_egress.config.problems import Problem
from floe_egress.sinks.checks import check_destination_items, destination_warnings
from floe_egress.sinks.registry import default_batch_size, get_sink_type, sink_types


def load_spec(
    path: Path | str | None = None,
    *,
    check_secrets: bool = False,
    environ: Mapping[str, str] | None = None,
    manifest: Path | str | None = None,
) -> LoadedConfig:
    """`load_config` with each destination checked against its sink type (compiled
    artifacts too): raises `ConfigValidationError` listing every problem."""
    return load_config(
        path,
        check_secrets=check_secrets,
        environ=environ,
        sink_check=check_destination_items,
        secret_fields=platform_secret_fields,
        manifest=manifest,
    )


def platform_secret_fields(sink_type: str) -> tuple[str, ...]:
    """The settings `sink_type` requires that a floe platform spec may not write (a
    database's `credentials`): they come from the destination's Secret."""
    found = get_sink_type(sink_type)
    if found is None:
        return ()
    fields = found.config_model.model_fields
    return tuple(n for n, f in fields.items() if f.is_required() and n in FORBIDDEN_FIELDS)


def spec_warnings(loaded: LoadedConfig) -> list[Problem]:
    """What `validate` prints as warnings, with lines: secrets written as plain text, and
    what the sink types warn about (credentials over plain http://)."""
    prefix = ("spec",) if loaded.format == "compiled" else ()
    sinks = [
        Problem((*prefix, *p.path), p.message, loaded.line_of(p.path))
        for p in destination_warnings(loaded.spec)
    ]
    return [*loaded.literal_secrets, *sinks]


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of floe.yaml, each `sink_config` checked against the config model
    of its `sink_type` (every type registered now: this imports all sink modules)."""
    return json_schema(sink_configs={name: t.config_model for name, t in sink_types().items()})


def compile_artifacts(loaded: LoadedConfig, *, now: datetime | None = None) -> dict[str, Any]:
    """`compile_spec` with each destination's batch size defaulted by its sink type."""
    return compile_spec(loaded, now=now, batch_size_of=default_batch_size)


__all__ = [
    "compile_artifacts",
    "load_spec",
    "platform_secret_fields",
    "spec_schema",
    "spec_warnings",
]
