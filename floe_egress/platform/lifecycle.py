"""The plugin's own settings and lifecycle, as floe's plugin registry drives them.

floe-core's registry validates a plugin's settings with the model `get_config_schema()`
returns (`PluginSettings`: the manifest's `plugins.ingestion.config`), hands the result
to `configure()`, then calls `startup()`, `health_check()` and `shutdown()`.
`startup()` opens the state store (migrating it) and the catalog, so a plugin that is
activated can work; `health_check()` asks both, within a time limit.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from floe_egress.config.models import CatalogConfig, ServerConfig, StateConfig
from floe_egress.config.secrets import redact, resolve
from floe_egress.errors import ConfigError
from floe_egress.platform.contract import HealthState, HealthStatus
from floe_egress.state.store import StateStore

DEFAULT_HEALTH_TIMEOUT = 4.0
"""Below floe-core's own 5 s limit on health_check(), which calls it without a timeout:
what did not answer is said here, not as floe-core's bare time-out."""
DEFAULT_WORK_DIR = Path(".floe-egress") / "plugin"


class PluginSettings(BaseModel):
    """floe-egress's settings inside the floe platform (`plugins.ingestion.config`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog: Annotated[
        CatalogConfig | None,
        Field(description="The Iceberg catalog (pyiceberg load_catalog properties)."),
    ] = None
    state: Annotated[StateConfig, Field(description="Where checkpoints are kept.")] = StateConfig()
    server: Annotated[ServerConfig, Field(description="The daemon's HTTP endpoints.")] = (
        ServerConfig()
    )
    work_dir: Annotated[
        str | None,
        Field(min_length=1, description="Working files (dlt pipelines, spill files)."),
    ] = None


class Lifecycle:
    """What `startup()` opened, for `health_check()` and `shutdown()`."""

    def __init__(self) -> None:
        self.store: StateStore | None = None
        self.catalog: Any = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self.store is not None

    def start(self, settings: PluginSettings, catalog_config: dict[str, Any]) -> None:
        from floe_egress.changes import open_catalog
        from floe_egress.state import open_store

        with self._lock:
            if self.store is not None:
                return
            state_url = resolve(settings.state.url, path=("state", "url"))
            store = open_store(str(state_url))
            try:
                if catalog_config:
                    props = resolve(dict(catalog_config), path=("catalog",))
                    name = str(props.pop("name", "gold"))
                    self.catalog = open_catalog(name, props)
            except Exception as exc:
                store.close()
                raise ConfigError(
                    f"floe-egress cannot open its catalog: {redact(str(exc))}"
                ) from None
            self.store = store

    def stop(self) -> None:
        with self._lock:
            store, self.store, self.catalog = self.store, None, None
        if store is not None:
            store.close()

    def health(self, timeout: float | None) -> HealthStatus:
        if self.store is None:
            return HealthStatus(state=HealthState.UNHEALTHY, message="not started")
        store, catalog = self.store, self.catalog
        checks: dict[str, str] = {}

        def probe() -> None:
            try:
                store.ping()
                checks["state_store"] = "ok"
            except Exception as exc:
                checks["state_store"] = redact(str(exc)) or type(exc).__name__
            if catalog is None:
                checks["catalog"] = "not configured"
                return
            try:
                catalog.list_namespaces()
                checks["catalog"] = "ok"
            except Exception as exc:
                checks["catalog"] = redact(f"{type(exc).__name__}: {exc}")

        limit = DEFAULT_HEALTH_TIMEOUT if timeout is None else timeout
        worker = threading.Thread(target=probe, name="floe-egress-health", daemon=True)
        worker.start()
        worker.join(limit)
        for part in ("state_store", "catalog"):
            checks.setdefault(part, f"no answer within {limit:g} s")
        failed = {k: v for k, v in checks.items() if v not in ("ok", "not configured")}
        if failed:
            message = "; ".join(f"{k}: {v}" for k, v in failed.items())
            return HealthStatus(state=HealthState.UNHEALTHY, message=message, details=checks)
        if checks["catalog"] == "not configured":
            return HealthStatus(
                state=HealthState.DEGRADED,
                message="no catalog configured: sinks work, ingestion and reading do not",
                details=checks,
            )
        return HealthStatus(state=HealthState.HEALTHY, message="ok", details=checks)


__all__ = ["DEFAULT_WORK_DIR", "Lifecycle", "PluginSettings"]
