"""The status page (`GET /`): server-rendered HTML of `Health.status(details=True)`.

The page is a shell (header, filters) around the live part (`render_live`: the summary
and one card per destination), which the page's script fetches again from
`/ui/live` every few seconds and swaps in place. Every value is escaped here; nothing
on the page comes from anywhere but the daemon (the stylesheet, script and icon are
package files served under /ui/), and the page carries no inline script or style, so
the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from floe_egress.daemon.chart import runs_chart
from floe_egress.daemon.overview import VERDICTS

REFRESH_SECONDS = 5


def render_page(status: dict[str, Any], *, name: str = "", state: str = "") -> str:
    owner = escape(str(status.get("owner", "")))
    state = state if state in VERDICTS else ""
    options = "".join(
        f'<option value="{v}"{" selected" if v == state else ""}>{v}</option>' for v in VERDICTS
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>floe-egress · {owner}</title>
<link rel="icon" href="/ui/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/page.css">
<script src="/ui/page.js" defer></script>
</head>
<body data-refresh="{REFRESH_SECONDS}" data-now="{int(time.time() * 1000)}">
<header class="top">
  <h1>floe-egress</h1>
  <span class="owner" title="this daemon">{owner}</span>
  <form class="filters" method="get" action="/" role="search">
    <input type="search" id="filter-name" name="name" value="{escape(name)}"
      placeholder="Filter by name" autocomplete="off" aria-label="Filter destinations by name">
    <select id="filter-state" name="state" aria-label="Filter destinations by state">
      <option value="">every state</option>{options}
    </select>
    <noscript><button type="submit">Filter</button></noscript>
  </form>
  <span class="updated" id="updated" aria-live="polite">as of {_clock(time.time())}</span>
</header>
<main id="live">
{render_live(status, name=name, state=state)}
</main>
<footer>Read-only. Every destination's JSON: <a href="/status">/status</a> ·
<a href="/metrics">/metrics</a> · refreshes every {REFRESH_SECONDS} s while open.</footer>
</body>
</html>
"""


def render_live(status: dict[str, Any], *, name: str = "", state: str = "") -> str:
    """The summary and the cards, worst state first, then by name."""
    now = time.time()
    items = sorted(
        status.get("destinations", []),
        key=lambda i: (VERDICTS.index(i.get("state", "failing")), str(i.get("destination"))),
    )
    counts = {v: sum(1 for i in items if i.get("state") == v) for v in VERDICTS}
    chips = "".join(
        f'<button type="button" class="chip s-{_slug(v)}" data-state="{v}"><b>{n}</b> {v}</button>'
        for v, n in counts.items()
        if n
    )
    ready = status.get("ready")
    readiness = (
        '<span class="ready yes">ready</span>'
        if ready
        else '<span class="ready no">not ready (see /readyz)</span>'
    )
    plural = "" if len(items) == 1 else "s"
    cards = "\n".join(_card(i, now, hidden=not _matches(i, name, state)) for i in items)
    return (
        f'<section class="summary" data-total="{len(items)}">'
        f"{readiness}<span>{len(items)} destination{plural}</span>{chips}"
        f'<span class="shown" id="shown"></span></section>\n'
        f'<p class="none" id="none" hidden>No destination matches the filter.</p>\n'
        f'<div class="cards">{cards}</div>'
    )


def _matches(item: dict[str, Any], name: str, state: str) -> bool:
    named = name.lower() in str(item.get("destination", "")).lower()
    return named and (not state or item.get("state") == state)


def _card(item: dict[str, Any], now: float, *, hidden: bool) -> str:
    name = str(item.get("destination", ""))
    state = str(item.get("state", "failing"))
    route = ""
    if "source_table" in item:
        route = (
            f"{escape(str(item['source_table']))}@{escape(str(item['ref']))} → "
            f"{escape(str(item['sink_type']))} ({escape(str(item['mode']))})"
        )
    if item.get("filter"):
        route += f' <span class="filter">where {escape(str(item["filter"]))}</span>'
    runs = item.get("runs") or []
    failed = int(item.get("failed_rows") or 0)
    link = f"/status/{quote(name, safe='')}"
    return f"""<article class="dest s-{_slug(state)}" data-name="{escape(name)}"
  data-state="{escape(state)}"{" hidden" if hidden else ""}>
<header>
  <h2>{escape(name)}</h2><span class="pill s-{_slug(state)}">{escape(state)}</span>
  <span class="route">{route}</span>
  <a class="json" href="{link}">JSON</a>
</header>
<p class="reason">{escape(str(item.get("reason", "")))}</p>
<div class="body">
  <dl class="facts">{_facts(item, now)}</dl>
  <figure class="chart">{runs_chart(runs)}</figure>
</div>
<details data-key="runs:{escape(name)}"><summary>{_runs_title(len(runs))}</summary>
{_runs_table(runs, now)}</details>
{_failed_rows(item, failed, name, now)}
</article>"""


def _facts(item: dict[str, Any], now: float) -> str:
    """What is known of it; with the state store unreadable, only the daemon's part."""
    facts = [] if "source_table" not in item else _stored_facts(item, now)
    daemon = item.get("daemon") or {}
    if daemon:
        held = "this daemon" if daemon.get("held_here") else item.get("lease_holder") or "—"
        facts.append(("held by", escape(str(held))))
    if daemon.get("running"):
        facts.append(("next run", "running now"))
    elif daemon.get("next_run"):
        facts.append(("next run", _when(now, daemon["next_run"])))
    if "source_table" not in item:
        return "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    last = (item.get("runs") or [None])[0]
    if last:
        facts.append(("last run", f"{escape(last['status'])} · {_ago(now, last['finished_at'])}"))
    failed = int(item.get("failed_rows") or 0)
    parked = int(item.get("parked_rows") or 0)
    facts.append(("failed rows", f"{failed} ({parked} parked)" if parked else str(failed)))
    digest = item.get("digest")
    if digest and digest.get("state") != "ok":
        facts.append(("digest", escape(str(digest["state"]))))
    return "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)


def _stored_facts(item: dict[str, Any], now: float) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    cp = item.get("checkpoint")
    if cp:
        facts.append(
            (
                "checkpoint",
                f"{_snapshot(cp['snapshot_id'])} · written {_ago(now, cp['updated_at'])}",
            )
        )
    else:
        facts.append(("checkpoint", "none yet: the first cycle is a full load"))
    head = item.get("table_snapshot")
    if head:
        committed = _ago(now, head["timestamp_ms"] / 1000)
        facts.append(("table", f"{_snapshot(head['snapshot_id'])} · committed {committed}"))
    behind = item.get("lag_snapshots")
    since = item.get("behind_since_ms")
    if behind and since:
        stamp = datetime.fromtimestamp(since / 1000, UTC).isoformat(timespec="seconds")
        age = f'<time datetime="{stamp}" data-rel="age">since {_stamp(now, since / 1000)}</time>'
        facts.append(("lag", f"{behind} snapshot{'' if behind == 1 else 's'} · {age}"))
    elif behind == 0:
        facts.append(("lag", "up to date"))
    return facts


def _runs_table(runs: list[dict[str, Any]], now: float) -> str:
    if not runs:
        return '<p class="empty">No runs yet.</p>'
    rows = "".join(
        f'<tr class="r-{escape(str(r["status"]))}"><td>{_ago(now, r["finished_at"])}</td>'
        f"<td>{escape(str(r['status']))}</td><td>{escape(str(r['plan']))}</td>"
        f"<td>{_snapshot(r['from_snapshot'])} → {_snapshot(r['to_snapshot'])}</td>"
        f'<td class="n">{r["inserted"]}</td><td class="n">{r["updated"]}</td>'
        f'<td class="n">{r["deleted"]}</td><td class="n">{r["failed"]}</td>'
        f'<td class="n">{r["invalid"]}</td><td class="n">{_span(r["duration_seconds"])}</td>'
        f'<td class="msg">{escape(str(r.get("error") or ""))}</td></tr>'
        for r in runs
    )
    return (
        '<table class="runs"><thead><tr><th>finished</th><th>status</th><th>plan</th>'
        '<th>snapshots</th><th class="n">inserted</th><th class="n">updated</th>'
        '<th class="n">deleted</th><th class="n">failed</th><th class="n">invalid</th>'
        '<th class="n">took</th><th>error</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _failed_rows(item: dict[str, Any], failed: int, name: str, now: float) -> str:
    shown = item.get("failed_rows_shown") or []
    if not failed:
        return ""
    more = f" (the first {len(shown)} shown)" if failed > len(shown) else ""
    rows = "".join(
        f"<tr><td><code>{escape(_key(r['key']))}</code></td><td>{escape(str(r['op']))}</td>"
        f'<td class="n">{r["attempts"]}</td><td>{"parked" if r["parked"] else "retrying"}</td>'
        f"<td>{_ago(now, r['last_seen'])}</td>"
        f'<td class="msg">{escape(str(r["reason"]))}</td></tr>'
        for r in shown
    )
    return (
        f'<details class="failed" data-key="failed:{escape(name)}" open>'
        f"<summary>{failed} failed row{'' if failed == 1 else 's'}{more}</summary>"
        '<table class="failed"><thead><tr><th>key</th><th>op</th><th class="n">attempts</th>'
        "<th>state</th><th>last seen</th><th>the destination said</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )


def render_login(*, message: str = "", next_path: str = "/") -> str:
    note = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>floe-egress · sign in</title>
<link rel="icon" href="/ui/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/page.css">
</head>
<body class="login">
<form method="post" action="/login" class="login">
  <h1>floe-egress</h1>
  <p>This daemon is reachable beyond its own machine: reading its status needs the
  token of <code>server.token</code>.</p>{note}
  <label for="token">Token</label>
  <input type="password" id="token" name="token" autocomplete="current-password" required>
  <input type="hidden" name="next" value="{escape(next_path)}">
  <button type="submit">Sign in</button>
</form>
</body>
</html>
"""


def _runs_title(count: int) -> str:
    return {0: "No runs yet", 1: "The last run"}.get(count, f"The last {count} runs")


def _slug(state: str) -> str:
    return state.replace(" ", "-")


def _key(key: Any) -> str:
    if isinstance(key, dict) and len(key) == 1:
        return str(next(iter(key.values())))
    return str(key)


def _snapshot(snapshot_id: Any) -> str:
    if snapshot_id is None:
        return "—"
    return f'<span class="snap" title="snapshot id">{escape(str(snapshot_id))}</span>'


def _clock(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%H:%M:%S UTC")


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _ago(now: float, then: float) -> str:
    """A past moment: its time here, which the page's script turns into "12 s ago" (on
    the daemon's clock), so that the HTML changes only when the data does."""
    stamp = datetime.fromtimestamp(then, UTC).isoformat(timespec="seconds")
    return f'<time datetime="{stamp}" data-rel="ago" title="{stamp}">{_stamp(now, then)}</time>'


def _when(now: float, iso: str) -> str:
    """A coming moment (ISO 8601 from the scheduler): "in 12 s" once the script runs."""
    try:
        at = datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return escape(iso)
    stamp = escape(iso)
    return f'<time datetime="{stamp}" data-rel="in" title="{stamp}">{_stamp(now, at)}</time>'


def _stamp(now: float, unix: float) -> str:
    moment = datetime.fromtimestamp(unix, UTC)
    if abs(now - unix) < 20 * 3600:
        return moment.strftime("%H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["REFRESH_SECONDS", "render_live", "render_login", "render_page"]
