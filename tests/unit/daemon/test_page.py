"""The status page's HTML from status dicts a daemon can produce, odd ones included: a
destination whose state could not be read, one with no runs, values that are markup."""

from __future__ import annotations

import re
from typing import Any

from floe_egress.daemon.chart import runs_chart
from floe_egress.daemon.overview import verdict
from floe_egress.daemon.page import render_live, render_page

NOW = 1_800_000_000.0
EVIL = '<script>alert("x")</script>&"\''


def run(**changes: Any) -> dict[str, Any]:
    base = {
        "started_at": NOW - 60,
        "finished_at": NOW - 59,
        "status": "ok",
        "plan": "diff",
        "from_snapshot": 1,
        "to_snapshot": 2,
        "inserted": 0,
        "updated": 0,
        "deleted": 0,
        "invalid": 0,
        "failed": 0,
        "error": None,
        "duration_seconds": 0.0,
    }
    return base | changes


def item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "destination": "crm",
        "source_table": "gold.customers",
        "ref": "main",
        "sink_type": "rest_api",
        "mode": "mirror",
        "enabled": True,
        "checkpoint": {"snapshot_id": 2, "snapshot_timestamp_ms": 0, "updated_at": NOW - 5},
        "table_snapshot": {"snapshot_id": 2, "timestamp_ms": int(NOW * 1000) - 5000},
        "lag_seconds": 0.0,
        "lag_snapshots": 0,
        "behind_since_ms": None,
        "last_run": None,
        "failed_rows": 0,
        "digest": {"state": "ok", "segments": 1, "reserved": 0, "entries": 3},
        "error": None,
        "runs": [run()],
        "failed_rows_shown": [],
        "parked_rows": 0,
        "lease_holder": "host:1:abc",
        "daemon": {"state": "healthy", "held_here": True, "next_run": None, "running": False},
    }
    base |= changes
    base["state"], base["reason"] = verdict(base)
    return base


def status(*items: dict[str, Any]) -> dict[str, Any]:
    return {"owner": "host:1:abc", "ready": True, "destinations": list(items)}


def test_an_unreadable_destination_claims_nothing_it_cannot_know() -> None:
    down = {
        "destination": "crm",
        "error": "state store: connection refused",
        "daemon": {"state": "healthy", "held_here": True, "next_run": None, "running": False},
    }
    down["state"], down["reason"] = verdict(down)
    html = render_live(status(down))
    assert 'data-state="failing"' in html
    assert "status unavailable: state store: connection refused" in html
    assert "checkpoint" not in html and "failed rows" not in html
    assert "<dt>held by</dt><dd>this daemon</dd>" in html


def test_values_that_are_markup_stay_text() -> None:
    hostile = item(
        source_table=EVIL,
        ref=EVIL,
        error=EVIL,
        runs=[run(status="failed", error=EVIL, plan=EVIL)],
        failed_rows=1,
        failed_rows_shown=[
            {
                "key": {"id": EVIL},
                "op": "insert",
                "reason": EVIL,
                "attempts": 1,
                "first_seen": NOW,
                "last_seen": NOW,
                "parked": True,
            }
        ],
    )
    html = render_page(status(hostile), name=EVIL, state=EVIL)
    assert "<script>alert" not in html
    assert html.count("&lt;script&gt;") >= 5
    assert re.findall(r"<script\b", html) == ["<script"], "only the page's own script tag"
    assert ' style="' not in html and " onerror" not in html and " onclick" not in html


def test_odd_values_do_not_break_the_page() -> None:
    odd = [
        item(source_table=None, runs=[]),
        item(destination="b", runs=[run(duration_seconds=0.0)], checkpoint=None),
        item(destination="c", lag_snapshots=None, table_snapshot=None, daemon={}),
        item(destination="d", digest=None, failed_rows=None),
    ]
    html = render_live(status(*odd))
    assert html.count("<article") == 4
    assert "No runs to chart yet." in html


def test_the_chart_draws_each_op_and_marks_failures() -> None:
    svg = runs_chart(
        [
            run(inserted=1_000_000, duration_seconds=12.5),
            run(updated=3, deleted=1, duration_seconds=0.2),
            run(status="failed", error="HTTP 401", duration_seconds=0.1),
        ]
    )
    assert svg.count('class="c-inserted"') == 1
    assert svg.count('class="c-updated"') == 1 and svg.count('class="c-deleted"') == 1
    assert svg.count('class="c-fail"') == 1
    assert svg.count('class="c-time"') == 3
    heights = [
        float(h) for h in re.findall(r'class="c-(?:updated|deleted)"[^>]*height="([\d.]+)"', svg)
    ]
    assert all(h >= 0.5 for h in heights), "a 3-row cycle still shows beside a full load"
    assert "1000000 inserted" in svg, "each column's numbers are in its tooltip"


def test_the_state_filter_from_the_address_hides_the_others() -> None:
    html = render_page(status(item(), item(destination="b", failed_rows=2)), state="rows failing")
    assert re.search(r'data-name="crm"\s+data-state="healthy" hidden', html)
    assert re.search(r'data-name="b"\s+data-state="rows failing">', html)
    assert '<option value="rows failing" selected>' in html


def test_a_filter_is_shown_beside_the_route() -> None:
    html = render_live(status(item(filter="plan = '<b>' and mrr > 1000")))
    assert "where plan = &#x27;&lt;b&gt;&#x27; and mrr &gt; 1000" in html
