"""The one delivery path: change tables into a sink, write by write.

Used by the sync cycle and by the platform plugin's `write`. It keeps the rows the
destination's mode sends, cuts them into writes of at least `MIN_ROWS_PER_WRITE` rows
(the sink cuts each write into the destination's own batches: every write of a database
sink, or of an HTTP sink behind the platform plugin, pays one dlt run of 0.05-0.2 s),
gives each write a `WriteContext` with its index, and merges what the sink reports. The
next write's rows are read (and `prepare`d) on a worker thread while one is written:
reading may read Parquet files, and the event loop also serves health checks, leases
and the watchdog.

One payload digest (`payload_digest`: sha256 over the Arrow IPC stream) and one
idempotency-key rule (`WriteContext.idempotency_key`) serve every sink and the plugin.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import pyarrow as pa

from floe_egress.sinks.base import MIN_ROWS_PER_WRITE, DeliveryReport, Sink, WriteContext
from floe_egress.sinks.mapping import filter_for_mode

T = TypeVar("T")


class _HashingFile:
    """A write-only file object that hashes and counts instead of keeping the bytes."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def payload_digest(table: pa.Table) -> tuple[str, int]:
    """sha256 hex digest and size of `table` as an Arrow IPC stream (never held whole)."""
    sink = _HashingFile()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        writer.write_table(table)
    return sink.sha.hexdigest(), sink.size


def combined_checksum(checksums: Iterable[str]) -> str:
    """One `sha256:` checksum for several writes: a single write keeps its own; none or
    several give the sha256 of their checksums joined (of nothing: of the empty payload)."""
    parts = list(checksums)
    if len(parts) == 1:
        return parts[0]
    return "sha256:" + hashlib.sha256("".join(parts).encode()).hexdigest()


def writes(tables: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    """`tables` regrouped into tables of exactly `size` rows (the last one may be short)."""
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        offset = 0
        while offset < table.num_rows:
            take = min(size - rows, table.num_rows - offset)
            pending.append(table.slice(offset, take))
            rows += take
            offset += take
            if rows == size:
                yield pa.concat_tables(pending).combine_chunks()
                pending, rows = [], 0
    if rows:
        yield pa.concat_tables(pending).combine_chunks()


@dataclasses.dataclass(slots=True)
class Delivery(Generic[T]):
    """How one stream of changes is delivered.

    `prepare(rows)` runs on the reader thread before the rows may be sent (mirror mode
    puts their keys in the state's ledger there); `before_write()` runs before each
    write and may raise to stop (the lease check); `after_write(rows, prepared, report)`
    sees each write's outcome.
    """

    sink: Sink
    context: WriteContext
    batch_size: int
    """The destination's batch size (records per request, rows per load)."""
    prepare: Callable[[pa.Table], T] | None = None
    before_write: Callable[[], None] | None = None
    after_write: Callable[[pa.Table, T | None, DeliveryReport], None] | None = None

    async def run(self, tables: Iterable[pa.Table], report: DeliveryReport) -> None:
        """Deliver `tables`, merging into `report` as writes complete (a failure leaves
        the writes before it in `report` and raises)."""
        mode = self.context.mode
        kept = (filter_for_mode(t, mode) for t in tables)
        pending = writes((t for t in kept if t.num_rows), max(self.batch_size, MIN_ROWS_PER_WRITE))
        checksums: list[str] = []

        def read_next() -> tuple[pa.Table, T | None] | None:
            rows = next(pending, None)
            if rows is None:
                return None
            return rows, (self.prepare(rows) if self.prepare is not None else None)

        try:
            upcoming = await asyncio.to_thread(read_next)
            index = self.context.batch_index
            while upcoming is not None:
                rows, prepared = upcoming
                if self.before_write is not None:
                    self.before_write()
                context = dataclasses.replace(self.context, batch_index=index)
                following = asyncio.ensure_future(asyncio.to_thread(read_next))
                try:
                    part = await self.sink.write(rows, context)
                except BaseException:
                    # The reader thread runs on: let it finish before the error ends this.
                    await asyncio.gather(following, return_exceptions=True)
                    raise
                report.merge(part)
                checksums.append(part.checksum)
                if self.after_write is not None:
                    self.after_write(rows, prepared, part)
                index += 1
                upcoming = await following
        finally:
            report.checksum = combined_checksum(checksums)


__all__ = [
    "Delivery",
    "combined_checksum",
    "payload_digest",
    "writes",
]
