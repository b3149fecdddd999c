"""floe's own configuration, read as the floe platform writes it.

A floe platform spec (`floe_core.schemas.FloeSpec`) keeps reverse-ETL destinations at
the top level (`destinations:`: `name`, `sink_type`, `connection_secret_ref`,
`source_table`, `config`, `field_mapping`, `batch_size`) and forbids environment fields
(`credentials`, `password`, `token`, `host`, `port`, `database`, `schema`, `endpoint`,
... anywhere: floe's rule FR-014). floe-egress's own settings (catalog, state, server)
come from the platform manifest's `plugins.ingestion` (type `floe-egress`) `config`.

Both compile to the same internal model: each destination's `config` carries
floe-egress's per-destination settings (`mode`, `primary_key`, `ref`, `schedule`,
`rate_limit`, `retry`, a non-secret `sink_config`, ...). Its secrets come from the
Kubernetes Secret named in `connection_secret_ref`: inside `config.sink_config`,
`${secret:KEY}` is that Secret's key KEY (`${secret:SECRET/KEY}` in floe.yaml terms),
and a setting the sink type requires but floe forbids writing (a database's
`credentials`) is that Secret's key of the same name.

Problems are reported at their place in the floe spec (`destinations[0].config.mode`),
with its line numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from floe_egress.config.problems import KeyPath, Problem
from floe_egress.config.secrets import find_references

FORBIDDEN_FIELDS = frozenset(
    {
        "database",
        "schema",
        "host",
        "port",
        "username",
        "password",
        "credentials",
        "connection_string",
        "endpoint",
        "access_key",
        "secret_key",
        "token",
        "api_key",
    }
)
"""floe-core 0.1.0a1's FORBIDDEN_ENVIRONMENT_FIELDS: keys a floe spec may not hold."""

PLUGIN_TYPE = "floe-egress"
DIRECT_FIELDS = ("name", "sink_type", "source_table", "field_mapping", "batch_size")
"""DestinationConfig's own fields that are floe-egress destination fields as they are."""
SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$|^[a-z0-9]$")
_FLOE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_DESTINATION_KEYS = frozenset({*DIRECT_FIELDS, "connection_secret_ref", "config"})
_SHORT_SECRET = re.compile(r"\$\{secret:([^{}/]*)\}")
_DBT_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TOP_LEVEL = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "platform",
        "transforms",
        "schedule",
        "outputPorts",
        "output_ports",
        "destinations",
        "ingestion",
    }
)
"""floe-core 0.1.0a1 FloeSpec's top-level keys."""

SecretFields = Callable[[str], tuple[str, ...]]
"""Per sink type: the settings it requires that a floe spec may not write."""


def is_platform_spec(raw: Mapping[str, Any]) -> bool:
    """A floe platform spec, not floe-egress's own floe.yaml (which has none of these)."""
    return any(key in raw for key in ("destinations", "transforms", "platform"))


def floe_rules(raw: Mapping[str, Any]) -> list[Problem]:
    """What floe-core's FloeSpec refuses that floe-egress relies on: environment fields
    anywhere, the metadata's name and version, at least one transform, and each
    destination's own fields."""
    problems = [
        Problem(
            path,
            "an environment field is not allowed in a floe spec (FR-014): put it in "
            "the destination's Secret (connection_secret_ref) or the platform manifest",
        )
        for path in _forbidden(raw, ())
    ]
    if raw.get("apiVersion") != "floe.dev/v1":
        problems.append(Problem(("apiVersion",), "must be floe.dev/v1"))
    if raw.get("kind") != "FloeSpec":
        problems.append(Problem(("kind",), "must be FloeSpec"))
    problems += [
        Problem((str(key),), f"is not a key of a floe spec ({', '.join(sorted(TOP_LEVEL))})")
        for key in raw
        if key not in TOP_LEVEL
    ]
    ingestion = raw.get("ingestion")
    if isinstance(ingestion, Mapping):
        problems += [
            Problem(
                ("ingestion", str(key)),
                "a floe spec's ingestion holds only sources; "
                "reverse-ETL destinations go under the top-level destinations",
            )
            for key in ingestion
            if key != "sources"
        ]
    metadata = raw.get("metadata")
    if not isinstance(metadata, Mapping):
        problems.append(Problem(("metadata",), "is required: name and version"))
    else:
        name, version = metadata.get("name"), metadata.get("version")
        if not isinstance(name, str) or not _FLOE_NAME.fullmatch(name) or len(name) > 63:
            problems.append(
                Problem(("metadata", "name"), "must match ^[a-z][a-z0-9-]*$ (at most 63)")
            )
        if not isinstance(version, str) or not _SEMVER.fullmatch(version):
            problems.append(Problem(("metadata", "version"), "must be a version like 1.0.0"))
    transforms = raw.get("transforms")
    if not isinstance(transforms, list) or not transforms:
        problems.append(Problem(("transforms",), "a floe spec needs at least one transform"))
    else:
        for i, transform in enumerate(transforms):
            name = transform.get("name") if isinstance(transform, Mapping) else None
            if not isinstance(name, str) or not _DBT_NAME.fullmatch(name):
                problems.append(
                    Problem(
                        ("transforms", i, "name"),
                        "must be a dbt model name ([A-Za-z_][A-Za-z0-9_]*)",
                    )
                )
    destinations = raw.get("destinations")
    if destinations is None:
        return problems
    if not isinstance(destinations, list):
        return [*problems, Problem(("destinations",), "must be a list of destinations")]
    seen: set[str] = set()
    for i, dest in enumerate(destinations):
        at: KeyPath = ("destinations", i)
        if not isinstance(dest, Mapping):
            problems.append(Problem(at, "must be a mapping"))
            continue
        for key in dest:
            if key not in _DESTINATION_KEYS:
                problems.append(Problem((*at, str(key)), "is not a field of a floe destination"))
        for key in ("name", "sink_type", "connection_secret_ref"):
            if not isinstance(dest.get(key), str) or not dest.get(key):
                problems.append(Problem((*at, key), "is required (a non-empty string)"))
        ref = dest.get("connection_secret_ref")
        if isinstance(ref, str) and ref and (not SECRET_NAME.fullmatch(ref) or len(ref) > 253):
            problems.append(
                Problem((*at, "connection_secret_ref"), f"{ref!r} is not a Kubernetes Secret name")
            )
        config = dest.get("config")
        if config is not None and not isinstance(config, Mapping):
            problems.append(Problem((*at, "config"), "must be a mapping"))
        elif isinstance(config, Mapping):
            problems += [
                Problem(
                    (*at, "config", key),
                    f"is the destination's own field: write {key} beside config, not inside it",
                )
                for key in (*DIRECT_FIELDS, "connection_secret_ref")
                if key in config
            ]
            problems += [
                Problem(
                    path,
                    "a destination reads only its own Secret "
                    "(connection_secret_ref): write ${secret:KEY}",
                )
                for path in dict.fromkeys(
                    path
                    for path, ref in find_references(config, (*at, "config"))
                    if ref.kind == "secret"  # ${secret:SECRET/KEY}: the short form has no "/"
                )
            ]
        name = dest.get("name")
        if isinstance(name, str) and name in seen:
            problems.append(Problem((*at, "name"), f"{name!r} names two destinations"))
        seen.add(str(name))
    return problems


def _forbidden(value: Any, path: KeyPath) -> list[KeyPath]:
    found: list[KeyPath] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = (*path, str(key))
            if str(key).lower() in FORBIDDEN_FIELDS:
                found.append(here)
            found += _forbidden(item, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _forbidden(item, (*path, i))
    return found


def manifest_path(raw: Mapping[str, Any], spec_path: Path) -> Path | None:
    """The manifest the spec references (`platform.manifest`), if it is a local file."""
    platform = raw.get("platform")
    manifest = platform.get("manifest") if isinstance(platform, Mapping) else None
    if not isinstance(manifest, str) or not manifest:
        return None
    if "://" in manifest:
        return None
    path = Path(manifest).expanduser()
    return path if path.is_absolute() else spec_path.parent / path


def plugin_settings(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """floe-egress's settings in a platform manifest: `plugins.ingestion.config` when
    `plugins.ingestion.type` is floe-egress (catalog, state, server; work_dir ignored)."""
    plugins = manifest.get("plugins")
    ingestion = plugins.get("ingestion") if isinstance(plugins, Mapping) else None
    at: KeyPath = ("plugins", "ingestion")
    if not isinstance(ingestion, Mapping):
        return {}, [Problem(at, f"names no ingestion plugin: expected type {PLUGIN_TYPE}")]
    if ingestion.get("type") != PLUGIN_TYPE:
        found = ingestion.get("type")
        return {}, [Problem((*at, "type"), f"is {found!r}: floe-egress reads type {PLUGIN_TYPE}")]
    config = ingestion.get("config") or {}
    if not isinstance(config, Mapping):
        return {}, [Problem((*at, "config"), "must be a mapping")]
    allowed = {"catalog", "state", "server", "work_dir"}
    problems = [
        Problem((*at, "config", str(k)), f"is not a setting of {PLUGIN_TYPE}: {sorted(allowed)}")
        for k in config
        if k not in allowed
    ]
    return {k: v for k, v in config.items() if k in ("catalog", "state", "server")}, problems


def translate(
    raw: Mapping[str, Any], settings: Mapping[str, Any], secret_fields: SecretFields
) -> dict[str, Any]:
    """The floe-egress floe.yaml document a floe spec and its manifest's settings mean."""
    metadata = raw.get("metadata") or {}
    ours_meta = {"name": metadata.get("name")}
    if metadata.get("description"):
        ours_meta["description"] = metadata["description"]
    destinations = []
    for dest in raw.get("destinations") or []:
        ref = str(dest.get("connection_secret_ref") or "")
        ours = {k: dest[k] for k in DIRECT_FIELDS if dest.get(k) is not None}
        config = dict(dest.get("config") or {})
        sink_config = _with_secret(config.pop("sink_config", None) or {}, ref)
        if isinstance(sink_config, dict):
            for name in secret_fields(str(dest.get("sink_type") or "")):
                sink_config.setdefault(name, f"${{secret:{ref}/{name}}}")
        ours.update(config)
        ours["sink_config"] = sink_config
        destinations.append(ours)
    return {
        "apiVersion": "floe.dev/v1",
        "kind": "FloeSpec",
        "metadata": ours_meta,
        **dict(settings),
        "ingestion": {"destinations": destinations},
    }


def _with_secret(value: Any, ref: str) -> Any:
    """`${secret:KEY}` as the destination's own Secret's key: `${secret:REF/KEY}`."""
    if isinstance(value, str):
        return _SHORT_SECRET.sub(lambda m: f"${{secret:{ref}/{m.group(1)}}}", value)
    if isinstance(value, Mapping):
        return {k: _with_secret(v, ref) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_secret(v, ref) for v in value]
    return value


def source_path(path: KeyPath) -> KeyPath:
    """Where a problem of the translated document sits in the floe spec."""
    if len(path) >= 3 and path[:2] == ("ingestion", "destinations"):
        index, rest = path[2], path[3:]
        if not rest or rest[0] in DIRECT_FIELDS:
            return ("destinations", index, *rest)
        return ("destinations", index, "config", *rest)
    if path[:1] == ("ingestion",):
        return ("destinations",)
    if path[:1] in (("catalog",), ("state",), ("server",)):
        return ("platform", "manifest")
    return path


__all__ = [
    "FORBIDDEN_FIELDS",
    "PLUGIN_TYPE",
    "SecretFields",
    "floe_rules",
    "is_platform_spec",
    "manifest_path",
    "plugin_settings",
    "source_path",
    "translate",
]
