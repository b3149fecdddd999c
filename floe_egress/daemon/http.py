"""The daemon's HTTP endpoints (aiohttp), served by `Endpoints`, which the daemon owns.

GET  /healthz                          liveness: the event loop answers
GET  /readyz                           200 when the state store and catalog answer and the
                                       scheduler runs; 503 otherwise (with the reasons for
                                       a reader who may see them)
GET  /status                           JSON per destination
GET  /, /status/{name}, /login, /ui/*   the status page and its parts (ui.py)
GET  /metrics                          Prometheus text
POST /v1/destinations/{name}/sync      start a cycle now (coalesced with a running one)

Who may do what follows the socket actually bound. On loopback only, everything is
open, and a nudge needs the bearer token when `server.token` is set. Beyond loopback
(where `server.token` is required), a nudge, `/status` and `/metrics` need the token,
and so does the status page, whose browser shows it as a session cookie from `/login`
(reads only: a nudge needs the bearer header); `/healthz` and `/readyz` stay open for
load balancers but say only alive / ready or not.
A reload that moves the listener binds the new address before it closes the old one,
and the stricter rule of the two holds in between.
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

from aiohttp import web

from floe_egress.config.models import ServerConfig
from floe_egress.config.secrets import resolve
from floe_egress.config.urls import is_loopback
from floe_egress.daemon.metrics import CONTENT_TYPE
from floe_egress.daemon.ui import COOKIE, add_page_routes, valid_session
from floe_egress.errors import ConfigError, ServiceError

# What `request_sync` answered -> HTTP status of the nudge.
_SYNC_STATUS = {
    "started": 202,
    "coalesced": 202,
    "deferred": 202,
    "pending": 202,
    "held_elsewhere": 409,
    "stopping": 503,
}


class DaemonView(Protocol):
    """What the endpoints need from the daemon."""

    async def readiness(self) -> tuple[bool, dict[str, str]]: ...

    async def status(self, *, details: bool = False, only: str | None = None) -> dict[str, Any]: ...

    def metrics_text(self) -> bytes: ...

    def request_sync(self, name: str, reason: str) -> str | None:
        """'started' or 'coalesced'; 'deferred' when the destination asked for a pause
        (Retry-After: the cycle starts when it ends); 'pending' when this daemon has not
        taken the destination's lease yet (the cycle starts when it does);
        'held_elsewhere' when another daemon holds it, 'stopping' during shutdown or
        reload; None for an unknown name."""

    @property
    def token(self) -> str | None: ...


def server_token(server: ServerConfig) -> str | None:
    """The bearer token nudges need (resolved now), or None; a server reachable beyond
    this machine must have one."""
    token = resolve(server.token, path=("server", "token")) if server.token else None
    if not is_loopback(server.host) and not token:
        raise ConfigError(
            f"server.host is {server.host!r}, which is reachable beyond this machine: "
            "set server.token (a secret reference such as ${credential:floe-token}) "
            "so that POST /v1/destinations/{name}/sync needs a bearer token, "
            "or bind server.host to 127.0.0.1"
        )
    return str(token) if token else None


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    try:  # a header that is not UTF-8 text cannot be the token
        offered = given.strip().encode()
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(offered, token.encode())


_UNAUTHORIZED = {"error": "missing or wrong bearer token"}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="floe-egress"'}


def make_app(daemon: DaemonView, endpoints: Endpoints) -> web.Application:
    def allowed(request: web.Request, *, nudge: bool = False) -> bool:
        """Reads need the token beyond loopback (the bearer header, or the page's session
        cookie); a nudge needs the bearer header whenever a token is set."""
        token = daemon.token
        if token is None or not (nudge or endpoints.beyond_loopback):
            return True
        if not nudge and valid_session(request.cookies.get(COOKIE), token):
            return True
        return _authorized(request, token)

    def refused() -> web.Response:
        return web.json_response(_UNAUTHORIZED, status=401, headers=_CHALLENGE)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        ready, checks = await daemon.readiness()
        body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        if allowed(request):
            body["checks"] = checks
        return web.json_response(body, status=200 if ready else 503)

    async def status(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused()
        return web.json_response(await daemon.status())

    async def metrics(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused()
        return web.Response(body=daemon.metrics_text(), headers={"Content-Type": CONTENT_TYPE})

    async def sync(request: web.Request) -> web.Response:
        if not allowed(request, nudge=True):
            return refused()
        name = request.match_info["name"]
        outcome = daemon.request_sync(name, "http")
        if outcome is None:
            return web.json_response({"error": f"no destination named {name!r}"}, status=404)
        return web.json_response(
            {"destination": name, "sync": outcome}, status=_SYNC_STATUS.get(outcome, 202)
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/destinations/{name}/sync", sync)
    add_page_routes(app, daemon, allowed)
    return app


class Endpoints:
    """The endpoints' listener: started once, moved by a reload, closed at shutdown."""

    def __init__(self, view: DaemonView) -> None:
        self._runner = web.AppRunner(make_app(view, self), handle_signals=False, access_log=None)
        self._sites: dict[tuple[str, int], web.TCPSite] = {}

    @property
    def beyond_loopback(self) -> bool:
        """Whether any bound socket is reachable from beyond this machine."""
        return any(not is_loopback(host) for host, _ in self._sites)

    @property
    def address(self) -> tuple[str, int] | None:
        return next(iter(self._sites), None)

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        await self._bind(host, port)

    async def move(self, host: str, port: int) -> None:
        """Listen on host:port instead; if that cannot be, ServiceError and the old
        address stays. On another port the new socket is bound before the old one is
        closed; on the same port (a socket on every address and one on loopback cannot
        share it) the old one is closed first and bound again should the new one fail."""
        old = self.address
        if old is None or old == (host, port):
            return
        if old[1] != port:
            await self._bind(host, port)
            await self._sites.pop(old).stop()
            return
        await self._sites.pop(old).stop()
        try:
            await self._bind(host, port)
        except ServiceError:
            await self._bind(*old)
            raise

    async def _bind(self, host: str, port: int) -> None:
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ServiceError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "another process may hold the port (change server.port or stop it)"
            ) from None
        self._sites[(host, port)] = site

    async def close(self) -> None:
        self._sites.clear()
        await self._runner.cleanup()
