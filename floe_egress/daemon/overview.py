"""What the status page shows of a destination: its state in one word and the reason in
words, its recent runs and its failed rows.

`history` reads what `destination_status` leaves out (the last runs, the first failed
rows, how many are parked); `verdict` sums up a destination's status JSON (with the
daemon's part) as one of `VERDICTS` and a sentence. Both serve the page and the
per-destination JSON (`GET /status/{name}`), so the two always agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from floe_egress.config.models import Destination

if TYPE_CHECKING:
    from floe_egress.daemon.runtime import Runtime

RUNS_SHOWN = 20
FAILED_SHOWN = 50

Verdict = Literal[
    "failing", "retrying", "rows failing", "never synced", "healthy", "elsewhere", "disabled"
]
VERDICTS: tuple[Verdict, ...] = (
    "failing",
    "retrying",
    "rows failing",
    "never synced",
    "healthy",
    "elsewhere",
    "disabled",
)
"""Worst first: the order of the page's state filter and of its summary; `floe-egress
status` says the same words."""


def history(rt: Runtime, dest: Destination) -> dict[str, Any]:
    """The last `RUNS_SHOWN` runs (newest first) and the first `FAILED_SHOWN` failed rows."""
    store = rt.store
    return {
        "runs": [r.to_json() for r in store.runs(dest.name, limit=RUNS_SHOWN)],
        "failed_rows_shown": [
            r.to_json() for r in store.failed_rows(dest.name, limit=FAILED_SHOWN)
        ],
        "parked_rows": store.parked_row_count(dest.name),
        "lease_holder": store.lease_holder(dest.name),
    }


def verdict(item: dict[str, Any]) -> tuple[Verdict, str]:
    """One destination's state and why, from its status JSON (with the daemon's part
    when a daemon asks; `floe-egress status` has only the state store's)."""
    daemon = item.get("daemon") or {}
    error = item.get("error")
    if "source_table" not in item:  # the state store could not be read
        return "failing", f"status unavailable: {error}"
    if not item.get("enabled", True):
        return "disabled", "disabled in the configuration (enabled: false)"
    if daemon and not daemon.get("held_here", True):
        holder = item.get("lease_holder")
        by = f" ({holder})" if holder else ""
        return "elsewhere", f"another daemon{by} holds its lease and syncs it"
    if daemon.get("error"):
        failures = daemon.get("consecutive_failures") or 1
        times = "once" if failures == 1 else f"{failures} times in a row"
        if daemon.get("state") == "failing":
            return "failing", f"failed {times}: {daemon['error']}"
        retry = daemon.get("next_attempt_at")
        when = f"; next attempt at {retry}" if retry else ""
        return "retrying", f"failed {times}: {daemon['error']}{when}"
    if error:
        return "failing", str(error)
    last = item.get("last_run")
    if last and last.get("status") == "failed":
        return "failing", f"the last run failed: {last.get('error') or 'no message'}"
    failed = int(item.get("failed_rows") or 0)
    if failed:
        return "rows failing", _rows_reason(failed, item)
    if item.get("checkpoint") is None:
        return "never synced", "no cycle has finished yet: the first is a full load"
    return "healthy", "up to date" if not item.get("lag_snapshots") else "catching up"


def _rows_reason(failed: int, item: dict[str, Any]) -> str:
    parked = int(item.get("parked_rows") or 0)
    rows = "row" if failed == 1 else "rows"
    parts = [f"{failed} {rows} refused by the destination"]
    if parked:
        parts.append(f"{parked} parked (no longer retried)")
    shown = item.get("failed_rows_shown") or []
    if shown:
        parts.append(f"e.g. {shown[0]['reason']}")
    return "; ".join(parts)


__all__ = [
    "FAILED_SHOWN",
    "RUNS_SHOWN",
    "VERDICTS",
    "Verdict",
    "history",
    "verdict",
]
