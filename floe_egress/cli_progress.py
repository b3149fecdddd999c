"""The progress bars of `floe-egress sync` (and `failures --retry`) on a terminal.

A cycle that sends many rows (a full load, a digest-based resync, a resync) gets one bar
per destination: rows sent of rows to send, the rate and the time left, drawn by rich
on stderr so that stdout keeps only the results. Nothing at all is drawn when stderr is
not a terminal, nor for `--json`; the daemon never asks for bars. While the bars are
shown, what is written to `sys.stderr` (the log lines) is printed above them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Display
from rich.text import Text

from floe_egress.daemon.progress import NO_PROGRESS, Progress

Watch = Callable[[str], Progress]
"""What watches the cycle of the destination named."""


class _Rate(ProgressColumn):
    """Rows per second since the bar appeared (writes are large: an average is steadier
    than the rate between two of them)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time or task.elapsed
        if not elapsed or not task.completed:
            return Text("? rows/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:,.0f} rows/s", style="progress.data.speed")


class _Bars:
    """One rich display for the cycles of one command, shown when the first bar starts."""

    def __init__(self, console: Console) -> None:
        self.display = Display(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"),
            TaskProgressColumn(),
            _Rate(),
            TimeRemainingColumn(elapsed_when_finished=True),
            console=console,
            redirect_stdout=False,
        )
        self._shown = False

    def add(self, description: str, total: int) -> TaskID:
        if not self._shown:
            self.display.start()
            self._shown = True
        return self.display.add_task(description, total=total)

    def stop(self) -> None:
        if self._shown:
            self.display.stop()


class _Bar:
    """The `Progress` of one destination's cycle: a task of the shared display."""

    def __init__(self, bars: _Bars, destination: str) -> None:
        self._bars = bars
        self._destination = destination
        self._task: TaskID | None = None

    def start(self, total: int, *, plan: str) -> None:
        if total > 0:
            self._task = self._bars.add(f"{self._destination} ({plan})", total)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self._bars.display.advance(self._task, rows)

    def close(self, *, finished: bool) -> None:
        if self._task is None:
            return
        display, task = self._bars.display, self._task
        if finished:  # the estimate counted a key sent again in place of its change twice
            display.update(task, total=display.tasks[task].completed)
        display.stop_task(task)
        self._task = None


@contextmanager
def progress_bars(stream: TextIO, *, enabled: bool) -> Iterator[Watch]:
    """What watches each destination's cycle: a bar on `stream` when `enabled` and
    `stream` is a terminal rich can draw on, else nothing (`NO_PROGRESS`)."""
    console = Console(file=stream) if enabled and stream.isatty() else None
    if console is None or not console.is_terminal or console.is_dumb_terminal:
        yield lambda destination: NO_PROGRESS
        return
    bars = _Bars(console)
    try:
        yield lambda destination: _Bar(bars, destination)
    finally:
        bars.stop()


__all__ = ["Watch", "progress_bars"]
