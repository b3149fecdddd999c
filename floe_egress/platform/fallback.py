"""floe-core 0.1.0a1's plugin contract, for installs without floe-core.

When floe-core is installed, `floe_egress.platform.contract` re-exports floe-core's own
classes and nothing here is used. Without it, these stand in for them: the same names,
fields, defaults, methods and construction-time validation as `floe_core.plugin_metadata`,
`floe_core.plugins.ingestion` and `floe_core.plugins.sink` of floe-core 0.1.0a1, quirks
included (a `SinkConfig(batch_size=1.5)` is accepted here as there; floe-egress's own
stricter checks run in its methods, see `contract.check_sink_config`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel


class HealthState(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass
class HealthStatus:
    state: HealthState
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class PluginMetadata(ABC):
    """The base of every floe plugin: identity, configuration and lifecycle."""

    def __init__(self) -> None:
        self._config: BaseModel | None = None

    def configure(self, config: BaseModel | None) -> None:
        self._config = config

    @property
    def is_configured(self) -> bool:
        return self._config is not None

    @property
    @abstractmethod
    def name(self) -> str:
        """Plugin name."""

    @property
    @abstractmethod
    def version(self) -> str:
        """Plugin version (X.Y.Z)."""

    @property
    @abstractmethod
    def floe_api_version(self) -> str:
        """Required floe API version (X.Y)."""

    @property
    def description(self) -> str:
        return ""

    @property
    def dependencies(self) -> list[str]:
        return []

    @property
    def tracer_name(self) -> str | None:
        return None

    def get_config_schema(self) -> type[BaseModel] | None:
        return None

    def health_check(self, timeout: float | None = None) -> HealthStatus:
        return HealthStatus(state=HealthState.HEALTHY)

    def startup(self) -> None:  # noqa: B027 (a hook, empty by default)
        """Called when the plugin is activated."""

    def shutdown(self) -> None:  # noqa: B027
        """Called when the platform shuts down."""


class SupportsRuntimeBindingModelDump(Protocol):
    def model_dump(
        self, *, mode: Literal["json", "python"] | str = "python"
    ) -> Mapping[str, Any]: ...


RuntimeBinding = Mapping[str, Any] | SupportsRuntimeBindingModelDump


@dataclass
class IngestionConfig:
    source_type: str
    source_config: dict[str, Any] = field(default_factory=dict)
    destination_table: str = ""
    write_mode: str = "append"
    schema_contract: str = "evolve"
    runtime_binding: RuntimeBinding | None = None


@dataclass
class IngestionResult:
    success: bool
    rows_loaded: int = 0
    bytes_written: int = 0
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class IngestionPlugin(PluginMetadata):
    """Loads data from a source into the lakehouse."""

    @property
    @abstractmethod
    def is_external(self) -> bool:
        """True when the tool runs as a separate service."""

    @abstractmethod
    def create_pipeline(self, config: IngestionConfig) -> Any:
        """A pipeline object for `run`."""

    @abstractmethod
    def run(self, pipeline: Any, **kwargs: Any) -> IngestionResult:
        """Execute `pipeline`."""

    def get_composition_requirements(self) -> Any:
        return None

    def build_deployment_binding(self, *, storage: Any, catalog: Any) -> Any:
        raise NotImplementedError(
            f"{self.name} does not implement ingestion deployment binding generation"
        )


@dataclass
class SinkConfig:
    sink_type: str
    connection_config: dict[str, Any] = field(default_factory=dict)
    field_mapping: dict[str, str] | None = None
    retry_config: dict[str, Any] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not self.sink_type or not self.sink_type.strip():
            raise ValueError("sink_type must be a non-empty string")
        if self.batch_size is not None:
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if self.batch_size > 100_000:
                raise ValueError(f"batch_size must be <= 100_000, got {self.batch_size}")
        if len(self.connection_config) > 50:
            raise ValueError(f"connection_config has {len(self.connection_config)} keys, max 50")
        if self.field_mapping is not None:
            identifier_pattern = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
            for source, dest in self.field_mapping.items():
                if not identifier_pattern.match(dest):
                    raise ValueError(
                        f"field_mapping destination '{dest}' for source "
                        f"'{source}' must be a valid identifier "
                        "(alphanumeric + underscore)"
                    )


@dataclass
class EgressResult:
    success: bool
    rows_delivered: int = 0
    bytes_transmitted: int = 0
    duration_seconds: float = 0.0
    checksum: str = ""
    delivery_timestamp: str = ""
    idempotency_key: str = ""
    destination_record_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class SinkConnector(ABC):
    """Pushes curated Gold-layer data to external destinations (an opt-in mixin)."""

    @abstractmethod
    def list_available_sinks(self) -> list[str]:
        """The sink types this connector can write to."""

    @abstractmethod
    def create_sink(self, config: SinkConfig) -> Any:
        """A configured destination."""

    @abstractmethod
    def write(self, sink: Any, data: Any, **kwargs: Any) -> EgressResult:
        """Push `data` to `sink`."""

    @abstractmethod
    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        """How to read the Gold tables of `catalog_config`."""


__all__ = [
    "EgressResult",
    "HealthState",
    "HealthStatus",
    "IngestionConfig",
    "IngestionPlugin",
    "IngestionResult",
    "PluginMetadata",
    "RuntimeBinding",
    "SinkConfig",
    "SinkConnector",
]
