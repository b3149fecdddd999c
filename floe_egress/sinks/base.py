"""The inside of delivery: what every destination type implements.

The cycle hands a sink Arrow tables of changes (the `_floe_op` column says insert,
update or delete; key columns are never renamed away), already filtered by the sync
mode and cut at the destination's batch size. The sink maps fields, converts values,
delivers, and reports per row what it could not deliver. It raises
`TransientSinkError` only when nothing in the batch can be known delivered and a later
retry may succeed, `PermanentSinkError` when the whole batch is refused for good.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from floe_egress.config.models import SyncMode

MIN_ROWS_PER_WRITE = 20_000
"""Rows handed to one `Sink.write` at least (when there are that many): the sink cuts
them into the destination's batches, and a write that goes through dlt (a database's,
or an HTTP sink's under the platform plugin) pays one dlt run (60-90 ms at least)."""


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Where a batch comes from: used for idempotency keys, record metadata and logs."""

    destination: str
    mode: SyncMode
    key: tuple[str, ...]
    from_snapshot: int | None
    to_snapshot: int | None
    batch_index: int = 0

    def idempotency_key(self, payload_digest: str, part: str | None = None) -> str:
        """The one idempotency-key rule: the same destination, snapshot range, part and
        content give the same key. `part` names what the key covers: by default this
        write (its batch index); "all" for a whole delivery."""
        covers = str(self.batch_index) if part is None else part
        raw = (
            f"{self.destination}|{self.from_snapshot}|{self.to_snapshot}|{covers}|{payload_digest}"
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A row the destination refused, with the destination's own reason."""

    key: dict[str, Any]
    op: str
    reason: str
    status: int | None = None


@dataclass(slots=True)
class DeliveryReport:
    """What one `Sink.write` call achieved."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: list[FailedRow] = field(default_factory=list)
    bytes_transmitted: int = 0
    checksum: str = ""
    """`sha256:<hex>` over the payload as sent (request bodies, or the Arrow IPC stream)."""
    idempotency_keys: list[str] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    requests: int = 0
    http_statuses: dict[int, int] = field(default_factory=dict)
    rate_limit_wait_seconds: float = 0.0

    @property
    def rows_delivered(self) -> int:
        return sum(self.delivered.values())

    def merge(self, other: DeliveryReport) -> None:
        for op, n in other.delivered.items():
            self.delivered[op] = self.delivered.get(op, 0) + n
        self.failed.extend(other.failed)
        self.bytes_transmitted += other.bytes_transmitted
        self.idempotency_keys.extend(other.idempotency_keys)
        self.record_ids.extend(other.record_ids)
        self.requests += other.requests
        for status, n in other.http_statuses.items():
            self.http_statuses[status] = self.http_statuses.get(status, 0) + n
        self.rate_limit_wait_seconds += other.rate_limit_wait_seconds


@runtime_checkable
class Sink(Protocol):
    """A built destination, ready to receive batches of changes."""

    @property
    def name(self) -> str: ...

    @property
    def sink_type(self) -> str: ...

    async def check(self) -> None:
        """Fail fast: PermanentSinkError on refused credentials, TransientSinkError on a
        destination that does not answer."""

    async def write(self, changes: pa.Table, context: WriteContext) -> DeliveryReport:
        """Deliver one batch of changes and report per row what failed."""

    async def close(self) -> None:
        """Release connections and prune dlt's completed load packages."""


@runtime_checkable
class ReadBackSink(Sink, Protocol):
    """A sink whose destination can be read back (database tables), for `verify`."""

    @property
    def location(self) -> str:
        """Where the rows are read from, for messages (never a password)."""

    def unreadable(self, schema: pa.Schema) -> dict[str, str]:
        """Columns of `schema` (the table's names and Arrow types) whose values cannot
        be compared after a round trip through the destination, with why."""

    async def read_back(self, schema: pa.Schema, consume: Callable[[pa.Table], None]) -> int:
        """Hand every row the destination holds to `consume`, batch by batch (on a worker
        thread), as `schema`: the field mapping undone and each value converted back to
        the table's type. Returns how many rows were read; a missing table reads as empty."""
