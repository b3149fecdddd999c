"""The Sink of the database types: field mapping, what the mode sends, the dlt run, the report.

Rows holding a value the database is known to refuse (refusals.py: a NUL character for
PostgreSQL, NaN for MariaDB, ...) become FailedRows before anything is sent, with a
reason naming the column. A batch the database refuses anyway for a row-level reason (a
constraint, a value it cannot store) is split in halves until the refused rows are
alone; they become FailedRows with the database's reason and the rest is delivered.
The number of extra runs is bounded: past it the batch fails as a whole.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Callable

import pyarrow as pa
import structlog

from floe_egress.changes.model import OP_COLUMN
from floe_egress.errors import ConfigError, PermanentSinkError, SinkError
from floe_egress.sinks.base import DeliveryReport, FailedRow, WriteContext
from floe_egress.sinks.database import failures, readback
from floe_egress.sinks.database.dlt_db import DltDb, RunStats
from floe_egress.sinks.database.frames import build_frame, event_identity
from floe_egress.sinks.database.models import DEFAULT_BATCH_SIZE
from floe_egress.sinks.database.shaping import Fresh, ShapedWrite, shape_write
from floe_egress.sinks.database.targets import target_for
from floe_egress.sinks.delivery import payload_digest
from floe_egress.sinks.mapping import apply_field_mapping, mapping_clash
from floe_egress.sinks.registry import BuildRequest
from floe_egress.sinks.values import screen, without_rows

log = structlog.get_logger(__name__)

MAX_ISOLATED_ROWS = 8
"""Refused rows isolated per batch before the whole batch is failed instead."""


def isolation_budget(rows: int) -> int:
    """Extra runs allowed to isolate refused rows: one row costs about 2*log2(rows)."""
    return 2 * math.ceil(math.log2(max(rows, 2))) + 4 * MAX_ISOLATED_ROWS


Range = tuple[int | None, int | None]


class DatabaseSink:
    def __init__(self, request: BuildRequest) -> None:
        self._request = request
        self.target = target_for(request.sink_config)
        self.mode = request.mode
        self.source_key = request.key
        self.key = tuple((request.field_mapping or {}).get(k, k) for k in request.key)
        if (clash := mapping_clash(request.field_mapping, request.key)) is not None:
            raise ConfigError(f"destination {request.destination!r}: {clash}")
        self.db = DltDb(request.destination, self.target, request.work_dir)
        self.batch_size = request.batch_size or DEFAULT_BATCH_SIZE
        """Rows per dlt run (one load package, one COPY or MERGE); a write may take several."""
        self.runs: deque[RunStats] = deque(maxlen=100)
        """The latest dlt runs of this sink, for benchmarks and tests."""
        self._next: tuple[Range, int] | None = None
        """The write that would continue an initial load (shaping.py): its range and index."""
        self._indexed = False
        self._source_names = {dst: src for src, dst in (request.field_mapping or {}).items()}
        """Destination column -> table column, to name a refused value's column."""

    @property
    def name(self) -> str:
        return self._request.destination

    @property
    def sink_type(self) -> str:
        return self.target.sink_type

    def _where(self) -> str:
        return f"destination {self.name!r} ({self.target.where})"

    async def check(self) -> None:
        await self.db.call(self._check)

    def _check(self) -> None:
        try:
            self.target.ping()  # through the driver: a cycle with nothing to send needs no dlt
        except Exception as exc:
            raise failures.sink_error(
                exc, f"{self._where()}: cannot connect", self.target.masked
            ) from None

    async def write(self, changes: pa.Table, context: WriteContext) -> DeliveryReport:
        mapped = self._map(changes)
        return await self.db.call(lambda: self._write(mapped, context))

    async def close(self) -> None:
        await self.db.call(self.db.close)

    @property
    def location(self) -> str:
        return self.target.where

    def unreadable(self, schema: pa.Schema) -> dict[str, str]:
        return readback.unreadable(schema)

    async def read_back(self, schema: pa.Schema, consume: Callable[[pa.Table], None]) -> int:
        mapping = self._request.field_mapping

        def read() -> int:
            try:
                return readback.read_rows(self.db, mapping, schema, consume, self._where())
            except SinkError:
                raise
            except Exception as exc:
                raise failures.sink_error(
                    exc, f"{self._where()}: reading the table back", self.target.masked
                ) from None

        return await self.db.call(read)

    def _map(self, changes: pa.Table) -> pa.Table:
        if OP_COLUMN not in changes.column_names:
            raise PermanentSinkError(
                f"{self._where()}: the change batch has no {OP_COLUMN!r} column"
            )
        try:
            return apply_field_mapping(
                changes, self._request.field_mapping, keep=(OP_COLUMN, *self.source_key)
            )
        except KeyError as exc:
            raise PermanentSinkError(f"{self._where()}: {exc.args[0]}") from None

    # On the worker thread from here on.

    def _write(self, mapped: pa.Table, context: WriteContext) -> DeliveryReport:
        mapped, unsendable = self._screen(mapped)
        digest, size = payload_digest(mapped)
        report = DeliveryReport(
            bytes_transmitted=size,
            checksum=f"sha256:{digest}",
            idempotency_keys=[context.idempotency_key(digest)],
        )
        if not mapped.num_rows:
            report.failed = unsendable
            return report
        batch_range: Range = (context.from_snapshot, context.to_snapshot)
        follows = self._next == (batch_range, context.batch_index)
        self._next = None
        try:
            fresh = self._freshness(follows)
            if fresh is None:
                self._ensure_index()
            shaped = shape_write(
                self.mode, mapped, self.key, fresh, self.db.existing, context.to_snapshot
            )
            for start in range(0, shaped.rows.num_rows, self.batch_size):
                rows = shaped.rows.slice(start, self.batch_size)
                self._send(rows, shaped, context, report, [isolation_budget(rows.num_rows)])
        except SinkError:
            raise
        except Exception as exc:
            raise failures.sink_error(
                exc, f"{self._where()}: writing {mapped.num_rows} rows", self.target.masked
            ) from None
        report.delivered = dict(shaped.delivered)
        for row in report.failed:
            report.delivered[row.op] = report.delivered.get(row.op, 0) - 1
        report.delivered = {op: n for op, n in report.delivered.items() if n > 0}
        report.failed = unsendable + report.failed
        if fresh is not None:
            self._next = (batch_range, context.batch_index + 1)
        return report

    def _screen(self, mapped: pa.Table) -> tuple[pa.Table, list[FailedRow]]:
        """`mapped` without the rows holding a value the database cannot store, and
        those rows as FailedRows (see refusals.py)."""
        refused = screen(mapped, self.target.refuses, self._source_names)
        if not refused:
            return mapped, []
        rows = sorted(refused)
        taken = mapped.take(pa.array(rows, pa.int64()))
        failed = [self._failed_row(taken.slice(i, 1), refused[row]) for i, row in enumerate(rows)]
        return without_rows(mapped, rows), failed

    def _freshness(self, follows: bool) -> Fresh:
        if follows:
            return "continuation"
        state = self.db.table_state()
        if state == "missing":
            self.db.forget_dropped_table()
        return None if state == "rows" else "empty"

    def _ensure_index(self) -> None:
        if self._indexed or not self.target.key_index:
            return
        self._indexed = True
        columns = event_identity(self.key) if self.mode == "append" else self.key
        self.db.ensure_index(columns)

    def _send(
        self,
        rows: pa.Table,
        shaped: ShapedWrite,
        context: WriteContext,
        report: DeliveryReport,
        budget: list[int],
    ) -> None:
        try:
            self._load(rows, shaped, context)
        except Exception as exc:
            if not failures.is_row_error(exc) or budget[0] <= 0:
                raise
            if rows.num_rows == 1:
                report.failed.append(self._failed_row(rows, exc))
                if len(report.failed) > MAX_ISOLATED_ROWS:
                    raise
                return
            budget[0] -= 2
            half = rows.num_rows // 2
            self._send(rows.slice(0, half), shaped, context, report, budget)
            self._send(rows.slice(half), shaped, context, report, budget)

    def _failed_row(self, row: pa.Table, why: BaseException | str) -> FailedRow:
        values = row.select(list(self.key)).to_pylist()[0]
        key = {src: values[dst] for src, dst in zip(self.source_key, self.key, strict=True)}
        op = str(row.column(OP_COLUMN)[0].as_py())
        reason = why if isinstance(why, str) else failures.root_message(why)
        reason = failures.mask(reason, self.target.masked)
        log.warning("db_row_refused", destination=self.name, key=key, op=op, reason=reason)
        return FailedRow(key=key, op=op, reason=reason)

    def _load(self, rows: pa.Table, shaped: ShapedWrite, context: WriteContext) -> None:
        frame = build_frame(
            rows,
            mode=self.mode,
            key=self.key,
            to_snapshot=context.to_snapshot,
            synced_at=dt.datetime.now(dt.UTC),
            text_only=self.target.text_only,
        )
        stats = self.db.load(frame, shaped.disposition)
        self.runs.append(stats)
        log.debug(
            "db_rows_loaded",
            destination=self.name,
            disposition=stats.disposition,
            rows=stats.rows,
            direct=stats.direct,
            **{f"{step}_seconds": round(s, 3) for step, s in stats.seconds.items()},
        )


__all__ = ["DatabaseSink"]
