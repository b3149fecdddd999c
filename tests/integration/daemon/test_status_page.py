"""The status page in a real headless Chromium: a running daemon with three destinations
(one healthy, one refused with a 401, one whose bad rows are parked) shows each with
its state and reason, updates itself after a commit and a nudge without a reload, logs
no console error, asks nothing of any host but 127.0.0.1, and shows no secret."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.fixtures.browser import WatchedPage, browser, watched_page
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World, customers, initial_rows
from tests.integration.daemon.conftest import StartDaemon, destination

__all__ = ["browser"]  # the fixture, used by name

HOURLY = {"interval_seconds": 3600}
API_SECRET = "Bearer good"  # the API's token, given to the daemon as a secret
WRONG_SECRET = "Bearer expired-but-still-secret-7f3a"
HOSTILE = "<img src=x onerror=alert(1)>"
"""An email the support API refuses, which it quotes back: shown as text, never run."""
SCREENSHOT_COPY = os.environ.get("FLOE_EGRESS_SCREENSHOT")
"""Where `make screenshot` wants the page's picture (the README's PNG)."""


@pytest.fixture
async def lax_api() -> AsyncIterator[FakeRestApi]:
    """The API behind the parked destination: per-record errors for bad emails."""
    server = await FakeRestApi(token=API_SECRET, per_record_errors=True).start()
    yield server
    await server.stop()


def three(api: FakeRestApi, lax: FakeRestApi) -> list[dict[str, Any]]:
    no_email = {"customer_id": "external_id", "plan": "plan_tier"}
    return [
        destination(
            api.url,
            "crm",
            field_mapping=no_email,
            schedule=HOURLY,
            sink_config={
                "url": api.url + "/v1/contacts",
                "headers": {"Authorization": "${env:CRM_TOKEN}"},
            },
        ),
        destination(
            api.url,
            "billing",
            field_mapping=no_email,
            schedule=HOURLY,
            retry={"max_attempts": 1, "timeout_seconds": 5},
            sink_config={
                "url": api.url + "/v1/contacts",
                "headers": {"Authorization": "${env:BILLING_TOKEN}"},
            },
        ),
        destination(
            lax.url,
            "support",
            schedule=HOURLY,
            max_attempts=1,
            retry={"max_attempts": 1, "timeout_seconds": 5},
            sink_config={
                "url": lax.url + "/v1/contacts",
                "headers": {"Authorization": "${env:CRM_TOKEN}"},
            },
        ),
    ]


async def card(page: Page, name: str) -> dict[str, str]:
    article = page.locator(f'article.dest[data-name="{name}"]')
    return {
        "state": await article.get_attribute("data-state") or "",
        "pill": await article.locator(".pill").inner_text(),
        "reason": await article.locator(".reason").inner_text(),
        "text": await article.inner_text(),
    }


async def test_the_page_shows_three_destinations_and_follows_a_commit(
    world: World,
    api: FakeRestApi,
    lax_api: FakeRestApi,
    start_daemon: StartDaemon,
    browser: Browser,
    tmp_path: Path,
) -> None:
    rows = initial_rows(6)
    rows[2] = (3, "c3-at-x.io", "pro")  # refused by the support API: parked
    rows[4] = (5, HOSTILE, "free")
    await asyncio.to_thread(world.table.append, customers(rows))
    daemon = await start_daemon(
        world,
        three(api, lax_api),
        env={"CRM_TOKEN": API_SECRET, "BILLING_TOKEN": WRONG_SECRET},
    )

    def settled(body: Any) -> bool:
        by = {d["destination"]: d for d in body["destinations"]}
        return (
            by["crm"]["checkpoint"] is not None
            and by["billing"]["daemon"]["state"] == "failing"
            and by["support"]["failed_rows"] == 2
        )

    await daemon.wait_status("/status", 200, within=30, where=settled)

    watched = await watched_page(browser)
    page = watched.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    response = await page.goto(daemon.url + "/")
    assert response is not None and response.status == 200
    assert await page.locator("article.dest").count() == 3

    crm = await card(page, "crm")
    assert (crm["state"], crm["pill"]) == ("healthy", "healthy")
    assert "up to date" in crm["text"]
    billing = await card(page, "billing")
    assert (billing["state"], billing["pill"]) == ("failing", "failing")
    assert "401" in billing["reason"], billing["reason"]
    support = await card(page, "support")
    assert support["state"] == "rows failing"
    assert "2 rows refused by the destination" in support["reason"]
    assert "2 parked" in support["reason"]
    assert "email 'c3-at-x.io' is not a valid address" in support["reason"]
    failed_rows = page.locator('article[data-name="support"] table.failed tbody tr')
    assert await failed_rows.count() == 2
    cells = await failed_rows.nth(0).locator("td").all_inner_texts()
    assert cells[0] == "3" and cells[3] == "parked"
    assert cells[-1] == "email 'c3-at-x.io' is not a valid address"
    cells = await failed_rows.nth(1).locator("td").all_inner_texts()
    assert cells[0] == "5" and cells[-1] == f"email '{HOSTILE}' is not a valid address"

    # The chart and the runs table of the healthy destination show its full load.
    assert await page.locator('article[data-name="crm"] svg.runs-chart rect.c-inserted').count()
    await page.locator('article[data-name="crm"] details[data-key="runs:crm"] summary').click()
    first_run = page.locator('article[data-name="crm"] table.runs tbody tr').first
    run_cells = await first_run.locator("td").all_inner_texts()
    assert run_cells[1:3] == ["ok", "full"] and run_cells[4] == "6"

    # A commit and a nudge: the card follows without a reload, the opened table stays
    # open and the closed one closed.
    await page.locator('details[data-key="failed:support"] summary').click()
    assert await page.locator('details[data-key="failed:support"]').get_attribute("open") is None
    await page.evaluate("window.__sameDocument = 'yes'")
    before = (await daemon.get("/status/crm"))[1]["checkpoint"]["snapshot_id"]
    changed = [(1, "user1@example.com", "enterprise"), *rows[1:]]
    await asyncio.to_thread(world.table.overwrite, customers(changed))
    head = world.reload().current_snapshot()
    assert head is not None and head.snapshot_id != before
    assert (await daemon.nudge("crm"))[0] == 202
    await page.wait_for_function(
        """(snap) => {
            const card = document.querySelector('article[data-name="crm"]');
            return card && card.querySelector('.facts').textContent.includes(
                'checkpoint' + snap);
        }""",
        arg=str(head.snapshot_id),
        timeout=30_000,
    )
    assert await page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    assert await page.locator('details[data-key="runs:crm"]').get_attribute("open") is not None
    assert await page.locator('details[data-key="failed:support"]').get_attribute("open") is None
    lag = await page.locator('article[data-name="support"] .facts').inner_text()
    assert "2 snapshots" in lag and " s behind" in lag, lag
    newest = await first_run.locator("td").all_inner_texts()
    assert newest[1] == "ok" and newest[5] == "1", newest  # one row updated

    # Filters: by name, then by state (what a person with 100 destinations uses).
    await page.fill("#filter-name", "bill")
    assert await page.locator("article.dest:visible").count() == 1
    await page.fill("#filter-name", "")
    await page.select_option("#filter-state", "rows failing")
    visible = page.locator("article.dest:visible")
    assert [await visible.nth(0).get_attribute("data-name")] == ["support"]
    assert await visible.count() == 1
    assert "state=rows+failing" in page.url
    await page.select_option("#filter-state", "")

    await expect_clean(watched, [API_SECRET, WRONG_SECRET, "expired-but-still-secret"])
    assert dialogs == [], "a value from the table ran as script"
    assert await page.locator('article[data-name="support"] .msg img').count() == 0
    assert await page.locator("img").count() == 0, "the page has no images at all"
    await page.locator('details[data-key="failed:support"] summary').click()
    picture = tmp_path / "status-page.png"
    await page.screenshot(path=str(picture), full_page=True)
    assert picture.stat().st_size > 10_000
    if SCREENSHOT_COPY:
        shutil.copyfile(picture, SCREENSHOT_COPY)


async def expect_clean(watched: WatchedPage, secrets: list[str]) -> None:
    page = watched.page
    html = await page.content()
    for secret in secrets:
        assert secret not in html
    assert watched.console_errors == []
    assert watched.left_localhost == []
    assert watched.requests, "the route saw the page's requests"
    assert any(url.endswith("/ui/live") for url in watched.requests), "it refreshed itself"


async def test_a_hundred_destinations_stay_usable(
    world: World, api: FakeRestApi, start_daemon: StartDaemon, browser: Browser, tmp_path: Path
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(20)))
    no_email = {"customer_id": "external_id", "plan": "plan_tier"}
    dests = [
        destination(
            api.url,
            f"dest_{i:03d}",
            field_mapping=no_email,
            schedule=HOURLY,
            retry={"max_attempts": 1, "timeout_seconds": 5},
            sink_config={
                "url": api.url + "/v1/contacts",
                "headers": {"Authorization": "${env:BAD_TOKEN}" if i % 10 == 7 else API_SECRET},
            },
        )
        for i in range(100)
    ]
    daemon = await start_daemon(world, dests, env={"BAD_TOKEN": WRONG_SECRET})

    def settled(body: Any) -> bool:
        return all(
            d["checkpoint"] is not None or d["daemon"]["state"] == "failing"
            for d in body["destinations"]
        )

    await daemon.wait_status("/status", 200, within=120, where=settled)
    watched = await watched_page(browser)
    page = watched.page
    started = asyncio.get_running_loop().time()
    await page.goto(daemon.url + "/")
    loaded = asyncio.get_running_loop().time() - started
    assert await page.locator("article.dest").count() == 100
    assert loaded < 10, f"the page took {loaded:.1f} s with 100 destinations"
    summary = await page.locator(".summary").inner_text()
    assert "10 failing" in summary.replace("\n", " ") and "90 healthy" in summary.replace("\n", " ")
    # The worst first: the ten failing cards lead the page.
    names = await page.locator("article.dest").evaluate_all(
        "cards => cards.map(c => c.dataset.state)"
    )
    assert names[:10] == ["failing"] * 10 and set(names[10:]) == {"healthy"}

    await page.fill("#filter-name", "dest_04")
    assert await page.locator("article.dest:visible").count() == 10
    assert await page.locator("#shown").inner_text() == "showing 10 of 100"
    await page.locator('.chip[data-state="failing"]').click()
    visible = page.locator("article.dest:visible")
    assert await visible.count() == 1
    assert await visible.get_attribute("data-name") == "dest_047"
    # The filter holds across a refresh of the live part.
    await page.wait_for_function(
        "() => document.querySelector('#updated').textContent.startsWith('as of') && "
        "window.performance.getEntriesByName(location.origin + '/ui/live').length > 0",
        timeout=15_000,
    )
    assert await page.locator("article.dest:visible").count() == 1
    await expect_clean(watched, [WRONG_SECRET, "expired-but-still-secret"])
    await page.screenshot(path=str(tmp_path / "hundred.png"))


@pytest.mark.postgres
async def test_a_destination_held_by_another_daemon_says_which(
    world: World, api: FakeRestApi, pg_database: str, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(world.table.append, customers(initial_rows(3)))
    dests = [destination(api.url, schedule=HOURLY)]
    first = await start_daemon(world, dests, name="a", state_url=pg_database)
    held = await first.wait_status(
        "/status/crm", 200, where=lambda d: d["daemon"]["held_here"] and d["checkpoint"]
    )
    assert held["state"] == "healthy"
    owner = (await first.get("/status"))[1]["owner"]

    second = await start_daemon(world, dests, name="b", state_url=pg_database)
    elsewhere = await second.wait_status(
        "/status/crm", 200, where=lambda d: d["state"] == "elsewhere"
    )
    assert elsewhere["lease_holder"] == owner
    assert owner in elsewhere["reason"]
    _, page = await second.get("/")
    assert 'data-state="elsewhere"' in page
    assert f"<dt>held by</dt><dd>{owner}</dd>" in page
    _, page = await first.get("/")
    assert "<dt>held by</dt><dd>this daemon</dd>" in page
