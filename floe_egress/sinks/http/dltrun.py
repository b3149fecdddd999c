"""The dlt hand-off (handoff.py): every write of an HTTP destination is one
`pipeline.run()`. The platform plugin's HTTP destinations use it; the daemon's do not.

dlt 1.31 behaviours handled here (DESIGN §5):
- The `@dlt.destination` function is a plain `def`: dlt never awaits an `async def`
  and reports its rows as loaded. It blocks its dlt worker thread on
  `run_coroutine_threadsafe(...).result()`, so the HTTP work runs on the caller's event
  loop, where the session and the account limiter live.
- `pipeline.run()` blocks: it runs on a thread of the bridge's own, one run at a time
  per destination (an asyncio.Lock; dlt has none). Not in the loop's default executor:
  a run waits there for its rows to be handled, and the handler needs that executor
  too (value conversion), so as many concurrent writes as it has threads (6 on two
  cores) would hold them all and wait for ever.
- A pending load package makes `pipeline.run(new)` load the old package and ignore
  `new`. Pending packages are aborted before each run: they belong to a write that
  already failed (or to a process that crashed), whose range the cycle sends again
  because the checkpoint did not move; loading them would deliver rows outside any
  write's report. A run in which dlt never calls the sink raises instead of passing.
- Exceptions never escape the sink function (a DestinationTerminalException would leave
  the package pending): they are kept on the run and raised from `run()` once dlt has
  completed the package.
- Completed packages are deleted after each run; dlt keeps them forever.
- dlt's stored schema accumulates every column ever seen and fills absent ones with
  nulls, and it turns naive timestamps into UTC ones: the sink function gives the
  handler the columns and types of the table it was given.
- The runtime trace (pickled into the pipeline's directory after every step) and the
  state restore from the destination (a custom destination keeps no state) are off:
  neither is used, and both cost time on every run.
- `max_parallel_load_jobs` stays unset: with one slot, dlt parks its (skipped) state
  job there and sleeps a full second before loading the data job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from floe_egress.errors import SinkError, TransientSinkError
from floe_egress.sinks.dltpackages import abort_pending, prune_completed
from floe_egress.sinks.http.handoff import Handler

TABLE_NAME = "changes"

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Run:
    loop: asyncio.AbstractEventLoop
    schema: pa.Schema
    handler: Handler
    context: contextvars.Context
    """The caller's context: the handler runs in it (bound log fields), not in that of
    dlt's worker thread."""
    calls: int = 0
    error: BaseException | None = None
    cancelled: bool = False
    in_flight: concurrent.futures.Future[None] | None = field(default=None, repr=False)


class DltBridge:
    """Runs one dlt pipeline per destination under `work_dir/dlt`."""

    def __init__(self, destination: str, work_dir: Path) -> None:
        self.destination = destination
        self.pipelines_dir = work_dir / "dlt"
        self.pipeline_name = f"floe_egress_{destination}"
        self._lock = asyncio.Lock()
        self._active: _Run | None = None
        self._pipeline: Any = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    async def _on_thread(self, fn: Callable[..., None], *args: Any) -> None:
        """`fn(*args)` on the bridge's thread, in the caller's context (as to_thread)."""
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"floe-dlt-{self.destination}"
            )
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def sink_function(self) -> Callable[[Any, Any], None]:
        """The function dlt calls with each load file (a plain def, see module doc)."""
        bridge = self

        def floe_http_sink(items: Any, table: Any) -> None:
            bridge.deliver_file(str(items))

        return floe_http_sink

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            factory = dlt.destination(
                self.sink_function(),
                batch_size=0,
                loader_file_format="parquet",
                name=f"floe_{self.destination}",
                naming_convention="direct",
                max_table_nesting=0,
                skip_dlt_columns_and_tables=True,
            )
            self.pipelines_dir.mkdir(parents=True, exist_ok=True)
            self._pipeline = dlt.pipeline(
                pipeline_name=self.pipeline_name,
                pipelines_dir=str(self.pipelines_dir),
                destination=factory(),
                dev_mode=False,
            )
            self._pipeline.config.enable_runtime_trace = False
            self._pipeline.config.restore_from_destination = False
        return self._pipeline

    async def run(self, table: pa.Table, handler: Handler) -> None:
        """Load `table` through dlt; `handler` gets its rows on this event loop."""
        run = _Run(asyncio.get_running_loop(), table.schema, handler, contextvars.copy_context())
        async with self._lock:
            work = asyncio.ensure_future(self._on_thread(self._run_sync, table, run))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread cannot be cancelled: stop its HTTP work and wait for dlt to
                # finish the package before the lock lets another run start.
                run.cancelled = True
                if run.in_flight is not None:
                    run.in_flight.cancel()
                await asyncio.wait({work})
                raise
            except SinkError:
                raise
            except Exception as exc:
                raise TransientSinkError(
                    f"destination {self.destination!r}: the dlt pipeline failed "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        if run.error is not None:
            raise run.error
        if run.calls == 0:
            raise TransientSinkError(
                f"destination {self.destination!r}: dlt completed the run without handing "
                f"its {table.num_rows} rows to the sink; nothing was sent"
            )

    def _run_sync(self, table: pa.Table, run: _Run) -> None:
        pipeline = self.pipeline
        self._abort_pending(pipeline)
        self._active = run
        try:
            pipeline.run(table, table_name=TABLE_NAME, loader_file_format="parquet")
        finally:
            self._active = None
            self._prune(pipeline)

    def deliver_file(self, path: str) -> None:
        """Called by dlt on its worker thread with the path of one parquet load file."""
        run = self._active
        if run is None:
            log.warning("dlt_orphan_load_file_skipped", destination=self.destination, path=path)
            return
        run.calls += 1
        if run.error is not None or run.cancelled:
            return
        try:
            data = _as_given(pq.read_table(path), run.schema)
            future = run.context.copy().run(
                asyncio.run_coroutine_threadsafe, _call(run.handler, data), run.loop
            )
            run.in_flight = future
            future.result()
        except Exception as exc:  # must not reach dlt: see module doc
            run.error = exc

    def _abort_pending(self, pipeline: Any) -> None:
        abort_pending(pipeline, self.destination)

    def _prune(self, pipeline: Any) -> None:
        prune_completed(pipeline)

    async def close(self) -> None:
        async with self._lock:
            if self._pipeline is not None:
                await self._on_thread(self._prune, self._pipeline)
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.shutdown(wait=False)


def _as_given(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """The columns and types the write was given (dlt adds columns, makes naive times UTC)."""
    data = data.select([n for n in schema.names if n in data.column_names])
    if data.schema.names != schema.names:
        return data
    try:
        return data.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return data


async def _call(handler: Handler, data: pa.Table) -> None:
    await handler(data)
