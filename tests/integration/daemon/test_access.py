"""Who may read and nudge the daemon follows the socket it really listens on: beyond
loopback, /status and /metrics need the token and /readyz says only ready or not; a
reload that moves the listener moves the rule with it; a header that is not text is
just a wrong token."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import aiohttp

from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World
from tests.integration.daemon.conftest import StartDaemon, destination, write_config
from tests.integration.daemon.harness import DaemonProcess, free_port

TOKEN = "access-token-for-tests"
HOURLY = {"interval_seconds": 3600}


def listening(port: int) -> list[str]:
    """The local addresses of the sockets listening on `port`, as `ss` shows them."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line)


async def raw_request(port: int, request: bytes) -> int:
    """Send bytes as they are (aiohttp would not send a header that is not text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def get(daemon: DaemonProcess, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(daemon.url + path, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_a_header_that_is_not_utf8_is_a_wrong_token(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(
        world,
        [destination(api.url, schedule=HOURLY)],
        env={"NUDGE_TOKEN": TOKEN},
        token="${env:NUDGE_TOKEN}",
    )
    request = (
        b"POST /v1/destinations/crm/sync HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer \xff\xfe\xc3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    for _ in range(3):
        assert await raw_request(daemon.port, request) == 401
    assert (await daemon.nudge("crm", token=TOKEN))[0] == 202
    assert not [e for e in daemon.events() if e.get("level") == "error"], daemon.tail()
    assert "Traceback" not in daemon.output


async def test_beyond_loopback_reading_needs_the_token_but_probes_stay_open(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(
        world,
        [destination(api.url, schedule=HOURLY)],
        env={"NUDGE_TOKEN": TOKEN},
        host="0.0.0.0",
        token="${env:NUDGE_TOKEN}",
    )
    for path in ("/status", "/metrics"):
        assert (await get(daemon, path))[0] == 401, path
        assert (await get(daemon, path, token="wrong"))[0] == 401, path
        code, body = await get(daemon, path, token=TOKEN)
        assert code == 200, path
        assert "crm" in body, path
    code, body = await get(daemon, "/readyz")
    assert (code, body) == (200, '{"status": "ready"}'), "ready or not, and nothing else"
    code, body = await get(daemon, "/readyz", token=TOKEN)
    assert code == 200
    assert '"checks"' in body
    assert (await get(daemon, "/healthz"))[0] == 200


async def test_on_loopback_reading_needs_no_token(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(
        world,
        [destination(api.url, schedule=HOURLY)],
        env={"NUDGE_TOKEN": TOKEN},
        token="${env:NUDGE_TOKEN}",
    )
    for path in ("/status", "/metrics", "/readyz"):
        assert (await get(daemon, path))[0] == 200, path
    assert '"checks"' in (await get(daemon, "/readyz"))[1]
    assert (await daemon.nudge("crm"))[0] == 401, "a nudge needs the token once one is set"


async def test_a_reload_that_drops_the_token_moves_the_listener_back_to_loopback(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    crm = destination(api.url, schedule=HOURLY)
    daemon = await start_daemon(
        world, [crm], env={"NUDGE_TOKEN": TOKEN}, host="0.0.0.0", token="${env:NUDGE_TOKEN}"
    )
    assert listening(daemon.port) == ["0.0.0.0"]
    assert (await daemon.nudge("crm"))[0] == 401

    write_config(world, daemon.config, [crm], port=daemon.port, host="127.0.0.1")
    daemon.signal(signal.SIGHUP)
    await daemon.wait_event("reload_finished")

    assert listening(daemon.port) == ["127.0.0.1"], "the old socket is closed"
    assert (await daemon.nudge("crm"))[0] == 202, "on loopback without a token: open"
    assert (await get(daemon, "/status"))[0] == 200


async def test_a_reload_to_the_network_without_a_token_is_refused(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    crm = destination(api.url, schedule=HOURLY)
    daemon = await start_daemon(world, [crm])
    write_config(world, daemon.config, [crm], port=daemon.port, host="0.0.0.0")
    daemon.signal(signal.SIGHUP)
    rejected = await daemon.wait_event("reload_rejected")
    assert "server.token" in rejected["error"]
    assert listening(daemon.port) == ["127.0.0.1"], "the running configuration is kept"


async def test_a_reload_to_another_port_listens_there(
    world: World, api: FakeRestApi, start_daemon: StartDaemon
) -> None:
    crm = destination(api.url, schedule=HOURLY)
    daemon = await start_daemon(world, [crm])
    old_port = daemon.port
    new = DaemonProcess(daemon.proc, daemon.config, port=free_port(), name="moved")
    write_config(world, daemon.config, [crm], port=new.port)
    daemon.signal(signal.SIGHUP)
    await daemon.wait_event("reload_finished")
    assert listening(old_port) == []
    assert listening(new.port) == ["127.0.0.1"]
    assert (await new.get("/healthz"))[0] == 200
