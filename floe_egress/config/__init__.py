"""Configuration: the floe.yaml models, loading and validation, secrets, compiled artifacts.

The CLI calls `load_config(path, check_secrets=...)` (raises `ConfigValidationError`
listing every problem), `compile_spec(loaded)` and `json_schema()`; sinks call
`resolve(value)` when they build a destination.
"""

from __future__ import annotations

from floe_egress.config.compiler import ARTIFACT_VERSION, compile_destination, compile_spec
from floe_egress.config.loader import (
    CONFIG_ENV_VAR,
    LoadedConfig,
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
    "ConfigValidationError",
    "Destination",
    "FloeSpec",
    "KeyPath",
    "LoadedConfig",
    "Problem",
    "ResolvedSecret",
    "SecretRef",
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
