"""What every HTTP sink shares: field mapping, rows, the hand-off (handoff.py), batch
splitting."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import structlog

from floe_egress.changes.model import OP_COLUMN
from floe_egress.config.models import SyncMode
from floe_egress.errors import ConfigError, PermanentSinkError
from floe_egress.sinks.base import DeliveryReport, FailedRow, WriteContext
from floe_egress.sinks.http.client import HttpClient, Response, error_message
from floe_egress.sinks.http.convert import DecimalMode, JsonRecord, convert
from floe_egress.sinks.http.handoff import Handoff, handoff_for
from floe_egress.sinks.http.receipts import OrderKey, Receipts
from floe_egress.sinks.mapping import apply_field_mapping, mapping_clash
from floe_egress.sinks.registry import BuildRequest

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Row:
    """One change as the wire sees it."""

    op: str
    record: JsonRecord
    """Mapped fields, values converted for JSON; the op column removed."""
    key: dict[str, Any]
    """Source key column -> raw value, for FailedRow."""
    shaped: str | None = None
    """The record as a rest_api record_template rendered it (JSON text)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The whole request was refused with a 4xx: split it to find the bad records."""

    status: int
    message: str


Attempt = Callable[[Sequence[Row], OrderKey], Awaitable[Rejected | None]]


async def run_all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; on the first failure cancel the others and raise that failure.

    The failure itself is raised, not an ExceptionGroup: callers (and the cycle) handle
    SinkError. A PermanentSinkError wins over a transient one raised alongside it.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except BaseExceptionGroup as failures:
        leaves = _leaves(failures)
        chosen = next((e for e in leaves if isinstance(e, PermanentSinkError)), leaves[0])
        raise chosen from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def send_splitting(
    rows: Sequence[Row], order: OrderKey, attempt: Attempt, receipts: Receipts
) -> None:
    """Send `rows` with `attempt`; on a whole-request 4xx, halve and retry each half.

    A single rejected row becomes a FailedRow with the server's message; the other rows
    of the batch are delivered. k bad rows in n cost about 2k*log2(n) extra requests.
    """
    outcome = await attempt(rows, order)
    if outcome is None:
        return
    if len(rows) == 1:
        row = rows[0]
        receipts.failed(FailedRow(row.key, row.op, outcome.message, outcome.status))
        return
    mid = len(rows) // 2
    await run_all(
        [
            send_splitting(rows[:mid], (*order, 0), attempt, receipts),
            send_splitting(rows[mid:], (*order, 1), attempt, receipts),
        ]
    )


def rejected(response: Response) -> Rejected:
    return Rejected(response.status, error_message(response))


class HttpSink(ABC):
    """A Sink over an HTTP API; subclasses implement `deliver` and `check`."""

    sink_type_name: ClassVar[str]
    decimals: DecimalMode = "string"

    def __init__(self, request: BuildRequest, client: HttpClient) -> None:
        self._name = request.destination
        self.mode: SyncMode = request.mode
        self.key = request.key
        self.mapping = request.field_mapping
        self.key_fields = tuple((self.mapping or {}).get(k, k) for k in request.key)
        self._source_names = {dst: src for src, dst in (self.mapping or {}).items()}
        """Field -> table column, to name a refused value's column."""
        if (clash := mapping_clash(self.mapping, request.key)) is not None:
            raise ConfigError(f"destination {self._name!r}: {clash}")
        self.client = client
        self.handoff: Handoff = handoff_for(request.handoff, request.destination, request.work_dir)

    @property
    def name(self) -> str:
        return self._name

    @property
    def sink_type(self) -> str:
        return self.sink_type_name

    async def write(self, changes: pa.Table, context: WriteContext) -> DeliveryReport:
        mapped = self._map(changes)
        receipts = Receipts(context)

        async def handle(table: pa.Table) -> None:
            # Value conversion is CPU work: keep it off the event loop.
            rows, unsendable = await asyncio.to_thread(self.rows, table)
            for row in unsendable:
                log.warning(
                    "row_refused", destination=self.name, key=row.key, op=row.op, reason=row.reason
                )
                receipts.failed(row)
            await self.deliver(rows, receipts)

        if mapped.num_rows:
            await self.handoff.run(mapped, handle)
        report = receipts.finish()
        if receipts.skipped:
            log.info("rows_skipped", destination=self.name, mode=self.mode, **receipts.skipped)
        return report

    def matching_field(self, option: str, chosen: str | None, vendor: str, matches: str) -> str:
        """The field a CRM matches records on: `chosen`, else the mapped key field."""
        problem = match_field_problem(self.mode, self.key_fields, option, chosen, vendor, matches)
        if problem is not None:
            raise ConfigError(f"destination {self.name!r}: {problem[1]}")
        return chosen or self.key_fields[0]

    def _map(self, changes: pa.Table) -> pa.Table:
        if OP_COLUMN not in changes.column_names:
            raise PermanentSinkError(
                f"destination {self.name!r}: the change batch has no {OP_COLUMN!r} column"
            )
        try:
            return apply_field_mapping(changes, self.mapping, keep=(OP_COLUMN, *self.key))
        except KeyError as exc:
            raise PermanentSinkError(f"destination {self.name!r}: {exc.args[0]}") from None

    def rows(self, table: pa.Table) -> tuple[list[Row], list[FailedRow]]:
        """The changes as the wire sees them, and the rows holding a value the wire
        format cannot carry (failed rows naming the column and the reason)."""
        ops = table.column(OP_COLUMN).to_pylist()
        keys = table.select(list(self.key_fields)).to_pylist()
        converted = convert(table.drop_columns([OP_COLUMN]), self.decimals, self._source_names)
        rows: list[Row] = []
        unsendable: list[FailedRow] = []
        for index, (op, record, key) in enumerate(zip(ops, converted.records, keys, strict=True)):
            source_key = dict(zip(self.key, key.values(), strict=True))
            if record is None:
                unsendable.append(FailedRow(source_key, op, converted.refused[index]))
            else:
                rows.append(Row(op, record, source_key))
        return rows, unsendable

    def key_record(self, row: Row) -> JsonRecord:
        return {f: row.record.get(f) for f in self.key_fields}

    @abstractmethod
    async def deliver(self, rows: list[Row], receipts: Receipts) -> None:
        """Send `rows` (one hand-off of a write: all of it, or one dlt load file) and
        account for each in `receipts`."""

    @abstractmethod
    async def check(self) -> None: ...

    async def close(self) -> None:
        await self.client.close()
        await self.handoff.close()

    def refused(self, what: str, response: Response) -> PermanentSinkError:
        said = error_message(response, 300)
        detail = "" if said == f"HTTP {response.status}" else f" ({said})"
        return PermanentSinkError(
            f"destination {self.name!r}: {what} was refused with HTTP {response.status}{detail}"
        )


def match_field_problem(
    mode: Any, key_fields: Sequence[str], option: str, chosen: Any, vendor: str, matches: str
) -> tuple[tuple[str | int, ...], str] | None:
    """What is wrong with the field a CRM matches records on (`option` of sink_config,
    `chosen` its value or None), as (key path under the destination, message): one is
    needed for a composite key, and in mirror mode it must be a key field, since a delete
    found after the fact (a failed row whose record is gone, a full resync) carries only
    the key."""
    if chosen is None:
        if len(key_fields) == 1:
            return None
        message = (
            f"{vendor} {matches} one field; the key has {len(key_fields)} columns, so set "
            f"sink_config.{option}"
        )
        return ("sink_config",), message
    if mode != "mirror" or not isinstance(chosen, str) or chosen in key_fields:
        return None
    message = (
        f"mirror mode deletes {vendor} records by {option}, but {chosen!r} is not a key "
        f"field (key fields: {', '.join(key_fields)}); a delete found after the fact (a "
        "failed row whose record is gone, a full resync) carries only the key, so map the "
        "key column to it, or use mode: upsert"
    )
    return ("sink_config", option), message


def match_field_problems(
    item: Mapping[str, Any], option: str, vendor: str, matches: str
) -> list[tuple[tuple[str | int, ...], str]]:
    """`validate`'s run of `match_field_problem` on a raw destination mapping; without
    primary_key (the table's identifier fields) it is left to the sink's constructor."""
    config = item.get("sink_config")
    keys = item.get("primary_key")
    if not isinstance(config, Mapping) or not isinstance(keys, list) or not keys:
        return []
    mapping = item.get("field_mapping")
    mapping = mapping if isinstance(mapping, Mapping) else {}
    key_fields = [str(mapping.get(k, k)) for k in keys]
    mode = item.get("mode", "upsert")
    problem = match_field_problem(mode, key_fields, option, config.get(option), vendor, matches)
    return [] if problem is None else [problem]
