"""The sink types floe-egress knows, what each accepts, and how each is built.

The built-in types are known by name before their modules are imported: asking for one
type imports only its module, so validating a floe.yaml imports the sink modules it
names and no others (no aiohttp for a database destination). Listing the names imports
nothing; `sink_types()` imports them all.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from floe_egress.config.models import Destination, RateLimit, RetryConfig, SyncMode

if TYPE_CHECKING:  # sinks.base imports pyarrow, which the CLI loads only when it needs it
    from floe_egress.sinks.base import Sink


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """Everything a sink type needs to build one destination; secrets already resolved."""

    destination: str
    sink_config: BaseModel
    """The sink type's own validated config model, secret references resolved."""
    mode: SyncMode
    key: tuple[str, ...]
    field_mapping: dict[str, str] | None
    batch_size: int | None
    rate_limit: RateLimit | None
    retry: RetryConfig
    work_dir: Path
    """A private directory for this destination (dlt pipelines, temp files)."""
    allow_private_network: bool = False
    """HTTP sink types may connect to loopback and private addresses (addresses.py)."""
    handoff: Literal["direct", "dlt"] = "direct"
    """How an HTTP sink type hands each write to its requests: "direct" on the caller's
    event loop (the daemon and the CLI), or "dlt" through a dlt pipeline (the platform
    plugin); see sinks/http/handoff.py. Other sink types ignore it."""

    @classmethod
    def for_destination(
        cls,
        dest: Destination,
        sink_config: BaseModel,
        key: tuple[str, ...],
        work_dir: Path,
    ) -> BuildRequest:
        return cls(
            destination=dest.name,
            sink_config=sink_config,
            mode=dest.mode,
            key=key,
            field_mapping=dest.field_mapping,
            batch_size=dest.batch_size,
            rate_limit=dest.rate_limit,
            retry=dest.retry,
            work_dir=work_dir,
            allow_private_network=dest.allow_private_network,
        )


@dataclass(frozen=True, slots=True)
class SinkType:
    """One destination type: its config model, the sync modes it can do, its builder."""

    name: str
    config_model: type[BaseModel]
    modes: frozenset[str]
    build: Callable[[BuildRequest], Sink]
    description: str = ""
    default_batch_size: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)
    check_item: Callable[[Mapping[str, Any]], list[tuple[tuple[str | int, ...], str]]] | None = None
    """Checks across a destination's keys (mode, primary_key, field_mapping, sink_config)
    on the raw floe.yaml mapping, run by `validate`: (key path under the destination,
    message) for each problem. Values it cannot judge (absent, secret references) pass."""
    warn_item: Callable[[Mapping[str, Any]], list[tuple[tuple[str | int, ...], str]]] | None = None
    """Like `check_item`, for what `validate` prints as warnings (the file stays valid)."""


_REGISTRY: dict[str, SinkType] = {}

_BUILTIN_MODULES: dict[str, str] = {
    "rest_api": "floe_egress.sinks.http.rest_api",
    "hubspot": "floe_egress.sinks.http.hubspot",
    "salesforce": "floe_egress.sinks.http.salesforce",
    "postgres": "floe_egress.sinks.database",
    "mysql": "floe_egress.sinks.database",
    "sqlite": "floe_egress.sinks.database",
    "duckdb": "floe_egress.sinks.database",
}
"""Each built-in type and the module whose import registers it (dlt is imported only
when a destination is built)."""


def register(sink_type: SinkType) -> SinkType:
    """Add a sink type; a name already taken, by a built-in too, is an error."""
    builtin = _BUILTIN_MODULES.get(sink_type.name)
    if builtin is not None and builtin not in sys.modules:
        # Load the built-in first, so that it clashes here rather than when it is imported.
        importlib.import_module(builtin)
    if sink_type.name in _REGISTRY:
        raise ValueError(f"sink type {sink_type.name!r} is registered twice")
    _REGISTRY[sink_type.name] = sink_type
    return sink_type


def unregister(name: str) -> None:
    """Forget a sink type (plugins being unloaded, tests); unknown names are ignored."""
    _REGISTRY.pop(name, None)


@contextmanager
def registered(*types: SinkType) -> Iterator[tuple[SinkType, ...]]:
    """Register sink types for the duration of a block, then remove them again."""
    added: list[str] = []
    try:
        for sink_type in types:
            register(sink_type)
            added.append(sink_type.name)
        yield types
    finally:
        for name in added:
            unregister(name)


def sink_type_names() -> list[str]:
    """The names of every sink type, sorted, imported or not (for messages)."""
    waiting = {name for name, module in _BUILTIN_MODULES.items() if module not in sys.modules}
    return sorted(waiting | _REGISTRY.keys())


def sink_types() -> dict[str, SinkType]:
    """Every sink type by name, the built-ins imported (`floe-egress sinks`, the schema)."""
    for module in dict.fromkeys(_BUILTIN_MODULES.values()):
        importlib.import_module(module)
    return dict(_REGISTRY)


def get_sink_type(name: str) -> SinkType | None:
    """The sink type of that name, importing only its module; None for an unknown name."""
    builtin = _BUILTIN_MODULES.get(name)
    if builtin is not None:
        importlib.import_module(builtin)
    return _REGISTRY.get(name)


def default_batch_size(name: str) -> int | None:
    """The sink type's own batch size, or None for an unknown name."""
    found = get_sink_type(name)
    return found.default_batch_size if found is not None else None
