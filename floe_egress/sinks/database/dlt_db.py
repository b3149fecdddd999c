"""One dlt pipeline per database destination, and the dlt 1.31 behaviours it handles.

- `pipeline.run()` blocks: every call runs in `asyncio.to_thread`, one at a time per
  destination (an asyncio.Lock; dlt has none). A cancelled caller waits for the thread
  before the lock is released, so two runs never overlap.
- A pending load package makes `pipeline.run(new)` load the old package and ignore
  `new`. Pending packages are aborted before each run: they belong to a write that
  raised (or to a process that died), whose range the cycle sends again because the
  checkpoint did not move. Loading them instead could write rows of an older range
  over newer ones, or append its events twice.
- Completed load packages stay on disk forever: they are deleted after each run.
- Pipelines live under the destination's work directory, never ~/.dlt.
- Load files are written uncompressed: gzip took three quarters of normalize. For
  PostgreSQL, pyarrow writes the CSV load file itself (see fastload).
- A job that fails "transiently" (dlt's word for any OperationalError, which includes a
  MariaDB CHECK failure) is not retried inside the run: the run raises at once.
- Nothing is remembered between runs that could turn a resent batch into a no-op:
  every write loads what it is given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from floe_egress.sinks.database.fastload import csv_import
from floe_egress.sinks.database.frames import Frame
from floe_egress.sinks.database.keys import existing_mask
from floe_egress.sinks.database.targets import Target
from floe_egress.sinks.dltpackages import abort_pending, prune_completed

T = TypeVar("T")
TableState = Literal["missing", "empty", "rows"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunStats:
    disposition: str
    rows: int
    seconds: dict[str, float]
    """Step durations: extract / normalize / load of a dlt run; csv / copy / merge of a
    direct one."""
    direct: bool = False
    """Written by pgdirect.py, without dlt."""


class DltDb:
    """The pipeline of one destination and the only way to touch it (serialised)."""

    def __init__(self, destination: str, target: Target, work_dir: Path) -> None:
        self.destination = destination
        self.target = target
        self.pipelines_dir = work_dir / "dlt"
        self.files_dir = work_dir / "files"
        self.pipeline_name = f"floe_egress_{destination}"
        self._lock = asyncio.Lock()
        self._pipeline: Any = None
        direct = target.direct() if target.direct is not None else None
        self.direct = direct if direct is not None and direct.usable else None
        """PostgreSQL: table checks and steady-state writes without dlt (pgdirect.py)."""

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on a worker thread, alone: no other call of this pipeline overlaps."""
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(fn))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread cannot be stopped: hold the lock until dlt is done with it.
                await asyncio.wait({work})
                raise

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            import dlt

            section = self.pipeline_name
            dlt.config[f"{section}.normalize.data_writer.disable_compression"] = True
            # dlt would retry a failing job five times, a second apart, inside one run;
            # the cycle retries with backoff instead.
            dlt.config[f"{section}.load.raise_on_max_retries"] = 1
            self.pipelines_dir.mkdir(parents=True, exist_ok=True)
            pipeline = dlt.pipeline(
                pipeline_name=self.pipeline_name,
                pipelines_dir=str(self.pipelines_dir),
                destination=self.target.make_destination(),
                dataset_name=self.target.dataset,
                dev_mode=False,
            )
            # Each costs a round of queries or a pickled trace per run, for nothing here:
            # the table's columns are compared with the schema on every schema change.
            pipeline.config.restore_from_destination = False
            pipeline.config.enable_runtime_trace = False
            self._pipeline = pipeline
        return self._pipeline

    # Everything below runs on the worker thread, inside `call`.

    def table_state(self) -> TableState:
        if self.direct is not None:
            return self.direct.table_state()
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        try:
            with self.pipeline.sql_client() as client:
                table = client.make_qualified_table_name(self.target.table)
                rows = client.execute_sql(f"SELECT 1 FROM {table} LIMIT 1")
        except DatabaseUndefinedRelation:
            return "missing"
        return "rows" if rows else "empty"

    def forget_dropped_table(self) -> bool:
        """Make dlt create the table again when it was dropped behind its back.

        dlt skips its DDL when `_dlt_version` holds the schema's version hash, so a table
        dropped after dlt created it is never created again and every load fails. The
        schema's version rows are deleted: the next load compares the schema with the
        tables that exist and creates the missing ones.
        """
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        pipeline = self.pipeline
        schema = pipeline.default_schema if pipeline.default_schema_name else None
        if schema is None or self.target.table not in schema.tables:
            return False
        try:
            with pipeline.sql_client() as client:
                versions = client.make_qualified_table_name(schema.version_table_name)
                client.execute_sql(f"DELETE FROM {versions} WHERE schema_name = %s", schema.name)
        except DatabaseUndefinedRelation:
            return False
        log.warning(
            "dropped_table_recreated", destination=self.destination, table=self.target.table
        )
        return True

    def existing(self, keys: Any) -> Any:
        """A boolean Arrow array: which rows of the key table `keys` the table holds."""
        if self.direct is not None:
            return self.direct.existing(keys)
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        with self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(self.target.table)
            return existing_mask(client, table, keys, missing_table=DatabaseUndefinedRelation)

    def ensure_index(self, columns: tuple[str, ...]) -> bool:
        """A unique index on `columns` unless one of that name exists; False if refused."""
        name = f"{self.target.table}__floe_key"[:63]
        try:
            if self.direct is not None:
                self.direct.ensure_index(name, columns)
                return True
            with self.pipeline.sql_client() as client:
                table = client.make_qualified_table_name(self.target.table)
                cols = ", ".join(client.escape_column_name(c) for c in columns)
                index = client.escape_column_name(name)
                if self.target.sink_type == "sqlite":
                    # SQLite qualifies the index, not the table, with the database name
                    index = client.make_qualified_table_name(name)
                    table = client.escape_column_name(self.target.table)
                statement = f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} ({cols})"
                client.execute_sql(statement)
        except Exception as exc:  # an index is an optimisation: never fail a write for it
            log.warning(
                "key_index_not_created",
                destination=self.destination,
                columns=list(columns),
                reason=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
            )
            return False
        return True

    def load(self, frame: Frame, disposition: Literal["merge", "append"]) -> RunStats:
        """One run of `frame` into the table (dlt's, or pgdirect's when it takes the
        batch); raises what the database or dlt raised."""
        if self.direct is not None and self.direct.takes(frame, disposition):
            if self._pending_on_disk():
                self.abort_pending()  # never loaded later, over the rows written here
            try:
                took = self.direct.load(frame, disposition)
                return RunStats(disposition, frame.table.num_rows, took, direct=True)
            except Exception as exc:
                if not self.direct.table_changed(exc):
                    raise
                # Changed behind our back since it was looked up (rolled back whole)
                log.warning(
                    "direct_write_through_dlt",
                    destination=self.destination,
                    reason=str(exc).splitlines()[0][:300],
                )
                if self.direct.table_state() == "missing":
                    self.forget_dropped_table()
        pipeline = self.pipeline
        self.abort_pending()
        write_disposition: Any = (
            {"disposition": "merge", "strategy": self.target.merge_strategy}
            if disposition == "merge"
            else "append"
        )

        data: Any = frame.table
        imported: list[Path] = []
        file_format: str = self.target.file_format
        if frame.empty_strings:
            # dlt's COPY marks every nullable column FORCE_NULL: "" would arrive as NULL
            file_format = "insert_values"
        elif file_format == "csv":
            data, imported = csv_import(frame, self.files_dir)

        columns = frame.columns
        if disposition == "append":
            # dlt warns on every run that it ignores hard_delete outside a merge
            columns = [{k: v for k, v in c.items() if k != "hard_delete"} for c in columns]

        def extract() -> None:
            pipeline.extract(
                data,
                table_name=self.target.table,
                write_disposition=write_disposition,
                columns=columns or None,
                primary_key=list(frame.primary_key) or None,
                loader_file_format=file_format,
            )

        steps = (("extract", extract), ("normalize", pipeline.normalize), ("load", pipeline.load))
        seconds: dict[str, float] = {}
        try:
            for step, action in steps:
                started = time.perf_counter()
                action()
                seconds[step] = time.perf_counter() - started
        finally:
            for path in imported:
                path.unlink(missing_ok=True)
            self.prune()
            if self.direct is not None:
                self.direct.forget()  # dlt may have added columns
        return RunStats(disposition, frame.table.num_rows, seconds)

    def _pending_on_disk(self) -> bool:
        """Does a load package wait (extracted or normalized)? Without importing dlt."""
        working = self.pipelines_dir / self.pipeline_name
        waiting = (working / "normalize" / "extracted", working / "load" / "normalized")
        return any(d.is_dir() and any(d.iterdir()) for d in waiting)

    def abort_pending(self) -> list[str]:
        return abort_pending(self.pipeline, self.destination)

    def prune(self) -> int:
        return 0 if self._pipeline is None else prune_completed(self._pipeline)

    def close(self) -> None:
        self.prune()
        if self.direct is not None:
            self.direct.close()


__all__ = ["DltDb", "RunStats", "TableState"]
