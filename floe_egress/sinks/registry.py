"""The sink types floe-egress knows, what each accepts, and how each is built."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from floe_egress.config.models import Destination, RateLimit, RetryConfig, SyncMode
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


_REGISTRY: dict[str, SinkType] = {}


def register(sink_type: SinkType) -> SinkType:
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
    sink_types()  # load the built-ins first: an early registration would otherwise hide them
    added: list[str] = []
    try:
        for sink_type in types:
            register(sink_type)
            added.append(sink_type.name)
        yield types
    finally:
        for name in added:
            unregister(name)


_builtins_loaded = False


def _load_builtin() -> None:
    # Importing a sink module registers its type; kept lazy (and dlt is imported only
    # when a destination is built) so `floe-egress validate` stays fast.
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


_BUILTIN_MODULES: tuple[str, ...] = (
    "floe_egress.sinks.http.rest_api",
    "floe_egress.sinks.http.hubspot",
    "floe_egress.sinks.http.salesforce",
    "floe_egress.sinks.database",
)


def sink_types() -> dict[str, SinkType]:
    _load_builtin()
    return dict(_REGISTRY)


def get_sink_type(name: str) -> SinkType | None:
    return sink_types().get(name)
