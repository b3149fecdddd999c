"""How an HTTP sink's write reaches its requests: directly, or through a dlt pipeline.

The sink maps the change batch, then hands the mapped table to a `Handoff`, which calls
the sink's handler with it (value conversion, request building, rate limits, retries,
per-record failure isolation, receipts: all of it lives in the handler, on the caller's
event loop). Two hand-offs, chosen by `BuildRequest.handoff`:

- `"direct"` (the daemon, `floe-egress sync`): the handler is awaited with the table as
  given. A write costs what its requests cost.
- `"dlt"` (the floe platform plugin, whose contract is dlt's): the table goes through
  one `pipeline.run()` per write (dltrun.py), and dlt's load step calls the handler with
  each load file.

Why the daemon does not go through dlt: a dlt run costs a fixed 60-75 ms on a 2-core
machine for 10 rows even with the pipeline reused and its runtime trace and state
restore turned off (configuration resolution, schema copies and validation, load
package files on disk; bench/RESULTS.md "Daemon latency"), more than the whole budget
of a warm 10-row cycle (60 ms; it now takes about 25-35 ms), and it adds nothing an
HTTP write needs: dlt neither retries with backoff, nor applies keys or dispositions
for custom destinations, and a failed package must be aborted by hand. Both hand-offs
give the handler the same rows (the dlt one casts dlt's Parquet copy back to the
table's own columns and types), so the requests, idempotency keys, checksums and failed
rows are the same.

Both run one write at a time per destination.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa

Handler = Callable[[pa.Table], Awaitable[None]]
HandoffKind = Literal["direct", "dlt"]


class Handoff(Protocol):
    async def run(self, table: pa.Table, handler: Handler) -> None:
        """Have `handler` send every row of `table`; raise what it raised."""

    async def close(self) -> None: ...


class DirectHandoff:
    """The handler awaited with the table, one write at a time."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def run(self, table: pa.Table, handler: Handler) -> None:
        async with self._lock:
            await handler(table)

    async def close(self) -> None:
        return None


def handoff_for(kind: HandoffKind, destination: str, work_dir: Path) -> Handoff:
    """The hand-off of `kind`; dlt is imported only for a "dlt" one."""
    if kind == "dlt":
        from floe_egress.sinks.http.dltrun import DltBridge

        return DltBridge(destination, work_dir)
    return DirectHandoff()
