"""The floe platform's plugin contract for moving data both ways.

`SinkConnector` is an opt-in ABC mixin beside `IngestionPlugin` (floe Epic 4G). The
names, fields, defaults and construction-time validation of `SinkConfig` and
`EgressResult` match `floe_core.plugins.sink` (floe-core 0.1.0a1), so a plugin written
against one works against the other. The platform detects the capability with
`isinstance(plugin, SinkConnector)`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

_IDENTIFIER = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_BATCH_SIZE = 100_000
MAX_CONNECTION_KEYS = 50


@dataclass
class SinkConfig:
    """Configuration of one reverse-ETL destination.

    `sink_type` names the destination type (see `list_available_sinks()`);
    `connection_config` holds its type-specific settings; `field_mapping` maps source
    columns to destination fields (unmapped columns are not sent); `retry_config` is
    the retry policy; `batch_size` cuts deliveries into batches (None: one batch).
    """

    sink_type: str
    connection_config: dict[str, Any] = field(default_factory=dict)
    field_mapping: dict[str, str] | None = None
    retry_config: dict[str, Any] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sink_type, str) or not self.sink_type.strip():
            raise ValueError("sink_type must be a non-empty string")
        if self.batch_size is not None:
            if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
                raise ValueError(f"batch_size must be an integer, got {self.batch_size!r}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if self.batch_size > MAX_BATCH_SIZE:
                raise ValueError(f"batch_size must be <= 100_000, got {self.batch_size}")
        if len(self.connection_config) > MAX_CONNECTION_KEYS:
            raise ValueError(
                f"connection_config has {len(self.connection_config)} keys, "
                f"max {MAX_CONNECTION_KEYS}"
            )
        if self.field_mapping is not None:
            for source, dest in self.field_mapping.items():
                if not isinstance(dest, str) or not _IDENTIFIER.fullmatch(dest):
                    raise ValueError(
                        f"field_mapping destination {dest!r} for source {source!r} must be "
                        "a valid identifier (letters, digits and underscores, not starting "
                        "with a digit)"
                    )


@dataclass
class EgressResult:
    """The delivery receipt of one `SinkConnector.write` call.

    `checksum` is `sha256:<hex>` over the delivered payload; `idempotency_key` is
    deterministic (the same change set gives the same key); `destination_record_ids`
    are the ids the destination returned, where it returns any.
    """

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
    """Pushes curated Gold-layer data to external destinations.

    An opt-in mixin: it requires nothing else, and plugins that move data both ways
    implement `IngestionPlugin` and `SinkConnector` together.
    """

    @abstractmethod
    def list_available_sinks(self) -> list[str]:
        """The sink types this connector can write to."""

    @abstractmethod
    def create_sink(self, config: SinkConfig) -> Any:
        """Validate `config`, check the destination answers, and return a sink object."""

    @abstractmethod
    def write(self, sink: Any, data: Any, **kwargs: Any) -> EgressResult:
        """Deliver `data` (a `pyarrow.Table`) to `sink` and return the receipt."""

    @abstractmethod
    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        """What change capture needs to read the Gold tables of `catalog_config`."""


@dataclass
class IngestionConfig:
    """Configuration of one ingestion pipeline (same fields as floe-core's)."""

    source_type: str
    source_config: dict[str, Any] = field(default_factory=dict)
    destination_table: str = ""
    write_mode: str = "append"
    schema_contract: str = "evolve"


@dataclass
class IngestionResult:
    """Result of one ingestion run (same fields as floe-core's)."""

    success: bool
    rows_loaded: int = 0
    bytes_written: int = 0
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class IngestionPlugin(ABC):
    """Loads data from a source into the lakehouse (floe-core's ingestion contract)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Plugin name, e.g. `dlt`."""

    @property
    @abstractmethod
    def version(self) -> str:
        """Plugin version (semver)."""

    @property
    @abstractmethod
    def floe_api_version(self) -> str:
        """The floe plugin API version implemented (X.Y)."""

    @property
    @abstractmethod
    def is_external(self) -> bool:
        """True when the tool runs as a separate service, False when in-process."""

    @abstractmethod
    def create_pipeline(self, config: IngestionConfig) -> Any:
        """Build a pipeline object from `config`, to be executed by `run`."""

    @abstractmethod
    def run(self, pipeline: Any, **kwargs: Any) -> IngestionResult:
        """Execute `pipeline` and report what was loaded."""

    @abstractmethod
    def get_destination_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        """Where ingestion writes: the lakehouse catalog settings, without secrets."""
