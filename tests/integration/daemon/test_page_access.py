"""Who may read the status page follows /status: open on loopback; beyond loopback the
browser signs in at /login with the token and gets a session cookie that is not the
token, lets it read (never nudge), and cannot be forged, stretched or guessed at speed."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from playwright.async_api import Browser

from floe_egress.daemon.ui import COOKIE, LOGIN_FAILURES, session_cookie, valid_session
from tests.fixtures.browser import browser, watched_page
from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World
from tests.integration.daemon.conftest import StartDaemon, destination
from tests.integration.daemon.harness import DaemonProcess

__all__ = ["browser"]  # the fixture, used by name

TOKEN = "page-token-for-tests-5d1c"
HOURLY = {"interval_seconds": 3600}


async def fetch(
    daemon: DaemonProcess,
    method: str,
    path: str,
    *,
    cookie: str | None = None,
    bearer: str | None = None,
    form: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], str, list[str]]:
    """(status, headers, body, Set-Cookie headers), redirects not followed."""
    headers = dict(extra or {})
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, daemon.url + path, headers=headers, data=form, allow_redirects=False
        ) as response,
    ):
        body = await response.text()
        return (
            response.status,
            dict(response.headers),
            body,
            response.headers.getall("Set-Cookie", []),
        )


def cookie_value(set_cookie: list[str]) -> str:
    (header,) = set_cookie
    return header.split(";", 1)[0].split("=", 1)[1]


async def network_daemon(world: World, api: FakeRestApi, start: StartDaemon) -> DaemonProcess:
    return await start(
        world,
        [destination(api.url, schedule=HOURLY)],
        env={"PAGE_TOKEN": TOKEN},
        host="0.0.0.0",
        token="${env:PAGE_TOKEN}",
    )


async def test_on_loopback_the_page_is_open_and_locked_down(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(world, [destination(api.url, schedule=HOURLY)])
    status, headers, body, _ = await fetch(daemon, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert 'data-name="crm"' in body
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert headers["X-Frame-Options"] == "DENY"
    assert "http://" not in body.replace(api.url, ""), "nothing from elsewhere"
    for path, kind in (("/ui/page.js", "text/javascript"), ("/ui/page.css", "text/css")):
        status, headers, _, _ = await fetch(daemon, "GET", path)
        assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
    assert (await fetch(daemon, "GET", "/ui/..%2Fhttp.py"))[0] == 404
    assert (await fetch(daemon, "GET", "/ui/live"))[0] == 200
    status, _, body, _ = await fetch(daemon, "GET", "/status/crm")
    assert status == 200 and '"runs"' in body and '"state"' in body
    assert (await fetch(daemon, "GET", "/status/nobody"))[0] == 404
    # Without a token there is nothing to sign in to.
    status, headers, _, _ = await fetch(daemon, "GET", "/login")
    assert (status, headers["Location"]) == (303, "/")


async def test_beyond_loopback_the_page_needs_a_session_from_the_token(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await network_daemon(world, api, start_daemon)

    status, headers, _, _ = await fetch(daemon, "GET", "/?state=failing")
    assert (status, headers["Location"]) == (303, "/login?next=/?state%3Dfailing")
    for path in ("/ui/live", "/status/crm", "/status"):
        assert (await fetch(daemon, "GET", path))[0] == 401, path
    status, _, body, cookies = await fetch(daemon, "GET", "/login")
    assert status == 200 and 'type="password"' in body and not cookies

    status, _, body, cookies = await fetch(daemon, "POST", "/login", form={"token": "wrong"})
    assert (status, cookies) == (401, [])
    assert "not the token of this daemon" in body

    for elsewhere in ("//evil.example/", "/\t/evil.example", "/\n/evil.example", "/\\evil"):
        form = {"token": TOKEN, "next": elsewhere}
        status, headers, _, cookies = await fetch(daemon, "POST", "/login", form=form)
        assert (status, headers["Location"]) == (303, "/"), f"never sent to {elsewhere!r}"
    form = {"token": TOKEN, "next": "/?state=failing"}
    status, headers, _, _ = await fetch(daemon, "POST", "/login", form=form)
    assert (status, headers["Location"]) == (303, "/?state=failing")
    assert "HttpOnly" in cookies[0] and "SameSite=Strict" in cookies[0]
    assert "Secure" not in cookies[0], "plain HTTP: a Secure cookie would not come back"
    session = cookie_value(cookies)
    assert TOKEN not in session

    status, _, body, _ = await fetch(daemon, "GET", "/", cookie=session)
    assert status == 200 and 'data-name="crm"' in body
    assert TOKEN not in body
    for path in ("/ui/live", "/status/crm", "/status", "/metrics"):
        assert (await fetch(daemon, "GET", path, cookie=session))[0] == 200, path
    nudge = "/v1/destinations/crm/sync"
    assert (await fetch(daemon, "POST", nudge, cookie=session))[0] == 401, "reads only"
    assert (await fetch(daemon, "POST", nudge, bearer=TOKEN))[0] == 202

    forged = session[:-1] + ("0" if session[-1] != "0" else "1")
    stretched = session.replace(session.split(".")[1], str(int(time.time()) + 10**7), 1)
    expired = session_cookie(TOKEN, now=time.time() - 13 * 3600)
    for bad in (forged, stretched, expired, TOKEN, "v1..", "v1.99999999999999999.x"):
        assert (await fetch(daemon, "GET", "/", cookie=bad))[0] == 303, bad

    status, _, _, _ = await fetch(daemon, "POST", "/logout", cookie=session)
    assert status == 303

    behind_tls = {"X-Forwarded-Proto": "https"}
    _, _, _, cookies = await fetch(
        daemon, "POST", "/login", form={"token": TOKEN}, extra=behind_tls
    )
    assert "Secure" in cookies[0], "behind a TLS proxy the cookie stays on HTTPS"


async def test_wrong_tokens_are_throttled_per_address(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await network_daemon(world, api, start_daemon)
    for _ in range(LOGIN_FAILURES):
        assert (await fetch(daemon, "POST", "/login", form={"token": "guess"}))[0] == 401
    status, headers, body, cookies = await fetch(daemon, "POST", "/login", form={"token": TOKEN})
    assert (status, cookies) == (429, []), "even the right token waits out the pause"
    assert int(headers["Retry-After"]) > 0
    assert "Too many wrong tokens" in body
    # Another client (another loopback address) is not locked out by the guesser.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            daemon.url + "/login", data={"token": TOKEN}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303
        assert response.headers.getall("Set-Cookie")


async def test_the_live_part_answers_304_while_nothing_changed(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(world, [destination(api.url, schedule=HOURLY)])
    status, headers, _, _ = await fetch(daemon, "GET", "/ui/live")
    tag = {k.lower(): v for k, v in headers.items()}["etag"]
    status, headers, body, _ = await fetch(daemon, "GET", "/ui/live", extra={"If-None-Match": tag})
    assert (status, body) == (304, "")
    status, _, body, _ = await fetch(daemon, "GET", "/ui/live", extra={"If-None-Match": '"x"'})
    assert status == 200 and 'data-name="crm"' in body


def test_a_session_belongs_to_its_token_and_ends() -> None:
    now = 1_800_000_000.0
    cookie = session_cookie("one", now=now)
    assert valid_session(cookie, "one", now=now + 60)
    assert not valid_session(cookie, "two", now=now + 60), "a changed token ends it"
    assert not valid_session(cookie, "one", now=now + 13 * 3600)
    for bad in ("", "v2" + cookie[2:], cookie + "x", "v1.abc.def", "v1.\u00e9.\u00e9"):
        assert not valid_session(bad, "one", now=now)


async def test_a_browser_signs_in_beyond_loopback(
    world: World, api: FakeRestApi, start_daemon: StartDaemon, browser: Browser
) -> None:
    daemon = await network_daemon(world, api, start_daemon)
    watched = await watched_page(browser)
    page = watched.page
    await page.goto(daemon.url + "/?name=cr")
    assert page.url.startswith(daemon.url + "/login?next=")
    await page.fill("#token", TOKEN)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert page.url == daemon.url + "/?name=cr", "back where the user was going"
    assert await page.locator('article.dest[data-name="crm"]').is_visible()
    await page.wait_for_timeout(5_500)  # one refresh through the session cookie
    live: Any = [u for u in watched.requests if u.endswith("/ui/live")]
    assert live, "the page refreshed itself"
    assert await page.locator('article.dest[data-name="crm"]').is_visible()
    assert watched.console_errors == []
    assert watched.left_localhost == []
    assert TOKEN not in await page.content()
