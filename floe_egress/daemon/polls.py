"""Cheap change polling: a scheduled poll runs a cycle only when one could do something.

A cycle reads two things: the table, and what the state store holds for the destination
(its checkpoint, the digest's meta, requests, failed rows: `store.PollMarks`). A table
is unchanged while its metadata pointer is (changes/pointer.py: one SQL row for the SQL
catalog, a load for the others). After a cycle that succeeded, its destination's
`Poller` keeps the pointer of the table the cycle read and the marks its commit left.
A poll skips the cycle ("unchanged") only when the pointer and the marks are both the
same and nothing waits: no resync or force request, no repair keys (`verify --repair`),
no interrupted delivery, no failed row due for retry, and a digest the next cycle
trusts. Otherwise it runs a full cycle:

- "moved": the pointer moved, or no cycle of this runner succeeded yet (the first poll
  after start, after a reload, after a failed cycle);
- "pending": the pointer did not move but something in the store did or waits;
- "unknown": the pointer or the store could not be read (the cycle says why).

Failed rows are retried by every cycle that runs, as before; on an idle table a poll
runs one for them once the oldest was last tried `FAILED_RETRY_SECONDS` ago.

What a poller keeps is in memory: a restarted daemon runs one full cycle per
destination first. Only the schedule polls: a nudge, a lease just taken and a reload
always run a full cycle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from floe_egress.config.models import Destination
from floe_egress.daemon.digest import BEFORE_DIGESTS, DAMAGED
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.tables import NO_POLL_CHECK
from floe_egress.state.store import PollMarks

PollResult = Literal["unchanged", "moved", "pending", "unknown"]
POLL_RESULTS: tuple[PollResult, ...] = ("unchanged", "moved", "pending", "unknown")
FAILED_RETRY_SECONDS = 10.0
"""How often failed rows are retried while the table does not change (the schedule's
default interval before polls were cheap: a row is parked after as many seconds)."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What the last successful cycle left: the table it read, the store's marks after."""

    pointer: str
    marks: PollMarks


class Poller:
    """The polls of one destination; `check` and `settle` block (call them in a thread)."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self.settled: Settled | None = None
        self.last: tuple[float, PollResult] | None = None
        """When the latest poll was, and what it found."""

    def check(self, rt: Runtime) -> PollResult:
        settled = self.settled
        if settled is None or NO_POLL_CHECK:
            return "moved"
        if rt.tables.pointer(rt.catalog, self.dest.source_table) != settled.pointer:
            return "moved"
        marks = rt.store.poll_marks(self.dest.name)
        if marks != settled.marks or waiting(marks, time.time()):
            return "pending"
        rt.tables.settled(self.dest.source_table)
        return "unchanged"

    def settle(self, rt: Runtime, pointer: str) -> None:
        """After a successful cycle that read the table at `pointer`."""
        marks = rt.store.poll_marks(self.dest.name)
        self.settled = Settled(pointer, marks) if trusted(marks) else None

    def forget(self) -> None:
        """The next poll runs a full cycle (the last one failed)."""
        self.settled = None


def waiting(marks: PollMarks, now: float) -> bool:
    """Whether the store holds something the next cycle acts on whatever the table."""
    if marks.requests or marks.digest_reserved:
        return True
    due = now - FAILED_RETRY_SECONDS
    return marks.failed_last_seen is not None and marks.failed_last_seen <= due


def trusted(marks: PollMarks) -> bool:
    """Whether the next cycle trusts the digest (daemon/digest.py `inspect`, from the
    meta alone: no digest after a checkpoint, one to build or rebuild, a lost segment)."""
    if marks.digest is None:
        return marks.checkpoint is None
    fingerprint, held_segments, _ = marks.digest
    return fingerprint not in (BEFORE_DIGESTS, DAMAGED) and marks.digest_held >= held_segments


__all__ = [
    "FAILED_RETRY_SECONDS",
    "POLL_RESULTS",
    "PollResult",
    "Poller",
    "Settled",
    "trusted",
    "waiting",
]
