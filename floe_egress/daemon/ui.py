"""The status page's routes, and the sign-in that lets a browser read beyond loopback.

GET  /                 the page (server-rendered; `?name=` and `?state=` filter it)
GET  /ui/live          the page's live part, which its script swaps in every few seconds
GET  /ui/{asset}       its stylesheet, script and icon (package files; no data in them)
GET  /status/{name}    one destination's JSON with its runs and failed rows
GET  /login            a form that takes the token;  POST /login checks it
POST /logout           forgets the session

Reading follows the rule of /status: open on loopback; beyond loopback it needs the
token. A browser cannot send a bearer header, so there the page sends it to /login,
which checks the token and sets a session cookie: `v1.<expiry>.<HMAC-SHA256 of the
expiry keyed by the token>`, HttpOnly, SameSite=Strict, Secure on HTTPS (or behind a
proxy that sends `X-Forwarded-Proto: https`), valid for
SESSION_SECONDS. The cookie is not the token, a changed token (a reload) ends every
session, and the daemon keeps no session table. The cookie lets a browser read (the
page, /status, /metrics), never nudge: a POST still needs the bearer header, so no
other site can make a signed-in browser start a cycle. Wrong tokens are throttled per
client address.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from aiohttp import web

from floe_egress.daemon.page import render_live, render_login, render_page

COOKIE = "floe_egress_session"
SESSION_SECONDS = 12 * 3600
LOGIN_FAILURES = 10
"""Wrong tokens allowed from one address per LOGIN_WINDOW seconds before sign-in pauses
for that address (429)."""
LOGIN_WINDOW = 60.0
LOGIN_ADDRESSES = 10_000
"""Addresses with recent wrong tokens kept at most; beyond, new addresses wait (429)."""
CACHE_SECONDS = 1.0
"""How long one reading of every destination serves the page's requests (several open
tabs refreshing cost one reading)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_ASSETS = {
    "page.css": "text/css",
    "page.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}


class PageView(Protocol):
    async def status(self, *, details: bool = False, only: str | None = None) -> dict[str, Any]: ...

    @property
    def token(self) -> str | None: ...


def session_cookie(token: str, now: float | None = None) -> str:
    expiry = int((time.time() if now is None else now) + SESSION_SECONDS)
    return f"v1.{expiry}.{_mac(token, expiry)}"


def valid_session(value: str | None, token: str, now: float | None = None) -> bool:
    if not value:
        return False
    version, _, rest = value.partition(".")
    expiry_text, _, mac = rest.partition(".")
    if version != "v1" or not expiry_text.isdigit() or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    if expiry < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac.encode(), _mac(token, expiry).encode())


def _mac(token: str, expiry: int) -> str:
    message = f"floe-egress page session {expiry}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def _local_path(value: str | None) -> str:
    """Where to go after signing in: a path on this daemon, never another site (browsers
    drop tabs and newlines from addresses, so `/<tab>/evil.example` is `//evil.example`)."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return "/" if parts.scheme or parts.netloc else value


def _forwarded_https(request: web.Request) -> bool:
    """Behind a TLS proxy (a client that sends it only makes its own cookie stricter)."""
    return request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https"


def add_page_routes(
    app: web.Application, view: PageView, may_read: Callable[[web.Request], bool]
) -> None:
    """The routes above; `may_read` is /status's rule (bearer header or session cookie)."""
    failures: dict[str, deque[float]] = {}
    cache: dict[str, Any] = {}
    reading = asyncio.Lock()
    assets = {
        name: resources.files("floe_egress.daemon").joinpath("static", name).read_bytes()
        for name in _ASSETS
    }

    async def details() -> dict[str, Any]:
        async with reading:
            at = cache.get("at")
            if at is None or time.monotonic() - at >= CACHE_SECONDS:
                cache["status"] = await view.status(details=True)
                cache["at"] = time.monotonic()
            status: dict[str, Any] = cache["status"]
            return status

    async def page(request: web.Request) -> web.StreamResponse:
        if not may_read(request):
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
        query = request.query
        name, state = query.get("name", ""), query.get("state", "")
        body = render_page(await details(), name=name, state=state)
        return web.Response(text=body, content_type="text/html")

    async def live(request: web.Request) -> web.Response:
        """The live part; 304 when it has not changed since the script's last copy (its
        times are rendered by the script, so the HTML changes only with the data)."""
        if not may_read(request):
            return web.json_response({"error": "sign in at /login"}, status=401)
        body = render_live(await details())
        tag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(text=body, content_type="text/html", headers={"ETag": tag})

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        if name not in assets:
            raise web.HTTPNotFound()
        return web.Response(body=assets[name], content_type=_ASSETS[name])

    async def favicon(_: web.Request) -> web.Response:
        return web.Response(body=assets["icon.svg"], content_type=_ASSETS["icon.svg"])

    async def detail(request: web.Request) -> web.Response:
        if not may_read(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        name = request.match_info["name"]
        status = await view.status(details=True, only=name)
        if not status["destinations"]:
            return web.json_response({"error": f"no destination named {name!r}"}, status=404)
        return web.json_response(status["destinations"][0])

    async def login_form(request: web.Request) -> web.Response:
        if view.token is None:  # nothing to sign in to
            raise web.HTTPSeeOther(_local_path(request.query.get("next")))
        body = render_login(next_path=_local_path(request.query.get("next")))
        return web.Response(text=body, content_type="text/html")

    async def login(request: web.Request) -> web.Response:
        token = view.token
        form = await request.post()
        target = _local_path(str(form.get("next", "/")))
        if token is None:
            raise web.HTTPSeeOther(target)
        now = time.monotonic()
        address = request.remote or ""
        for known in [a for a, times in failures.items() if times[-1] < now - LOGIN_WINDOW]:
            del failures[known]
        mine = failures.get(address, deque())
        while mine and mine[0] < now - LOGIN_WINDOW:
            mine.popleft()
        crowded = address not in failures and len(failures) >= LOGIN_ADDRESSES
        if len(mine) >= LOGIN_FAILURES or crowded:
            wait = int(mine[0] + LOGIN_WINDOW - now) + 1 if mine else int(LOGIN_WINDOW)
            body = render_login(
                message=f"Too many wrong tokens: try again in {wait} s.", next_path=target
            )
            return web.Response(
                text=body, status=429, content_type="text/html", headers={"Retry-After": str(wait)}
            )
        given = form.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            mine.append(now)
            failures[address] = mine
            body = render_login(message="That is not the token of this daemon.", next_path=target)
            return web.Response(text=body, status=401, content_type="text/html")
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            session_cookie(token),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure or _forwarded_https(request),
        )
        raise response

    async def logout(_: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def headers(_: web.Request, response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    app.on_response_prepare.append(headers)
    app.router.add_get("/", page)
    app.router.add_get("/ui/live", live)
    app.router.add_get("/ui/{asset}", asset)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/status/{name}", detail)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)


__all__ = ["COOKIE", "SESSION_SECONDS", "add_page_routes", "session_cookie", "valid_session"]
