"""The daemon's HTTP endpoints (aiohttp), run as an AppRunner the daemon owns.

GET  /healthz                          liveness: the event loop answers
GET  /readyz                           200 when the state store and catalog answer and the
                                       scheduler runs; 503 with the reason otherwise
GET  /status                           JSON per destination
GET  /metrics                          Prometheus text
POST /v1/destinations/{name}/sync      start a cycle now (coalesced with a running one);
                                       bearer token required when one is configured
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any, Protocol

from aiohttp import web

from floe_egress.config.models import ServerConfig
from floe_egress.config.secrets import resolve
from floe_egress.daemon.metrics import CONTENT_TYPE
from floe_egress.errors import ConfigError, ServiceError

# What `request_sync` answered -> HTTP status of the nudge.
_SYNC_STATUS = {
    "started": 202,
    "coalesced": 202,
    "deferred": 202,
    "held_elsewhere": 409,
    "stopping": 503,
}


class DaemonView(Protocol):
    """What the endpoints need from the daemon."""

    async def readiness(self) -> tuple[bool, dict[str, str]]: ...

    async def status(self) -> dict[str, Any]: ...

    def metrics_text(self) -> bytes: ...

    def request_sync(self, name: str, reason: str) -> str | None:
        """'started' or 'coalesced'; 'deferred' when the destination asked for a pause
        (Retry-After: the cycle starts when it ends); 'held_elsewhere' when another daemon
        holds the destination, 'stopping' during shutdown or reload; None for an unknown
        name."""

    @property
    def token(self) -> str | None: ...


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only ("" means every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    return hmac.compare_digest(given.strip().encode(), token.encode())


def make_app(daemon: DaemonView) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        ready, checks = await daemon.readiness()
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response(await daemon.status())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=daemon.metrics_text(), headers={"Content-Type": CONTENT_TYPE})

    async def sync(request: web.Request) -> web.Response:
        token = daemon.token
        if token is not None and not _authorized(request, token):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="floe-egress"'},
            )
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
    return app


async def start_server(view: DaemonView, host: str, port: int) -> web.AppRunner:
    """The endpoints, listening on host:port (the daemon cleans the runner up)."""
    runner = web.AppRunner(make_app(view), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ServiceError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "another process may hold the port (change server.port or stop it)"
        ) from None
    return runner
