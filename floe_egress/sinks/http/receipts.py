"""What one write sent and what came back, turned into a DeliveryReport at the end.

Requests of one write run concurrently, so their bodies are filed under an order key
(the planned request index, then the path of binary splits: (3,), (3, 0), (3, 0, 1),
(4,)) and the checksum is taken over the bodies in that order, not in completion order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from floe_egress.config.secrets import redact
from floe_egress.sinks.base import DeliveryReport, FailedRow, WriteContext

OrderKey = tuple[int, ...]


@dataclass(slots=True)
class Receipts:
    context: WriteContext
    report: DeliveryReport = field(default_factory=DeliveryReport)
    _bodies: dict[OrderKey, bytes] = field(default_factory=dict)
    _keys: dict[OrderKey, str] = field(default_factory=dict)
    _ids: dict[OrderKey, list[str]] = field(default_factory=dict)
    _next_index: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Rows the mode says to leave alone (insert of an existing record, update of a
    missing one): neither delivered nor failed."""

    def next_order(self) -> OrderKey:
        """A fresh top-level request index (kept across the handler's calls within one
        write: the dlt hand-off calls it once per load file)."""
        self._next_index += 1
        return (self._next_index - 1,)

    def register(self, order: OrderKey, body: bytes) -> str:
        """File a request body under `order`; returns its deterministic idempotency key."""
        digest = hashlib.sha256(body).hexdigest()
        position = ".".join(str(i) for i in order)
        key = self.context.idempotency_key(f"{position}:{digest}")
        self._bodies[order] = body
        self._keys[order] = key
        return key

    def delivered(self, op: str, count: int = 1) -> None:
        if count:
            self.report.delivered[op] = self.report.delivered.get(op, 0) + count

    def skip(self, op: str, count: int = 1) -> None:
        self.skipped[op] = self.skipped.get(op, 0) + count

    def failed(self, row: FailedRow) -> None:
        """Record a refused row; its reason (the destination's words, which may echo a
        credential) is masked here, before anything stores or prints it."""
        self.report.failed.append(dataclasses.replace(row, reason=redact(row.reason)))

    def record_ids(self, order: OrderKey, ids: list[str]) -> None:
        if ids:
            self._ids.setdefault(order, []).extend(ids)

    def http(self, status: int | None, sent_bytes: int, waited: float) -> None:
        """Count one attempt on the wire (status None: no response)."""
        self.report.requests += 1
        self.report.bytes_transmitted += sent_bytes
        self.report.rate_limit_wait_seconds += waited
        if status is not None:
            self.report.http_statuses[status] = self.report.http_statuses.get(status, 0) + 1

    def waited(self, seconds: float) -> None:
        self.report.rate_limit_wait_seconds += seconds

    def finish(self) -> DeliveryReport:
        order = sorted(self._bodies)
        sha = hashlib.sha256()
        for key in order:
            sha.update(self._bodies[key])
        self.report.checksum = f"sha256:{sha.hexdigest()}" if order else ""
        self.report.idempotency_keys = [self._keys[k] for k in order]
        self.report.record_ids = [i for k in sorted(self._ids) for i in self._ids[k]]
        return self.report
