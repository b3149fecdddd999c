"""`FloeEgressPlugin`: the floe plugin that moves data both ways (IngestionPlugin +
SinkConnector), discovered by floe-core through the `floe.ingestion` entry point
`floe-egress`.

The `SinkConnector` methods are synchronous (the platform's contract). A sink's
rate limiter, HTTP sessions and dlt runs live on an event loop, so each `SinkHandle`
owns one loop on a private thread, and `write` submits work to it and waits. Async
callers use `write_async` on their own loop instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from floe_egress import __version__
from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import SYNC_MODES, RetryConfig
from floe_egress.config.secrets import redact, resolve
from floe_egress.errors import ConfigError, EgressError
from floe_egress.platform import ingest
from floe_egress.platform.contract import (
    EgressResult,
    HealthStatus,
    IngestionConfig,
    IngestionPlugin,
    IngestionResult,
    SinkConfig,
    SinkConnector,
    check_sink_config,
)
from floe_egress.platform.lifecycle import DEFAULT_WORK_DIR, Lifecycle, PluginSettings
from floe_egress.sinks.base import DeliveryReport, Sink, WriteContext
from floe_egress.sinks.delivery import Delivery, payload_digest
from floe_egress.sinks.mapping import filter_for_mode
from floe_egress.sinks.registry import BuildRequest, get_sink_type, sink_type_names

T = TypeVar("T")
_CATALOG_SECRET_KEYS = ("credential", "token", "password", "secret", "key")


class SinkHandle:
    """A built, checked destination plus the event loop its I/O lives on."""

    def __init__(
        self, sink: Sink, config: SinkConfig, request: BuildRequest, batch_size: int
    ) -> None:
        self.sink = sink
        self.config = config
        self.request = request
        self.batch_size = batch_size
        """The destination's batch size: `batch_size`, else the sink type's default."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.request.destination

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name=f"floe-sink-{self.name}", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        return future.result()

    def close(self) -> None:
        if self._loop is None:
            asyncio.run(self.sink.close())
            return
        self.call(self.sink.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop.close()
        self._loop = None


class FloeEgressPlugin(IngestionPlugin, SinkConnector):
    """floe-egress in the floe platform: Iceberg ingestion in (through dlt), reverse ETL
    out. floe-core's registry builds it without arguments, then `configure()`s it with
    `PluginSettings`; direct callers may pass the catalog and work directory instead."""

    def __init__(
        self, catalog_config: dict[str, Any] | None = None, *, work_dir: Path | None = None
    ) -> None:
        super().__init__()
        self._catalog_config = dict(catalog_config or {})
        self._work_dir = work_dir or DEFAULT_WORK_DIR
        self._settings = PluginSettings()
        self._lifecycle = Lifecycle()

    # --- PluginMetadata ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return "floe-egress"

    @property
    def version(self) -> str:
        return __version__

    @property
    def floe_api_version(self) -> str:
        return "1.0"

    @property
    def description(self) -> str:
        return (
            "Reverse ETL for the floe lakehouse: pushes exactly the rows of curated Iceberg "
            "tables that changed to REST/SaaS APIs and databases; loads Arrow tables and "
            "dlt sources into Iceberg"
        )

    @property
    def dependencies(self) -> list[str]:
        """Plugins it needs loaded first: none (it opens its catalog itself)."""
        return []

    @property
    def tracer_name(self) -> str:
        return "floe.ingestion.floe_egress"

    def get_config_schema(self) -> type[PluginSettings]:
        return PluginSettings

    def configure(self, config: Any) -> None:
        """Apply validated `PluginSettings` (or a mapping of them): the catalog, state,
        server and work directory the plugin's sinks and ingestion use."""
        settings = config if isinstance(config, PluginSettings) else None
        if settings is None and config is not None:
            dumped = config.model_dump() if hasattr(config, "model_dump") else config
            settings = PluginSettings.model_validate(dumped)
        super().configure(settings)
        if settings is None:
            return
        self._settings = settings
        if settings.catalog is not None:
            self._catalog_config = {"name": settings.catalog.name, **settings.catalog.properties()}
        if settings.work_dir is not None:
            self._work_dir = Path(settings.work_dir).expanduser()

    def startup(self) -> None:
        """Open the state store (migrated) and the catalog; idempotent."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self._lifecycle.start(self._settings, self._catalog_config)

    def shutdown(self) -> None:
        self._lifecycle.stop()

    def health_check(self, timeout: float | None = None) -> HealthStatus:
        """The state store and the catalog answer (within `timeout`, default 5 s)."""
        return self._lifecycle.health(timeout)

    # --- IngestionPlugin --------------------------------------------------------------

    @property
    def is_external(self) -> bool:
        return False

    def get_composition_requirements(self) -> Any:
        """What it needs of peer plugins: an Iceberg catalog; floe-core's
        `PluginRequirements` when floe-core is installed, else None."""
        try:
            from floe_core.composition.models import PluginRequirements, RequirementSet
        except ImportError:
            return None
        return PluginRequirements(
            plugin_type="ingestion",
            plugin_name=self.name,
            requirements=RequirementSet(
                credential_modes=["kubernetes-secret", "environment"],
                table_formats=["iceberg"],
            ),
        )

    def build_deployment_binding(self, *, storage: Any, catalog: Any) -> Any:
        """Not offered: floe-egress reads its catalog settings from its own plugin
        config (`PluginSettings.catalog`), not from composed bindings."""
        raise NotImplementedError(
            f"{self.name} takes its catalog from its plugin config "
            "(plugins.ingestion.config.catalog), not from a deployment binding"
        )

    def create_pipeline(self, config: IngestionConfig) -> ingest.IngestionPipeline:
        ingest.validate(config)
        from floe_egress.changes import open_catalog

        props = resolve(dict(self._catalog_config), path=("catalog",))
        name = str(props.pop("name", "gold"))
        return ingest.IngestionPipeline(
            catalog=open_catalog(name, props),
            source_type=config.source_type,
            source=config.source_config.get("data", config.source_config.get("source")),
            identifier=config.destination_table,
            write_mode=config.write_mode,
            primary_key=tuple(config.source_config.get("primary_key") or ()),
        )

    def run(self, pipeline: Any, **kwargs: Any) -> IngestionResult:
        if not isinstance(pipeline, ingest.IngestionPipeline):
            raise TypeError("run() takes the pipeline returned by create_pipeline()")
        try:
            return ingest.run(pipeline)
        except Exception as exc:  # a failed load is a result, as the contract says
            return IngestionResult(success=False, errors=[redact(f"{type(exc).__name__}: {exc}")])

    def get_destination_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        return self._public_catalog(catalog_config)

    # --- SinkConnector ----------------------------------------------------------------

    def list_available_sinks(self) -> list[str]:
        return sink_type_names()

    def create_sink(self, config: SinkConfig) -> SinkHandle:
        """Build and check a sink. `connection_config` holds the sink type's settings and
        the destination's `destination` (name), `mode`, `primary_key` and
        `allow_private_network`, as in floe.yaml. A config floe-core's own checks let
        through but floe-egress cannot use fails here first (`check_sink_config`)."""
        check_sink_config(config)
        sink_type = get_sink_type(config.sink_type)
        if sink_type is None:
            raise ConfigError(
                f"unknown sink_type {config.sink_type!r}; available: "
                f"{', '.join(self.list_available_sinks())}"
            )
        conn = dict(config.connection_config)
        destination = str(conn.pop("destination", config.sink_type))
        mode = str(conn.pop("mode", "upsert"))
        if mode not in SYNC_MODES or mode not in sink_type.modes:
            raise ConfigError(
                f"sink {destination}: mode {mode!r} is not supported by sink_type "
                f"{config.sink_type!r} (supported: {', '.join(sorted(sink_type.modes))})"
            )
        key = tuple(conn.pop("primary_key", None) or ("id",))
        allow_private_network = conn.pop("allow_private_network", False) is True
        model = sink_type.config_model.model_validate(resolve(conn, path=("connection_config",)))
        retry = RetryConfig.model_validate(config.retry_config or {})
        request = BuildRequest(
            destination=destination,
            sink_config=model,
            mode=mode,  # type: ignore[arg-type]
            key=key,
            field_mapping=config.field_mapping,
            batch_size=config.batch_size,
            rate_limit=None,
            retry=retry,
            work_dir=self._work_dir / destination,
            allow_private_network=allow_private_network,
            handoff="dlt",
        )
        request.work_dir.mkdir(parents=True, exist_ok=True)
        batch_size = config.batch_size or sink_type.default_batch_size
        handle = SinkHandle(sink_type.build(request), config, request, batch_size)
        try:
            handle.call(handle.sink.check())
        except BaseException:
            handle.close()
            raise
        return handle

    def write(self, sink: Any, data: Any, **kwargs: Any) -> EgressResult:
        if not isinstance(sink, SinkHandle):
            raise TypeError("write() takes the sink returned by create_sink()")
        return sink.call(self.write_async(sink, data, **kwargs))

    async def write_async(self, sink: SinkHandle, data: pa.Table, **kwargs: Any) -> EgressResult:
        """Deliver `data`: rows with a `_floe_op` column (insert/update/delete), or plain
        rows (upserts), through the same delivery path as a sync cycle. `from_snapshot`
        and `to_snapshot` (keyword arguments) go into the idempotency keys."""
        started = time.monotonic()
        if OP_COLUMN not in data.column_names:
            data = data.append_column(OP_COLUMN, pa.array(["insert"] * data.num_rows, pa.string()))
        request = sink.request
        context = WriteContext(
            destination=request.destination,
            mode=request.mode,
            key=request.key,
            from_snapshot=kwargs.get("from_snapshot"),
            to_snapshot=kwargs.get("to_snapshot"),
        )
        report = DeliveryReport()
        errors: list[str] = []
        delivery: Delivery[None] = Delivery(sink.sink, context, sink.batch_size)
        try:
            await delivery.run([data], report)
        except EgressError as exc:
            errors.append(redact(str(exc)))
        errors.extend(f"{f.op} {f.key}: {f.reason}" for f in report.failed)
        digest, _ = payload_digest(filter_for_mode(data, request.mode))
        return EgressResult(
            success=not errors,
            rows_delivered=report.rows_delivered,
            bytes_transmitted=report.bytes_transmitted,
            duration_seconds=time.monotonic() - started,
            checksum=report.checksum,
            delivery_timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            idempotency_key=context.idempotency_key(digest, part="all"),
            destination_record_ids=list(report.record_ids),
            errors=errors,
        )

    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        """What change capture needs: the catalog name and its load_catalog properties
        (secret values stay references), and the read settings."""
        if not catalog_config.get("type") and not catalog_config.get("uri"):
            raise ValueError("catalog_config needs at least `type` or `uri`")
        public = self._public_catalog(catalog_config)
        return {
            "catalog_name": public.pop("name", "gold"),
            "catalog_properties": public,
            "default_ref": "main",
            "read": {"format": "arrow", "batch_rows": 65_536},
        }

    @staticmethod
    def _public_catalog(catalog_config: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in catalog_config.items():
            secretish = any(s in k.lower() for s in _CATALOG_SECRET_KEYS)
            is_ref = isinstance(v, str) and v.startswith("${")
            out[k] = "***" if secretish and not is_ref else redact(v)
        return out


DltIngestionPlugin = FloeEgressPlugin
"""The plugin's earlier name (it was called `dlt`, like floe's own dlt plugin)."""
