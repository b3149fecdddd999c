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

from floe_egress.daemon.metrics import CONTENT_TYPE


class DaemonView(Protocol):
    """What the endpoints need from the daemon."""

    async def readiness(self) -> tuple[bool, dict[str, str]]: ...

    async def status(self) -> list[dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...

    def request_sync(self, name: str, reason: str) -> str | None:
        """'started' or 'coalesced', or None for an unknown destination."""

    @property
    def token(self) -> str | None: ...


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        return web.json_response({"destinations": await daemon.status()})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=daemon.metrics_text(), headers={"Content-Type": CONTENT_TYPE})

    async def sync(request: web.Request) -> web.Response:
        token = daemon.token
        if token is not None:
            header = request.headers.get("Authorization", "")
            given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="floe-egress"'},
                )
        name = request.match_info["name"]
        outcome = daemon.request_sync(name, "http")
        if outcome is None:
            return web.json_response({"error": f"no destination named {name!r}"}, status=404)
        return web.json_response({"destination": name, "sync": outcome}, status=202)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/destinations/{name}/sync", sync)
    return app
