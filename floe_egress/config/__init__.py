"""Configuration: the floe.yaml models, loading and validation, secrets, compiled artifacts.

`floe_egress.spec` calls `load_config(path, check_secrets=..., sink_check=...)` (raises
`ConfigValidationError` listing every problem), `compile_spec(loaded, batch_size_of=...)`
and `json_schema(sink_configs=...)`, handing in what the sink types know: config comes
before sinks in the data flow and imports nothing from them. Sinks call `resolve(value)`
when they build a destination.
"""

from __future__ import annotations

from floe_egress.config.compiler import (
    ARTIFACT_VERSION,
    BatchSizeOf,
    compile_destination,
    compile_spec,
)
from floe_egress.config.loader import (
    CONFIG_ENV_VAR,
    LoadedConfig,
    SinkCheck,
    default_config_path,
    load_config,
    validate_document,
)
from floe_egress.config.models import Destination, FloeSpec
from floe_egress.config.problems import ConfigValidationError, KeyPath, Problem, format_path
from floe_egress.config.schema import json_schema
from floe_egress.config.secrets import (
    ResolvedSecret,
    SecretRef,
    find_references,
    redact,
    resolve,
)

__all__ = [
    "ARTIFACT_VERSION",
    "CONFIG_ENV_VAR",
    "BatchSizeOf",
    "ConfigValidationError",
    "Destination",
    "FloeSpec",
    "KeyPath",
    "LoadedConfig",
    "Problem",
    "ResolvedSecret",
    "SecretRef",
    "SinkCheck",
    "compile_destination",
    "compile_spec",
    "default_config_path",
    "find_references",
    "format_path",
    "json_schema",
    "load_config",
    "redact",
    "resolve",
    "validate_document",
]
