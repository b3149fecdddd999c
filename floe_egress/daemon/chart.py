"""The status page's chart of a destination's last runs, as inline SVG.

One column per run, oldest on the left: a bar of the rows it sent, stacked by op
(inserted, updated, deleted, failed), its height on a log scale so that a 3-row cycle
still shows beside a full load; a dot for the run's duration on a linear scale of its
own; a cross under a run that failed. Every column carries a `<title>` (the browser's
tooltip) with the exact numbers. Colours come from the page's stylesheet classes, so
the SVG has no style attributes (the page's Content-Security-Policy forbids them).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

WIDTH = 300
HEIGHT = 72
BASE = 60
"""The bars' baseline; below it, the failed-run marks."""
OPS = ("inserted", "updated", "deleted", "failed")


def runs_chart(runs: list[dict[str, Any]]) -> str:
    """SVG of `runs` (newest first, as the store gives them)."""
    if not runs:
        return '<p class="empty">No runs to chart yet.</p>'
    ordered = list(reversed(runs))
    slot = WIDTH / max(len(ordered), 10)
    top_rows = max(sum(int(r[op]) for op in OPS) for r in ordered)
    top_time = max(float(r["duration_seconds"]) for r in ordered) or 1.0
    scale = math.log10(1 + top_rows) or 1.0
    columns = []
    dots = []
    for i, run in enumerate(ordered):
        x = i * slot
        columns.append(_column(run, x, slot, scale))
        cy = BASE - 4 - (BASE - 8) * float(run["duration_seconds"]) / top_time
        dots.append((x + slot / 2, cy))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in dots)
    circles = "".join(f'<circle class="c-time" cx="{x:.1f}" cy="{y:.1f}" r="2"/>' for x, y in dots)
    label = (
        f"Last {len(ordered)} runs: rows sent by op (log scale, most {top_rows}) "
        f"and duration (longest {top_time:.2f} s)"
    )
    return (
        f'<svg class="runs-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<line class="c-axis" x1="0" y1="{BASE}" x2="{WIDTH}" y2="{BASE}"/>'
        + "".join(columns)
        + f'<polyline class="c-time-line" points="{line}"/>{circles}</svg>'
        + '<figcaption><span class="key k-inserted">inserted</span>'
        '<span class="key k-updated">updated</span><span class="key k-deleted">deleted</span>'
        '<span class="key k-failed">failed</span><span class="key k-time">duration</span>'
        "</figcaption>"
    )


def _column(run: dict[str, Any], x: float, slot: float, scale: float) -> str:
    counts = {op: int(run[op]) for op in OPS}
    total = sum(counts.values())
    height = (BASE - 4) * math.log10(1 + total) / scale if total else 0.0
    width = max(1.0, slot * 0.7)
    left = x + (slot - width) / 2
    parts = []
    y = float(BASE)
    for op, n in counts.items():
        if not n:
            continue
        h = height * n / total
        y -= h
        parts.append(
            f'<rect class="c-{op}" x="{left:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{max(h, 0.5):.1f}"/>'
        )
    if run["status"] == "failed":
        cx, cy = x + slot / 2, BASE + 6
        parts.append(
            f'<path class="c-fail" d="M{cx - 3:.1f},{cy - 3:.1f} L{cx + 3:.1f},{cy + 3:.1f} '
            f'M{cx - 3:.1f},{cy + 3:.1f} L{cx + 3:.1f},{cy - 3:.1f}"/>'
        )
    tip = (
        f"{run['status']} ({run['plan']}): {counts['inserted']} inserted, "
        f"{counts['updated']} updated, {counts['deleted']} deleted, {counts['failed']} failed "
        f"in {float(run['duration_seconds']):.2f} s"
    )
    if run.get("error"):
        tip += f": {run['error']}"
    hit = f'<rect class="c-hit" x="{x:.1f}" y="0" width="{slot:.1f}" height="{HEIGHT}"/>'
    return f"<g><title>{escape(tip)}</title>{hit}{''.join(parts)}</g>"


__all__ = ["runs_chart"]
