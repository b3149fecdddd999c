"""The real `floe-egress run` as a subprocess: start it, talk HTTP to it, read its logs.

Shared by the daemon tests and bench/latency.py. Everything runs on the caller's event
loop, so a fake destination server on the same loop keeps answering while we wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FLOE_EGRESS = Path(sys.executable).with_name("floe-egress")
# Variables a developer's or systemd's environment may hold that would change the daemon.
_SCRUBBED = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "FLOE_EGRESS_CONFIG",
    "FLOE_EGRESS_WORK_DIR",
)


def run_command(config: Path, options: Sequence[str] = ()) -> list[str]:
    """`floe-egress [options] run --config <config>`: the installed entry point."""
    return [str(FLOE_EGRESS), *options, "run", "--config", str(config)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def daemon_env(work_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["FLOE_EGRESS_WORK_DIR"] = str(work_dir)
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class DaemonProcess:
    """One `floe-egress run` child process and what it printed."""

    proc: asyncio.subprocess.Process
    config: Path
    port: int
    name: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    printed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls,
        config: Path,
        *,
        port: int,
        work_dir: Path,
        env: Mapping[str, str] | None = None,
        name: str = "daemon",
        options: Sequence[str] = (),
    ) -> DaemonProcess:
        await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            *run_command(config, options),
            cwd=work_dir,
            env=daemon_env(work_dir, env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        daemon = cls(proc, config, port, name)
        assert proc.stdout is not None
        assert proc.stderr is not None
        daemon.readers = [
            asyncio.create_task(daemon._read(proc.stdout, daemon.stdout)),
            asyncio.create_task(daemon._read(proc.stderr, daemon.stderr)),
        ]
        return daemon

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))
            self.printed.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return "\n".join([*self.stdout, *self.stderr])

    # --- HTTP ---------------------------------------------------------------------------

    async def request(
        self, method: str, path: str, *, token: str | None = None, within: float = 5.0
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.request(method, self.url + path, headers=headers) as response,
        ):
            text = await response.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return response.status, body

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def nudge(self, destination: str, token: str | None = None) -> tuple[int, Any]:
        return await self.request("POST", f"/v1/destinations/{destination}/sync", token=token)

    async def wait_status(
        self,
        path: str,
        status: int,
        within: float = 20.0,
        where: Callable[[Any], bool] = lambda _: True,
    ) -> Any:
        """Poll GET `path` until it answers `status` with a body `where` accepts; the body."""
        deadline = time.monotonic() + within
        last: Any = "no answer"
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                code, body = await self.get(path)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = repr(exc)
            else:
                if code == status and where(body):
                    return body
                last = (code, body)
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{self.name}: GET {path} did not answer {status} within {within} s "
            f"(last: {last})\n{self.tail()}"
        )

    async def wait_ready(self, within: float = 30.0) -> Any:
        return await self.wait_status("/readyz", 200, within)

    # --- logs ---------------------------------------------------------------------------

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """stdout parsed as JSON lines (lines that are not JSON are skipped here)."""
        out = []
        for line in self.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and (event is None or item.get("event") == event):
                out.append(item)
        return out

    async def wait_event(
        self,
        event: str,
        within: float = 20.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first `event` logged (from the `after`-th such event on) that satisfies `where`."""
        deadline = time.monotonic() + within
        while True:
            found = [e for e in self.events(event)[after:] if where(e)]
            if found:
                return found[0]
            self.raise_if_exited()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: no {event!r} event within {within} s\n{self.tail()}"
                )
            self.printed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.printed.wait(), min(left, 0.5))

    def tail(self, lines: int = 40) -> str:
        return (
            f"--- {self.name} stdout (last {lines}) ---\n"
            + "\n".join(self.stdout[-lines:])
            + f"\n--- {self.name} stderr ---\n"
            + "\n".join(self.stderr[-lines:])
        )

    # --- process ------------------------------------------------------------------------

    def raise_if_exited(self) -> None:
        if self.proc.returncode is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.tail()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, within: float = 30.0) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} still running {within} s later\n{self.tail()}"
            ) from None
        await asyncio.gather(*self.readers)
        return code

    async def stop(self, within: float = 30.0) -> int:
        if self.proc.returncode is None:
            self.signal(signal.SIGTERM)
        return await self.wait_exit(within)

    async def kill(self) -> None:
        """SIGKILL (if still running) and reap; safe to call twice."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def wait_until(
    check: Callable[[], bool], within: float, what: str, interval: float = 0.05
) -> float:
    """Poll `check` until true; the seconds it took. AssertionError naming `what` otherwise."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not true within {within} s")
        await asyncio.sleep(interval)
    return time.monotonic() - started
