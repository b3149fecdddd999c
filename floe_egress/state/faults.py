"""The fault seam: named points inside the store's transactions where tests break things.

A store opened with `faults` calls it at each point with the open transaction's cursor;
the hook may raise, or break the connection, to show what a failure there leaves behind.
Production opens stores without one, and the store then skips the call.
"""

from __future__ import annotations

from typing import Literal, Protocol

from floe_egress.state.cursor import Cursor

FaultPoint = Literal["digest_write"]
"""`digest_write`: just before a digest segment is written, by `reserve_digest` or
inside `commit_cycle` (after its checkpoint, run and failed rows)."""


class Faults(Protocol):
    def __call__(self, point: FaultPoint, cur: Cursor) -> None:
        """Called at `point`, inside the transaction `cur` belongs to."""
