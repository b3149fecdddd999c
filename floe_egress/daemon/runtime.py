"""What cycles share: the catalog, table handles, the state store, built sinks and the
work directory."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from floe_egress.changes import open_catalog
from floe_egress.config.models import DEFAULT_STATE_DIR, Destination, FloeSpec
from floe_egress.config.secrets import redact, resolve
from floe_egress.daemon.tables import Tables
from floe_egress.errors import ConfigError
from floe_egress.sinks.base import Sink
from floe_egress.sinks.registry import BuildRequest, get_sink_type, sink_type_names
from floe_egress.state import open_store
from floe_egress.state.store import StateStore

log = structlog.get_logger("floe_egress.runtime")


def work_dir_for(spec: FloeSpec) -> Path:
    """Where dlt pipelines and embedded files live: systemd's StateDirectory, the folder
    of the SQLite state file, or ./.floe-egress."""
    explicit = os.environ.get("FLOE_EGRESS_WORK_DIR") or os.environ.get("STATE_DIRECTORY")
    if explicit:
        return Path(explicit.split(":")[0])
    url = spec.state.url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent
    return Path(DEFAULT_STATE_DIR)


def catalog_properties(spec: FloeSpec, work_dir: Path) -> dict[str, Any]:
    """The catalog's properties with secrets resolved and the embedded default filled in."""
    props = resolve(spec.catalog.properties(), path=("catalog",))
    if props.get("type") == "sql" and not props.get("uri"):
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        props["uri"] = f"sqlite:///{work_dir / 'catalog.db'}"
        props.setdefault("warehouse", (work_dir / "warehouse").resolve().as_uri())
    return props


class Runtime:
    """Built once per configuration; cheap until something is used."""

    def __init__(self, spec: FloeSpec, *, store: StateStore | None = None) -> None:
        self.spec = spec
        self.work_dir = work_dir_for(spec)
        self._store = store
        self._catalog: Catalog | None = None
        self.tables = Tables()
        self._sinks: dict[tuple[str, tuple[str, ...]], Sink] = {}
        # The first use may come from several worker threads at once.
        self._opening = threading.Lock()

    @property
    def store(self) -> StateStore:
        if self._store is None:
            with self._opening:
                if self._store is None:
                    self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    url = resolve(self.spec.state.url, path=("state", "url"))
                    self._store = open_store(url)
        return self._store

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            with self._opening:
                if self._catalog is None:
                    props = catalog_properties(self.spec, self.work_dir)
                    self._catalog = open_catalog(self.spec.catalog.name, props)
        return self._catalog

    def load_table(self, dest: Destination) -> Table:
        """The source table of `dest`; the handle is kept while the table does not move."""
        return self.tables.load(self.catalog, dest.source_table)

    async def sink(self, dest: Destination, key: tuple[str, ...]) -> Sink:
        """The built sink of `dest` (secrets resolved now), checked once when first built."""
        cache_key = (dest.name, key)
        sink = self._sinks.get(cache_key)
        if sink is None:
            sink = build_sink(dest, key, self.work_dir / "destinations" / dest.name)
            try:
                await sink.check()
            except BaseException:
                await sink.close()
                raise
            self._sinks[cache_key] = sink
        return sink

    async def close_sinks(self) -> None:
        """Close every sink; a sink's close waits for its in-flight write (a database's
        dlt load, an HTTP sink's requests) to end."""
        sinks, self._sinks = list(self._sinks.values()), {}
        for sink in sinks:
            try:
                await sink.close()
            except Exception as exc:  # closing must not hide the original outcome
                log.warning("sink_close_failed", sink=sink.name, error=redact(str(exc)))

    async def close(self) -> None:
        await self.close_sinks()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None


def build_sink(dest: Destination, key: tuple[str, ...], work_dir: Path) -> Sink:
    sink_type = get_sink_type(dest.sink_type)
    if sink_type is None:
        available = ", ".join(sink_type_names())
        raise ConfigError(
            f"destination {dest.name}: unknown sink_type {dest.sink_type!r} "
            f"(available: {available})"
        )
    raw = resolve(dest.sink_config, path=("destination", dest.name, "sink_config"))
    try:
        config = sink_type.config_model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"destination {dest.name}: invalid sink_config: {problems}") from None
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return sink_type.build(BuildRequest.for_destination(dest, config, key, work_dir))
