"""systemd integration: the sd_notify datagrams the daemon sends, and the unit file."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.fake_apis import FakeRestApi
from tests.fixtures.world import World
from tests.integration.daemon.conftest import StartDaemon, destination
from tests.integration.daemon.harness import FLOE_EGRESS, wait_until

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "systemd" / "floe-egress.service"
WATCHDOG_USEC = 1_000_000


@dataclass
class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    path: str
    sock: socket.socket
    received: list[tuple[float, dict[str, str]]] = field(default_factory=list)

    def messages(self, key: str, value: str | None = None) -> list[tuple[float, dict[str, str]]]:
        return [
            (at, m) for at, m in self.received if key in m and (value is None or m[key] == value)
        ]

    async def receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.received.append((time.monotonic(), fields))


@pytest.fixture
async def notify_socket() -> AsyncIterator[NotifySocket]:
    # Short path: AF_UNIX addresses are limited to 108 bytes, pytest's tmp_path is long.
    path = f"/tmp/floe-notify-{uuid.uuid4().hex[:12]}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    notify = NotifySocket(path, sock)
    reader = asyncio.create_task(notify.receive())
    try:
        yield notify
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        sock.close()
        os.unlink(path)


async def test_ready_status_watchdog_reloading_and_stopping_reach_notify_socket(
    world: World, api: FakeRestApi, start_daemon: StartDaemon, notify_socket: NotifySocket
) -> None:
    daemon = await start_daemon(
        world,
        [destination(api.url)],
        env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )
    await wait_until(lambda: bool(notify_socket.messages("READY", "1")), 10, "READY=1")
    (_, ready), *_ = notify_socket.messages("READY", "1")
    assert ready["STATUS"].startswith("serving 1 destinations")
    assert ready["MAINPID"] == str(daemon.pid)

    await wait_until(lambda: len(notify_socket.messages("WATCHDOG")) >= 4, 10, "WATCHDOG=1 x4")
    pings = [at for at, _ in notify_socket.messages("WATCHDOG", "1")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < WATCHDOG_USEC / 1e6, "pinged well within WatchdogSec"
    await wait_until(
        lambda: any(
            m["STATUS"].startswith("1/1 destinations held here")
            for _, m in notify_socket.messages("STATUS")
        ),
        10,
        "a STATUS= line after a cycle",
    )

    daemon.signal(signal.SIGHUP)
    await wait_until(
        lambda: len(notify_socket.messages("READY", "1")) >= 2, 10, "READY after reload"
    )
    assert notify_socket.messages("RELOADING", "1")

    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(15) == 0
    await wait_until(lambda: bool(notify_socket.messages("STOPPING", "1")), 5, "STOPPING=1")
    stopping_at = notify_socket.messages("STOPPING", "1")[0][0]
    assert all(at <= stopping_at for at, _ in notify_socket.messages("READY", "1"))


# --- the unit file ------------------------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "60s"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("StateDirectory", "floe-egress"),
        ("User", "floe-egress"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("CapabilityBoundingSet", ""),
        ("PrivateMounts", "yes"),
        ("RemoveIPC", "yes"),
        ("ProcSubset", "pid"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ],
)
def test_the_unit_sets(key: str, value: str) -> None:
    assert value in unit_directives().get(key, []), f"{key}={value}"


def test_the_unit_loads_secrets_with_load_credential() -> None:
    credentials = unit_directives().get("LoadCredential", [])
    assert credentials
    assert all(c.split(":", 1)[1].startswith("/etc/floe-egress/credentials/") for c in credentials)


def test_the_unit_stops_after_the_grace_period_of_the_daemon() -> None:
    from floe_egress.config.models import ServerConfig

    stop = unit_directives()["TimeoutStopSec"][0]
    assert float(stop.removesuffix("s")) > ServerConfig().shutdown_grace_seconds


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """The systemd-analyze binary; installed offline from apt's cache when missing."""
    tool = shutil.which("systemd-analyze")
    if tool is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-download", "systemd"],
            capture_output=True,
            timeout=300,
            check=False,
        )
        tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail(
            "systemd-analyze is not installed and could not be installed offline "
            "(apt-get install -y --no-download systemd): install the systemd package to "
            "verify systemd/floe-egress.service"
        )
    return tool


def test_systemd_analyze_verify_accepts_the_unit(systemd_analyze: str, tmp_path: Path) -> None:
    assert FLOE_EGRESS.exists(), f"{FLOE_EGRESS}: install the project (make install)"
    text = "\n".join(
        f"ExecStart={FLOE_EGRESS} run --config /etc/floe-egress/floe.yaml"
        if line.startswith("ExecStart=")
        else line
        for line in UNIT.read_text().splitlines()
    )
    unit = tmp_path / "floe-egress.service"
    unit.write_text(text + "\n")
    result = subprocess.run(
        [systemd_analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    about_unit = [line for line in output.splitlines() if "floe-egress" in line]
    assert result.returncode == 0, output
    assert about_unit == [], "systemd-analyze verify warns:\n" + "\n".join(about_unit)


def test_systemd_analyze_security_rates_the_unit_at_most_1_3(
    systemd_analyze: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(
        r"Overall exposure level for floe-egress\.service: ([\d.]+) (\w+)", result.stdout
    )
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= 1.3, found.group(0)
    assert found.group(2) == "OK"
