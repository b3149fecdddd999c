"""`floe-egress run`: the always-on service.

One `Daemon` runs startup, the main loop, then shutdown; signal handlers only set
flags. The main loop ticks every second: watchdog ping, lease renewal, readiness,
lag, a pending reload. Cycles of one destination never overlap (a runner per
destination coalesces requests); different destinations run concurrently.

Shutdown order: stop scheduling; let in-flight cycles finish within
`server.shutdown_grace_seconds`, then cancel them (a cancelled cycle has not moved its
checkpoint: the next start resends that range); release leases; close sinks, the
store, then the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from floe_egress.config import LoadedConfig, load_config
from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact, resolve
from floe_egress.daemon.cycle import OWNER, CycleResult, run_cycle
from floe_egress.daemon.http import is_loopback, make_app
from floe_egress.daemon.metrics import Metrics
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.status import destination_status
from floe_egress.daemon.systemd import Notifier
from floe_egress.errors import ConfigError

log = structlog.get_logger("floe_egress.daemon")

TICK_SECONDS = 1.0
READINESS_TTL = 5.0
LAG_EVERY = 15.0
MAX_BACKOFF = 300.0


class Runner:
    """Runs the cycles of one destination, one at a time; extra requests coalesce."""

    def __init__(self, daemon: Daemon, dest: Destination) -> None:
        self.daemon = daemon
        self.dest = dest
        self.task: asyncio.Task[None] | None = None
        self.again = False
        self.failures = 0
        self.not_before = 0.0
        self.last: CycleResult | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def request(self, reason: str) -> str:
        if self.running:
            self.again = True
            return "coalesced"
        if reason == "schedule" and time.monotonic() < self.not_before:
            return "backing_off"
        self.task = asyncio.create_task(self._run(reason), name=f"cycle:{self.dest.name}")
        self.daemon.tasks.add(self.task)
        self.task.add_done_callback(self.daemon.task_done)
        return "started"

    async def _run(self, reason: str) -> None:
        while True:
            self.again = False
            if not self.daemon.holds(self.dest.name):
                return
            result = await run_cycle(
                self.daemon.runtime,
                self.dest,
                owner=self.daemon.owner,
                lease_seconds=self.daemon.lease_seconds,
                release_lease=False,
            )
            self.daemon.finished(result, reason)
            self.last = result
            if result.status == "failed":
                self.failures += 1
                base = self.dest.schedule.effective_interval or 60.0
                delay = min(MAX_BACKOFF, base * 2 ** min(self.failures, 10))
                self.not_before = time.monotonic() + delay * (0.5 + random.random() / 2)
            elif result.status != "skipped":
                self.failures, self.not_before = 0, 0.0
            if not self.again or self.daemon.should_exit:
                return
            reason = "coalesced"


class Daemon:
    def __init__(self, config_path: Path, *, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.owner = OWNER
        self.should_exit = False
        self.force_exit = False
        self.should_reload = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.metrics = Metrics()
        self.loaded: LoadedConfig
        self.runtime: Runtime
        self.runners: dict[str, Runner] = {}
        self.held: set[str] = set()
        self.scheduler: AsyncIOScheduler | None = None
        self._token: str | None = None
        self._http: web.AppRunner | None = None
        self._ready: tuple[float, bool, dict[str, str]] = (0.0, False, {"startup": "pending"})
        self._last_lag = 0.0

    # --- what the HTTP endpoints see -------------------------------------------------

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def lease_seconds(self) -> float:
        return self.loaded.spec.server.lease_seconds

    def holds(self, name: str) -> bool:
        return name in self.held

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        checked, ready, checks = self._ready
        if time.monotonic() - checked > READINESS_TTL:
            await self._check_ready()
            _, ready, checks = self._ready
        return ready, checks

    async def status(self) -> list[dict[str, Any]]:
        out = []
        for name, runner in self.runners.items():
            try:
                item = await asyncio.to_thread(destination_status, self.runtime, runner.dest)
            except Exception as exc:  # the store may be down: say so, keep answering
                item = {"destination": name, "error": redact(str(exc))}
            job = self.scheduler.get_job(name) if self.scheduler else None
            item["daemon"] = {
                "running": runner.running,
                "held_here": name in self.held,
                "consecutive_failures": runner.failures,
                "next_run": job.next_run_time.isoformat() if job and job.next_run_time else None,
                "last_result": runner.last.to_json() if runner.last else None,
            }
            out.append(item)
        return out

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def request_sync(self, name: str, reason: str) -> str | None:
        runner = self.runners.get(name)
        if runner is None:
            return None
        if name not in self.held:
            return "held_elsewhere"
        return runner.request(reason)

    # --- task bookkeeping ---------------------------------------------------------------

    def task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task_failed", task=task.get_name(), error=redact(str(exc)), exc_info=exc)

    def finished(self, result: CycleResult, reason: str) -> None:
        self.metrics.observe(result)
        if result.status != "skipped":
            ok = sum(1 for r in self.runners.values() if not r.failures)
            self.notifier.status(
                f"{len(self.held)}/{len(self.runners)} destinations held, {ok} healthy; "
                f"last: {result.destination} {result.status}"
            )

    # --- lifecycle --------------------------------------------------------------------

    def handle_exit(self, sig: int) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True

    def handle_reload(self) -> None:
        self.should_reload = True

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.handle_reload)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return 0

    def _load(self) -> LoadedConfig:
        loaded = load_config(self.config_path)
        server = loaded.spec.server
        token = resolve(server.token, path=("server", "token")) if server.token else None
        if not is_loopback(server.host) and not token:
            raise ConfigError(
                f"server.host is {server.host!r}, which is reachable beyond this machine: "
                "set server.token (a secret reference such as ${credential:floe-token}) "
                "so that POST /v1/destinations/{name}/sync needs a bearer token"
            )
        self._token = str(token) if token else None
        return loaded

    async def startup(self) -> None:
        self.loaded = await asyncio.to_thread(self._load)
        self.runtime = Runtime(self.loaded.spec)
        server = self.loaded.spec.server
        self._http = web.AppRunner(make_app(self), handle_signals=False, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, server.host, server.port)
        await site.start()
        self._install(self.loaded)
        await self._check_ready()
        await self._renew_leases()
        log.info(
            "daemon_started",
            host=server.host,
            port=server.port,
            owner=self.owner,
            destinations=sorted(self.runners),
            config=str(self.config_path),
        )
        self.notifier.ready(
            f"serving {len(self.runners)} destinations on {server.host}:{server.port}"
        )

    def _install(self, loaded: LoadedConfig) -> None:
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.runners = {}
        for dest in loaded.spec.ingestion.destinations:
            if not dest.enabled:
                continue
            self.runners[dest.name] = Runner(self, dest)
            interval = dest.schedule.effective_interval
            trigger = (
                IntervalTrigger(seconds=interval)
                if interval is not None
                else CronTrigger.from_crontab(dest.schedule.cron or "", timezone="UTC")
            )
            self.scheduler.add_job(
                self._scheduled,
                trigger,
                args=[dest.name],
                id=dest.name,
                name=dest.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.start()

    async def _scheduled(self, name: str) -> None:
        runner = self.runners.get(name)
        if runner is not None and name in self.held and not self.should_exit:
            runner.request("schedule")

    async def main_loop(self) -> None:
        next_watchdog = 0.0
        next_lease = time.monotonic() + self.lease_seconds / 3
        while not self.should_exit:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if self.notifier.watchdog_seconds and now >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now + self.notifier.watchdog_seconds / 2
            if now >= next_lease:
                await self._renew_leases()
                next_lease = now + self.lease_seconds / 3
            if now - self._last_lag >= LAG_EVERY:
                self._last_lag = now
                self._spawn(self._update_lag(), "lag")
            if self.should_reload:
                self.should_reload = False
                await self._reload()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.task_done)

    async def _renew_leases(self) -> None:
        store = self.runtime.store
        for name in self.runners:
            try:
                got = await asyncio.to_thread(
                    store.acquire_lease, name, self.owner, self.lease_seconds
                )
            except Exception as exc:
                log.warning("lease_renewal_failed", destination=name, error=redact(str(exc)))
                got = False
            if got and name not in self.held:
                log.info("lease_acquired", destination=name, owner=self.owner)
                self.held.add(name)
                self.runners[name].request("lease")
            elif not got and name in self.held:
                log.warning("lease_lost", destination=name, owner=self.owner)
                self.held.discard(name)

    async def _check_ready(self) -> None:
        checks: dict[str, str] = {}

        def probe() -> None:
            try:
                self.runtime.store.ping()
                checks["state_store"] = "ok"
            except Exception as exc:
                checks["state_store"] = redact(str(exc))
            try:
                self.runtime.catalog.list_namespaces()
                checks["catalog"] = "ok"
            except Exception as exc:
                checks["catalog"] = redact(f"{type(exc).__name__}: {exc}")

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout=10)
        except TimeoutError:
            checks.setdefault("state_store", "no answer within 10 s")
            checks.setdefault("catalog", "no answer within 10 s")
        running = self.scheduler is not None and self.scheduler.running
        checks["scheduler"] = "ok" if running else "not running"
        ready = all(v == "ok" for v in checks.values())
        self.metrics.ready.set(1 if ready else 0)
        self._ready = (time.monotonic(), ready, checks)

    async def _update_lag(self) -> None:
        for name, runner in list(self.runners.items()):
            try:
                status = await asyncio.to_thread(destination_status, self.runtime, runner.dest)
            except Exception as exc:  # status errors show on /status; lag simply waits
                log.debug("lag_unavailable", destination=name, error=redact(str(exc)))
                continue
            if status.get("lag_seconds") is not None:
                self.metrics.lag.labels(name).set(status["lag_seconds"])

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            loaded = await asyncio.to_thread(self._load)
        except Exception as exc:
            log.error(
                "reload_rejected",
                error=redact(str(exc)),
                detail="keeping the running configuration",
            )
            self.notifier.status("reload rejected: keeping the running configuration")
            return
        log.info("reload_started", config=str(self.config_path))
        await self._stop_cycles(self.loaded.spec.server.shutdown_grace_seconds)
        old_runtime = self.runtime
        self.loaded = loaded
        self.runtime = Runtime(loaded.spec)
        await old_runtime.close()
        self.held = set()
        self._install(loaded)
        await self._renew_leases()
        self.notifier.ready(f"reloaded: {len(self.runners)} destinations")
        log.info("reload_finished", destinations=sorted(self.runners))

    async def _stop_cycles(self, grace: float) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        cycles = [r.task for r in self.runners.values() if r.task and not r.task.done()]
        if not cycles:
            return
        log.info("waiting_for_cycles", count=len(cycles), grace_seconds=grace)
        _, pending = await asyncio.wait(cycles, timeout=grace)
        for task in pending:
            log.warning(
                "cycle_cancelled",
                task=task.get_name(),
                detail="grace period over; its checkpoint did not move",
            )
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("daemon_stopping")
        if hasattr(self, "loaded"):
            grace = 0.0 if self.force_exit else self.loaded.spec.server.shutdown_grace_seconds
            await self._stop_cycles(grace)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        if hasattr(self, "runtime"):
            for name in list(self.held):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.runtime.store.release_lease, name, self.owner)
            self.held.clear()
            await self.runtime.close()
        if self._http is not None:
            await self._http.cleanup()
        self.notifier.close()
        log.info("daemon_stopped")


def run_daemon(config_path: Path) -> int:
    return asyncio.run(Daemon(config_path).serve())
