"""The one entry point that turns a floe.yaml (or compiled artifacts) into a validated spec.

Validation collects every problem before it raises: the models' own errors, unique
names, each destination against its sink type, and secret references. Config comes
before sinks in the data flow and does not know the sink types: the check against them
is handed in as `sink_check` (`floe_egress.spec` hands in the sink registry's).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from floe_egress.config import platform
from floe_egress.config.checks import duplicate_names, secret_problems, server_problems
from floe_egress.config.messages import problems_from_errors
from floe_egress.config.models import DUPLICATE_NAME_ERROR, FloeSpec
from floe_egress.config.problems import (
    ConfigValidationError,
    KeyPath,
    Problem,
    describe,
)
from floe_egress.config.secrets import LITERAL_MASK_LENGTH, literal_secrets, mask_values
from floe_egress.config.yamlsource import LineMap, YamlProblem, parse_yaml
from floe_egress.errors import ConfigError

CONFIG_ENV_VAR = "FLOE_EGRESS_CONFIG"
MANIFEST_ENV_VAR = "FLOE_EGRESS_MANIFEST"
"""The platform manifest for a floe platform spec (`--manifest` sets it for the process,
so a daemon's reloads read the same one)."""
COMPILED_KIND = "CompiledArtifacts"
SUPPORTED_MAJOR = 1

SinkCheck = Callable[[list[Any]], list[Problem]]
"""The problems of the raw destination mappings against their sink types."""


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated spec and where it came from."""

    spec: FloeSpec
    source: Path
    sha256: str
    """Of the file's bytes, as read."""
    format: Literal["yaml", "compiled"] = "yaml"
    lines: LineMap = field(default_factory=LineMap)
    literal_secrets: tuple[Problem, ...] = ()
    """Secrets written as plain text (warnings: `validate` prints them, `compile` refuses
    to write them into artifacts). Their values are masked in logs and errors."""

    @property
    def path(self) -> Path:
        return self.source

    def line_of(self, key_path: KeyPath) -> int | None:
        """The line of a key (or of its nearest parent present in the file); None for JSON."""
        return self.lines.line_of(key_path)


def default_config_path() -> Path:
    """`$FLOE_EGRESS_CONFIG` when set, else `./floe.yaml`."""
    return Path(os.environ.get(CONFIG_ENV_VAR) or "floe.yaml")


def load_config(
    path: Path | str | None = None,
    *,
    check_secrets: bool = False,
    environ: Mapping[str, str] | None = None,
    sink_check: SinkCheck | None = None,
    secret_fields: platform.SecretFields | None = None,
    manifest: Path | str | None = None,
) -> LoadedConfig:
    """Load and validate floe.yaml, a floe platform spec (config/platform.py) or compiled
    artifacts (told apart by content).

    Raises `ConfigValidationError` listing every problem, sorted by line, or
    `ConfigError` when the file cannot be read. With `check_secrets`, every secret
    reference must resolve in this environment (`validate`, `run`); without it they are
    only checked for form (`compile`, `plan`). Without `sink_check`, destinations are
    not checked against their sink types (`floe_egress.spec.load_spec` hands one in).
    """
    source = Path(path) if path is not None else default_config_path()
    label = str(path) if path is not None else str(source)
    data = _read(source)
    sha256 = hashlib.sha256(data).hexdigest()
    text = _decode(data, label)
    artifacts = _compiled_artifacts(text)
    if artifacts is not None:
        spec = _validate_compiled(artifacts, label, check_secrets, environ, sink_check)
        literals = _literal_secrets(artifacts.get("spec"), LineMap(), ("spec",))
        return LoadedConfig(spec, source, sha256, "compiled", literal_secrets=literals)
    try:
        document = parse_yaml(text)
    except YamlProblem as exc:
        raise ConfigValidationError(label, [exc.problem]) from None
    _require_mapping(document.data, label)
    if platform.is_platform_spec(document.data):
        translated, settings_problems = _platform_document(
            document, source, label, secret_fields, environ, manifest, check_secrets
        )
        validated, problems = validate_document(
            translated, check_secrets=check_secrets, environ=environ, sink_check=sink_check
        )
        problems = [*settings_problems, *(_in_source(p, document.lines) for p in problems)]
        # on what the spec means: `${secret:KEY}` is a reference there, not plain text
        literals = tuple(
            _in_source(p, document.lines) for p in _literal_secrets(translated, LineMap())
        )
        if validated is None or problems:
            raise ConfigValidationError(label, problems)
        return LoadedConfig(validated, source, sha256, "yaml", document.lines, literals)
    validated, problems = validate_document(
        document.data, check_secrets=check_secrets, environ=environ, sink_check=sink_check
    )
    problems = [
        p if p.line is not None else Problem(p.path, p.message, document.lines.line_of(p.path))
        for p in problems
    ]
    literals = _literal_secrets(document.data, document.lines)
    if validated is None or problems:
        raise ConfigValidationError(label, problems)
    return LoadedConfig(validated, source, sha256, "yaml", document.lines, literals)


def _in_source(problem: Problem, lines: LineMap) -> Problem:
    where = platform.source_path(problem.path)
    return Problem(where, problem.message, lines.line_of(where))


def _platform_document(
    document: Any,
    source: Path,
    label: str,
    secret_fields: platform.SecretFields | None,
    environ: Mapping[str, str] | None,
    manifest_arg: Path | str | None,
    check_secrets: bool = False,
) -> tuple[dict[str, Any], list[Problem]]:
    """The floe.yaml a floe platform spec means, with its manifest's settings; raises
    ConfigValidationError for what floe's own rules refuse (at the spec's lines, or the
    manifest's)."""
    raw = document.data
    refused = platform.floe_rules(raw) or _floe_core_problems(raw)
    if refused:
        problems = [
            p if p.line is not None else Problem(p.path, p.message, document.lines.line_of(p.path))
            for p in _unique(refused)
        ]
        raise ConfigValidationError(label, problems)
    env = os.environ if environ is None else environ
    given = manifest_arg or env.get(MANIFEST_ENV_VAR)
    manifest = Path(given) if given else platform.manifest_path(raw, source)
    if manifest is None:
        reference = (raw.get("platform") or {}).get("manifest")
        if isinstance(reference, str) and "://" in reference:
            line = document.lines.line_of(("platform", "manifest"))
            message = (
                f"{reference!r}: floe-egress reads a manifest from a file, not a registry; "
                "pass --manifest PATH"
            )
            raise ConfigValidationError(label, [Problem(("platform", "manifest"), message, line)])
        return platform.translate(raw, {}, secret_fields or _no_fields), []
    settings = _manifest_settings(manifest, check_secrets, environ)
    return platform.translate(raw, settings, secret_fields or _no_fields), []


def _no_fields(sink_type: str) -> tuple[str, ...]:
    return ()


def _manifest_settings(
    path: Path, check_secrets: bool, environ: Mapping[str, str] | None
) -> dict[str, Any]:
    """floe-egress's settings in a platform manifest, checked as floe.yaml's catalog,
    state and server are (their secret references too): problems at the manifest's own
    lines."""
    label = str(path)
    if not path.is_file():
        raise ConfigError(
            f"no platform manifest at {path} (from --manifest, ${MANIFEST_ENV_VAR} or the "
            "spec's platform.manifest)"
        )
    text = _decode(_read(path), label)
    try:
        manifest = parse_yaml(text)
    except YamlProblem as exc:
        raise ConfigValidationError(label, [exc.problem]) from None
    if not isinstance(manifest.data, dict):
        raise ConfigValidationError(label, [Problem((), "a manifest must be a mapping", 1)])
    settings, problems = platform.plugin_settings(manifest.data)
    probe = {"apiVersion": "floe.dev/v1", "kind": "FloeSpec", "metadata": {"name": "m"}}
    _, found = validate_document(
        {**probe, **settings}, check_secrets=check_secrets, environ=environ
    )
    at = ("plugins", "ingestion", "config")
    problems += [Problem((*at, *p.path), p.message) for p in found]
    if problems:
        located = [Problem(p.path, p.message, manifest.lines.line_of(p.path)) for p in problems]
        raise ConfigValidationError(label, located)
    return settings


def _floe_core_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """floe-core's own FloeSpec on the document, when floe-core is installed."""
    try:
        from floe_core.schemas.floe_spec import FloeSpec as PlatformSpec
    except ImportError:
        return []
    try:
        PlatformSpec.model_validate(dict(raw))
    except ValidationError as exc:
        return [Problem(tuple(e["loc"]), f"floe-core: {e['msg']}") for e in exc.errors()]
    return []


LITERAL_SECRET = (
    "a secret written as plain text: it would be copied into compiled artifacts and is "
    "readable by anyone who can read this file; use ${env:NAME}, ${credential:NAME} or "
    "${secret:SECRET/KEY} (in a floe platform spec: ${secret:KEY})"
)


def _literal_secrets(raw: Any, lines: LineMap, prefix: KeyPath = ()) -> tuple[Problem, ...]:
    found = literal_secrets(raw, prefix)
    mask_values([value for _, value in found], min_length=LITERAL_MASK_LENGTH)
    return tuple(
        Problem(path, LITERAL_SECRET, lines.line_of(path[len(prefix) :])) for path, _ in found
    )


def validate_document(
    raw: Mapping[str, Any],
    *,
    check_secrets: bool = False,
    environ: Mapping[str, str] | None = None,
    sink_check: SinkCheck | None = None,
) -> tuple[FloeSpec | None, list[Problem]]:
    """The spec (None when the models reject it) and every problem found, without lines;
    with `sink_check`, the destinations' problems against their sink types too."""
    spec: FloeSpec | None = None
    problems: list[Problem] = []
    try:
        spec = FloeSpec.model_validate(raw)
    except ValidationError as exc:
        # duplicate_names() reports these at the repeated name, with the first one's index.
        kept = [e for e in exc.errors() if e["type"] != DUPLICATE_NAME_ERROR]
        problems += problems_from_errors(kept, FloeSpec, raw)
    problems += duplicate_names(raw)
    reported = {p.path for p in problems}
    problems += [p for p in server_problems(raw) if p.path not in reported]
    if sink_check is not None:
        problems += sink_check(_destination_items(raw))
    reported = {p.path for p in problems}
    problems += [
        p
        for p in secret_problems(raw, check_resolvable=check_secrets, environ=environ)
        if not any(p.path[:end] in reported for end in range(1, len(p.path) + 1))
    ]
    return (spec if not problems else None), _unique(problems)


def _destination_items(raw: Mapping[str, Any]) -> list[Any]:
    ingestion = raw.get("ingestion")
    items = ingestion.get("destinations") if isinstance(ingestion, Mapping) else None
    return items if isinstance(items, list) else []


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _read(source: Path) -> bytes:
    try:
        return source.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {source}: pass --config PATH or set {CONFIG_ENV_VAR}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{source} is a directory, not a floe.yaml file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = Problem((), f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", line)
        raise ConfigValidationError(label, [problem]) from None


def _require_mapping(data: Any, label: str) -> None:
    expected = "a mapping with apiVersion, kind, metadata and ingestion"
    if data is None:
        raise ConfigValidationError(label, [Problem((), f"the file is empty: expected {expected}")])
    if not isinstance(data, dict):
        message = f"the top level must be {expected}, got {describe(data)}"
        raise ConfigValidationError(label, [Problem((), message, 1)])


def _compiled_artifacts(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None  # a YAML flow mapping, or broken JSON: the YAML parser says where
    if isinstance(data, dict) and data.get("kind") == COMPILED_KIND:
        return data
    return None


def _validate_compiled(
    artifacts: dict[str, Any],
    label: str,
    check_secrets: bool,
    environ: Mapping[str, str] | None,
    sink_check: SinkCheck | None,
) -> FloeSpec:
    version = artifacts.get("version")
    major = str(version).split(".", 1)[0] if isinstance(version, str) else None
    if major != str(SUPPORTED_MAJOR):
        from floe_egress import __version__

        message = (
            f"compiled artifacts format {describe(version)} is not supported: floe-egress "
            f"{__version__} reads format {SUPPORTED_MAJOR}.x; recompile floe.yaml with "
            "`floe-egress compile`"
        )
        raise ConfigValidationError(label, [Problem(("version",), message)])
    raw = artifacts.get("spec")
    if not isinstance(raw, dict):
        message = (
            "required key is missing" if raw is None else f"must be a mapping, got {describe(raw)}"
        )
        raise ConfigValidationError(label, [Problem(("spec",), message)])
    spec, problems = validate_document(
        raw, check_secrets=check_secrets, environ=environ, sink_check=sink_check
    )
    if spec is None or problems:
        raise ConfigValidationError(label, [p.with_prefix(("spec",)) for p in problems])
    return spec


__all__ = [
    "CONFIG_ENV_VAR",
    "LoadedConfig",
    "SinkCheck",
    "default_config_path",
    "load_config",
    "validate_document",
]
