"""Progress of the cycles that send many rows: what a cycle tells its `Progress`, and
the bar `floe-egress sync` draws from it on a terminal (a pseudo-terminal here: the
process's stderr), never off one nor with --json."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from floe_egress.daemon import Runtime, run_cycle
from floe_egress.sinks.base import MIN_ROWS_PER_WRITE
from tests.fixtures.crash_harness import EGRESS, PROCESS_TIMEOUT, ServerThread, egress_env
from tests.fixtures.world import World, customers, initial_rows, rest_destination
from tests.integration.cli.conftest import destination

ROWS = 1200
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RATE = re.compile(r"([\d,]+) rows/s")


@dataclass
class Recorded:
    """A `Progress` that keeps what it was told."""

    calls: list[tuple[object, ...]] = field(default_factory=list)

    def start(self, total: int, *, plan: str) -> None:
        self.calls.append(("start", total, plan))

    def advance(self, rows: int) -> None:
        self.calls.append(("advance", rows))

    def close(self, *, finished: bool) -> None:
        self.calls.append(("close", finished))


# --- the hook -----------------------------------------------------------------------


async def test_a_full_load_tells_its_progress_write_by_write(
    world: World, server: ServerThread
) -> None:
    rows = 2 * MIN_ROWS_PER_WRITE + 500
    world.table.append(customers(initial_rows(rows)))
    spec = world.load([rest_destination(server.url, batch_size=5000)]).spec
    [dest] = spec.ingestion.destinations
    runtime = Runtime(spec)
    try:
        full = Recorded()
        result = await run_cycle(runtime, dest, progress=full)
        assert (result.status, result.plan, result.inserted) == ("ok", "full", rows)
        assert full.calls == [
            ("start", rows, "full"),
            ("advance", MIN_ROWS_PER_WRITE),
            ("advance", MIN_ROWS_PER_WRITE),
            ("advance", 500),
            ("close", True),
        ], "one call per write, not per row"

        world.reload().upsert(
            customers([(1, "one@example.com", "team")]), join_cols=["customer_id"]
        )
        changes = Recorded()
        result = await run_cycle(runtime, dest, progress=changes)
        assert (result.plan, result.updated) == ("diff", 1)
        assert changes.calls == [], "a cycle of a few changes draws no bar"

        runtime.store.request_resync(dest.name, None)
        resync = Recorded()
        result = await run_cycle(runtime, dest, progress=resync)
        assert result.plan == "full"
        assert resync.calls[0] == ("start", rows, "full")
        assert sum(int(c[1]) for c in resync.calls if c[0] == "advance") == rows
        assert resync.calls[-1] == ("close", True)
    finally:
        await runtime.close()


async def test_a_load_the_destination_refuses_closes_its_progress_unfinished(
    world: World, other_server: ServerThread
) -> None:
    world.table.append(customers(initial_rows(ROWS)))
    bad_token = {"url": other_server.url, "headers": {"Authorization": "Bearer expired"}}
    spec = world.load([destination("crm", other_server, sink_config=bad_token)]).spec
    runtime = Runtime(spec)
    try:
        recorded = Recorded()
        result = await run_cycle(runtime, spec.ingestion.destinations[0], progress=recorded)
    finally:
        await runtime.close()
    assert result.status == "failed"
    assert recorded.calls == [("start", ROWS, "full"), ("close", False)]


# --- the bar ------------------------------------------------------------------------


@dataclass
class Shown:
    code: int
    stdout: str
    terminal: str
    """What the pseudo-terminal received (stderr), escape sequences removed."""
    raw: str


def run_in_terminal(argv: list[str], env: dict[str, str], columns: int = 160) -> Shown:
    """`argv` with stdin and stderr on a pseudo-terminal `columns` wide, stdout on a pipe."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(argv, stdin=side, stdout=subprocess.PIPE, stderr=side, env=env)
    os.close(side)
    received = bytearray()
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every holder of the terminal closed it
                break
            if not chunk:
                break
            received += chunk
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        code = process.wait(timeout=PROCESS_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    raw = received.decode(errors="replace")
    return Shown(code, stdout, ANSI.sub("", raw).replace("\r", ""), raw)


def terminal_env(tmp_path: Path) -> dict[str, str]:
    env = egress_env(tmp_path / "work")
    env["TERM"] = "xterm-256color"
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


def no_bar(text: str) -> bool:
    return "rows/s" not in text and f"/{ROWS:,} rows" not in text and "━" not in text


def test_sync_in_a_terminal_draws_the_bar_on_stderr(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    world.table.append(customers(initial_rows(ROWS)))
    config = world.write_config([rest_destination(server.url)])
    shown = run_in_terminal([EGRESS, "sync", "--config", str(config)], terminal_env(tmp_path))
    assert shown.code == 0, shown.terminal
    bars = [line for line in shown.terminal.splitlines() if line.startswith("crm (full)")]
    assert bars, shown.terminal
    last = bars[-1]
    assert f"{ROWS:,}/{ROWS:,} rows" in last, last
    assert "100%" in last, last
    rate = RATE.search(last)
    assert rate is not None and int(rate.group(1).replace(",", "")) > 0, last
    assert "cycle_finished" in shown.terminal, "log lines are printed above the bar"
    assert "\x1b[" in shown.raw, "drawn by a terminal's means"
    assert "crm: ok (plan full" in shown.stdout
    assert no_bar(shown.stdout) and "\x1b" not in shown.stdout, "stdout keeps the results"


def test_sync_json_in_a_terminal_draws_no_bar(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    world.table.append(customers(initial_rows(ROWS)))
    config = world.write_config([rest_destination(server.url)])
    argv = [EGRESS, "sync", "--config", str(config), "--json"]
    shown = run_in_terminal(argv, terminal_env(tmp_path))
    assert shown.code == 0, shown.terminal
    [result] = json.loads(shown.stdout)
    assert (result["plan"], result["inserted"]) == ("full", ROWS)
    assert no_bar(shown.terminal), shown.terminal
    assert "cycle_finished" in shown.terminal, "the logs still go to the terminal"


def test_sync_off_a_terminal_draws_nothing(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    world.table.append(customers(initial_rows(ROWS)))
    config = world.write_config([rest_destination(server.url)])
    done = subprocess.run(
        [EGRESS, "sync", "--config", str(config)],
        capture_output=True,
        text=True,
        env=terminal_env(tmp_path),
        timeout=PROCESS_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "crm: ok (plan full" in done.stdout
    assert f"sent: {ROWS} inserted" in done.stdout
    assert no_bar(done.stderr) and "\x1b" not in done.stderr, done.stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert "cycle_finished" in events, "stderr holds the JSON log lines and nothing else"
