"""What a cycle tells whoever watches it send many rows (a full load, a digest-based
resync, a resync): how many rows it is about to send, then the rows of each write.

The command line draws a bar from it on a terminal (floe_egress/cli_progress.py); the
daemon and `--json` output watch nothing (`NO_PROGRESS`). Called once per write, never
per row, on the event loop.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, *, plan: str) -> None:
        """Before the first write: the rows the cycle will send (an estimate when keys
        are sent again in place of their change-set rows: `close` settles it)."""

    def advance(self, rows: int) -> None:
        """After a write the destination answered: its rows (failed ones included)."""

    def close(self, *, finished: bool) -> None:
        """The cycle stopped sending: `finished` when every row was sent (the total is
        then what was sent), not when an error ended it."""


class _NoProgress:
    def start(self, total: int, *, plan: str) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def close(self, *, finished: bool) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()
"""Watches nothing: the default of `run_cycle`."""

__all__ = ["NO_PROGRESS", "Progress"]
