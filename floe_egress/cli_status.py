"""What `floe-egress status` prints: one table row per destination, then, per
destination, what does not fit in a cell (errors, invalid keys, a digest's trouble).

The table is rich's: coloured and as wide as the terminal on a terminal; off one (a
pipe, a file) without colour and as wide as its widest row, so that no cell wraps and
every line of the table has its column borders at the same places. `--json` output is
not made here. The statuses are already redacted (daemon/health.py).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from floe_egress.daemon.overview import verdict
from floe_egress.daemon.result import invalid_lines

COLUMNS = (
    "destination",
    "table@ref",
    "sink (mode)",
    "state",
    "checkpoint",
    "lag",
    "last run",
    "i/u/d/failed",
    "took",
    "failed rows",
    "digest",
)
"""The table's header; the last run's counts are inserted/updated/deleted/failed."""
PIPE_WIDTH = 200
"""The least width of the table's lines off a terminal."""
_UNBOUNDED = 1_000_000
"""The width the table is measured at off a terminal (rich measures up to the width)."""
_STATE_STYLES = {
    "healthy": "green",
    "failing": "red",
    "retrying": "yellow",
    "rows failing": "yellow",
    "never synced": "yellow",
    "disabled": "dim",
}


def human_seconds(seconds: float) -> str:
    """`seconds` in the largest whole unit it holds: 42 s, 3 min, 5 h, 2 d."""
    whole = int(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def state_of(status: Mapping[str, Any]) -> str:
    """The status page's word for it (daemon/overview.py `verdict`): failing, rows
    failing, never synced, healthy or disabled."""
    return verdict(dict(status))[0]


def _digest_cell(digest: Mapping[str, Any] | None) -> str:
    if digest is None:
        return "-"
    state = str(digest["state"])
    if state != "ok":
        return state.split(":")[0].split(" (")[0]
    segments = int(digest["segments"])
    cell = f"ok ({digest['entries']} entries, {segments} segment{'' if segments == 1 else 's'}"
    return cell + (f", {digest['reserved']} reserved)" if digest["reserved"] else ")")


def _run_cells(run: Mapping[str, Any] | None, now: float) -> tuple[str, str, str]:
    """(last run, i/u/d/failed, took)."""
    if run is None:
        return "-", "-", "-"
    ago = human_seconds(max(0.0, now - float(run["finished_at"])))
    counts = "/".join(str(run[k]) for k in ("inserted", "updated", "deleted", "failed"))
    took = float(run["duration_seconds"])
    return (
        f"{run['status']} ({run['plan'] or '-'}) {ago} ago",
        counts,
        f"{took:.1f} s" if took < 60 else human_seconds(took),
    )


def status_row(status: Mapping[str, Any], now: float) -> list[str]:
    """The cells of one destination, in the order of `COLUMNS`."""
    checkpoint = status["checkpoint"]
    lag = status["lag_seconds"]
    return [
        str(status["destination"]),
        f"{status['source_table']}@{status['ref']}",
        f"{status['sink_type']} ({status['mode']})",
        state_of(status),
        "none" if checkpoint is None else str(checkpoint["snapshot_id"]),
        "-" if lag is None else human_seconds(lag),
        *_run_cells(status["last_run"], now),
        str(status["failed_rows"]),
        _digest_cell(status.get("digest")),
    ]


def details(status: Mapping[str, Any]) -> list[str]:
    """What the table leaves out of one destination (none when nothing)."""
    lines = []
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    run = status["last_run"]
    if run is not None:
        if run["error"]:
            lines.append(f"last run error: {run['error']}")
        lines += invalid_lines(run["invalid"], run["invalid_sample"])
    digest = status.get("digest")
    if digest is not None and _digest_cell(digest) != digest["state"] and digest["state"] != "ok":
        lines.append(f"digest: {digest['state']}")
    return lines


def print_status(statuses: Sequence[Mapping[str, Any]], *, now: float) -> None:
    terminal = sys.stdout.isatty()
    table = Table(header_style="bold" if terminal else None)
    for column in COLUMNS:  # a narrow terminal folds a long value, never cuts it short
        table.add_column(column, overflow="fold")
    for status in statuses:
        cells = [Text(cell) for cell in status_row(status, now)]
        if terminal:
            cells[3].stylize(_STATE_STYLES.get(cells[3].plain, ""))
        table.add_row(*cells)
    console = Console(
        file=sys.stdout,
        force_terminal=terminal,
        no_color=not terminal,
        color_system="auto" if terminal else None,
        highlight=False,
        width=None if terminal else _UNBOUNDED,
    )
    if not terminal:  # never wrap a cell: a script reads the columns
        console.width = max(PIPE_WIDTH, console.measure(table).maximum)
    console.print(table)
    for status in statuses:
        if lines := details(status):
            console.print(f"{status['destination']}:", markup=False, soft_wrap=True)
            for line in lines:
                console.print(f"  {line}", markup=False, soft_wrap=True)


__all__ = ["COLUMNS", "details", "human_seconds", "print_status", "state_of", "status_row"]
