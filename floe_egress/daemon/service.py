"""`floe-egress run`: the always-on service.

One `Daemon` runs startup, the main loop, then shutdown; signal handlers only set
flags. The main loop ticks (at most every second, faster when the systemd watchdog
asks): it pings the watchdog itself, so a stuck loop gets restarted, and starts the
periodic work as background tasks that never block it: lease passes, readiness probes,
lag, a pending reload. Cycles of one destination never overlap (a `Runner` per
destination coalesces requests); different destinations run concurrently.

Several daemons may share one PostgreSQL state store: a daemon runs a destination only
while it holds that destination's lease. A lease not renewed in time is given up here
before the store lets another daemon take it (the running cycle is cancelled), so two
daemons never deliver the same destination at once.

Shutdown order: stop scheduling; let in-flight cycles finish within
`server.shutdown_grace_seconds`, then cancel them (a cancelled cycle has not moved its
checkpoint: the next start resends that range); release leases; close sinks and the
store, then the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from floe_egress.config import LoadedConfig
from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact, resolve
from floe_egress.daemon.cycle import OWNER, CycleResult, run_cycle
from floe_egress.daemon.http import is_loopback, make_app
from floe_egress.daemon.metrics import Metrics
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.status import destination_status
from floe_egress.daemon.systemd import Notifier
from floe_egress.errors import ConfigError, EgressError
from floe_egress.spec import load_spec

log = structlog.get_logger("floe_egress.daemon")
T = TypeVar("T")

TICK_SECONDS = 1.0
LEASE_POLL_SECONDS = 1.0
"""How often destinations held elsewhere are tried (at most; lease_seconds/3 when
shorter): a dead holder's go within about a second of its lease expiring."""
FENCE_MARGIN_SECONDS = 0.5
"""A lease is given up this long (at most a quarter of it) before it can expire in the
store, so its cycle is cancelled before another daemon may start one."""
PROBE_EVERY = 2.0
PROBE_TIMEOUT = 5.0
READY_STALE = 10.0
LAG_EVERY = 5.0
MAX_BACKOFF = 300.0
CANCEL_WAIT = 5.0


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
        if not self.daemon.accepting:
            return "stopping"
        if self.running:
            self.again = True
            return "coalesced"
        if reason == "schedule" and self.daemon.loop_time() < self.not_before:
            return "backing_off"
        self.task = self.daemon.spawn(self._run(reason), f"cycle:{self.dest.name}")
        return "started"

    def cancel(self, why: str) -> None:
        if self.task is not None and not self.task.done():
            log.warning("cycle_cancelled", destination=self.dest.name, reason=why)
            self.task.cancel()

    async def _run(self, reason: str) -> None:
        while True:
            self.again = False
            if not self.daemon.holds(self.dest.name):
                return
            result = await self._cycle()
            self.last = result
            self.daemon.finished(result, reason)
            self._backoff(result)
            if not self.again or not self.daemon.accepting:
                return
            reason = "coalesced"

    async def _cycle(self) -> CycleResult:
        daemon = self.daemon
        try:
            return await run_cycle(
                daemon.runtime,
                self.dest,
                owner=daemon.owner,
                lease_seconds=daemon.lease_seconds,
                release_lease=False,
                still_held=lambda: daemon.holds(self.dest.name),
            )
        except Exception as exc:  # before its own error handling (the state store is down)
            error = redact(str(exc) if isinstance(exc, EgressError) else f"{exc!r}")
            log.error(
                "cycle_failed",
                destination=self.dest.name,
                error=error,
                error_type=type(exc).__name__,
            )
            return CycleResult(self.dest.name, "failed", error=error)

    def _backoff(self, result: CycleResult) -> None:
        if result.status == "failed":
            self.failures += 1
            base = self.dest.schedule.effective_interval or 60.0
            delay = min(MAX_BACKOFF, base * 2 ** min(self.failures, 10))
            delay *= 0.5 + random.random() / 2
            self.not_before = self.daemon.loop_time() + delay
            log.warning(
                "destination_backing_off",
                destination=self.dest.name,
                consecutive_failures=self.failures,
                retry_in_seconds=round(delay, 1),
                error=result.error,
            )
        elif result.status != "skipped":
            self.failures, self.not_before = 0, 0.0


class Daemon:
    def __init__(self, config_path: Path, *, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.owner = OWNER
        self.should_exit = False
        self.force_exit = False
        self.should_reload = False
        self.exit_signal: str | None = None
        self.accepting = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.metrics = Metrics()
        self.runners: dict[str, Runner] = {}
        self.held: dict[str, float] = {}
        """Destinations whose lease this daemon holds -> loop time it is safe until."""
        self.scheduler: AsyncIOScheduler | None = None
        self._loaded: LoadedConfig | None = None
        self._runtime: Runtime | None = None
        self._token: str | None = None
        self._http: web.AppRunner | None = None
        self._fences: dict[str, asyncio.TimerHandle] = {}
        self._lease_errors: dict[str, str] = {}
        self._singles: dict[str, asyncio.Task[Any]] = {}
        self._ready: tuple[float, bool, dict[str, str]] = (0.0, False, {"startup": "pending"})
        self._wake = asyncio.Event()
        self._config_lock = asyncio.Lock()
        # Leases and probes get their own threads: cycles busy in the default executor
        # must not delay a lease renewal past its expiry.
        self._housekeeping = ThreadPoolExecutor(4, thread_name_prefix="floe-housekeeping")

    # --- what the HTTP endpoints and runners see ---------------------------------------

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            raise RuntimeError("the daemon has not loaded its configuration yet")
        return self._loaded

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the daemon has not started yet")
        return self._runtime

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def lease_seconds(self) -> float:
        return self.loaded.spec.server.lease_seconds

    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def holds(self, name: str) -> bool:
        return name in self.held

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        checked, ready, checks = self._ready
        age = self.loop_time() - checked
        if checked and age > READY_STALE:
            return False, {**checks, "probe": f"no answer for {age:.0f} s"}
        return ready, checks

    async def status(self) -> dict[str, Any]:
        async def one(name: str, runner: Runner) -> dict[str, Any]:
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
            return item

        items = await asyncio.gather(*(one(n, r) for n, r in self.runners.items()))
        ready, _ = await self.readiness()
        return {"owner": self.owner, "ready": ready, "destinations": list(items)}

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

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _single(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `work` unless the previous one of that name is still running."""
        running = self._singles.get(name)
        if running is None or running.done():
            self._singles[name] = self.spawn(work(), name)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task_failed", task=task.get_name(), error=redact(repr(exc)), exc_info=exc)

    async def _housework(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._housekeeping, fn, *args)

    def finished(self, result: CycleResult, reason: str) -> None:
        self.metrics.observe(result)
        if result.status != "skipped":
            ok = sum(1 for r in self.runners.values() if not r.failures)
            self.notifier.status(
                f"{len(self.held)}/{len(self.runners)} destinations held here, {ok} healthy; "
                f"last: {result.destination} {result.status} ({reason})"
            )

    # --- lifecycle --------------------------------------------------------------------

    def handle_exit(self, sig: int) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self.exit_signal = signal.Signals(sig).name
        self._wake.set()

    def handle_reload(self) -> None:
        self.should_reload = True
        self._wake.set()

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
        loaded = load_spec(self.config_path)
        server = loaded.spec.server
        token = resolve(server.token, path=("server", "token")) if server.token else None
        if not is_loopback(server.host) and not token:
            raise ConfigError(
                f"server.host is {server.host!r}, which is reachable beyond this machine: "
                "set server.token (a secret reference such as ${credential:floe-token}) "
                "so that POST /v1/destinations/{name}/sync needs a bearer token, "
                "or bind server.host to 127.0.0.1"
            )
        self._token = str(token) if token else None
        return loaded

    async def startup(self) -> None:
        self._loaded = await asyncio.to_thread(self._load)
        self._runtime = Runtime(self.loaded.spec)
        server = self.loaded.spec.server
        self._http = web.AppRunner(make_app(self), handle_signals=False, access_log=None)
        await self._http.setup()
        try:
            await web.TCPSite(self._http, server.host, server.port).start()
        except OSError as exc:
            raise EgressError(
                f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}; "
                "another process may hold the port (change server.port or stop it)"
            ) from None
        self._install(self.loaded)
        await self._probe()
        await self._lease_pass()
        log.info(
            "daemon_started",
            host=server.host,
            port=server.port,
            owner=self.owner,
            destinations=sorted(self.runners),
            config=str(self.config_path),
            state_store=redact(self.loaded.spec.state.url),
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
        self.accepting = True
        self.scheduler.start()

    async def _scheduled(self, name: str) -> None:
        runner = self.runners.get(name)
        if runner is not None and name in self.held:
            runner.request("schedule")

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        watchdog = self.notifier.watchdog_seconds
        tick = min(TICK_SECONDS, self._lease_poll, watchdog / 4 if watchdog else TICK_SECONDS)
        next_watchdog = next_probe = next_lag = 0.0
        next_lease = loop.time() + self._lease_poll
        while not self.should_exit:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            now = loop.time()
            if watchdog and now >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now + watchdog / 2
            if self.should_exit:
                break
            if now >= next_lease:
                self._single("leases", self._lease_pass)
                next_lease = now + self._lease_poll
            if now >= next_probe:
                self._single("readiness", self._probe)
                next_probe = now + PROBE_EVERY
            if now >= next_lag:
                self._single("lag", self._update_lag)
                next_lag = now + LAG_EVERY
            if self.should_reload:
                self.should_reload = False
                self._single("reload", self._reload)
        log.info("shutdown_requested", signal=self.exit_signal)

    # --- leases -------------------------------------------------------------------------

    @property
    def _lease_poll(self) -> float:
        return min(LEASE_POLL_SECONDS, self.lease_seconds / 3)

    async def _lease_pass(self, *, take_new: bool = True) -> None:
        """Renew the leases held here when due; try to take the others (`take_new`)."""
        async with self._config_lock:
            loop = asyncio.get_running_loop()
            ttl = self.lease_seconds
            for name in list(self.runners):
                until = self.held.get(name)
                if until is None and not take_new:
                    continue
                if until is not None and until - loop.time() > ttl * 2 / 3:
                    continue
                asked = loop.time()
                try:
                    got = await self._housework(self._acquire, name, ttl)
                except Exception as exc:  # the fence gives the lease up if this persists
                    error = redact(str(exc))
                    if self._lease_errors.get(name) != error:  # once, not every second
                        log.warning("lease_renewal_failed", destination=name, error=error)
                    self._lease_errors[name] = error
                    continue
                if self._lease_errors.pop(name, None) is not None:
                    log.info("lease_renewal_recovered", destination=name)
                if got:
                    self._hold(name, asked + ttl)
                elif name in self.held:
                    self._give_up(name, "lease_lost", "another daemon holds it now")

    def _acquire(self, name: str, ttl: float) -> bool:
        return self.runtime.store.acquire_lease(name, self.owner, ttl)

    def _release(self, name: str) -> None:
        self.runtime.store.release_lease(name, self.owner)

    def _hold(self, name: str, until: float) -> None:
        first = name not in self.held
        self.held[name] = until
        self._unfence(name)
        loop = asyncio.get_running_loop()
        self._fences[name] = loop.call_at(
            until - min(FENCE_MARGIN_SECONDS, self.lease_seconds / 4),
            self._give_up,
            name,
            "lease_expired",
            "not renewed in time (is the state store answering?)",
        )
        if first:
            log.info("lease_acquired", destination=name, owner=self.owner)
            self.metrics.lease_held.labels(name).set(1)
            runner = self.runners.get(name)
            if runner is not None:
                runner.request("lease")

    def _give_up(self, name: str, event: str, why: str) -> None:
        """Stop acting for `name`: forget the lease, cancel its running cycle."""
        self._forget(name)
        log.warning(event, destination=name, owner=self.owner, reason=why)
        runner = self.runners.get(name)
        if runner is not None:
            runner.cancel(f"{event}: {why}")

    def _unfence(self, name: str) -> None:
        fence = self._fences.pop(name, None)
        if fence is not None:
            fence.cancel()

    def _forget(self, name: str) -> None:
        self.held.pop(name, None)
        self._unfence(name)
        self.metrics.lease_held.labels(name).set(0)

    async def _release_all(self, names: list[str]) -> None:
        for name in names:
            self._forget(name)
            try:
                await asyncio.wait_for(self._housework(self._release, name), CANCEL_WAIT)
            except Exception as exc:  # it expires on its own
                log.warning("lease_release_failed", destination=name, error=redact(str(exc)))

    # --- readiness and lag --------------------------------------------------------------

    async def _probe(self) -> None:
        checks: dict[str, str] = {}
        runtime = self.runtime

        def probe() -> None:
            try:
                runtime.store.ping()
                checks["state_store"] = "ok"
            except Exception as exc:
                checks["state_store"] = redact(str(exc)) or type(exc).__name__
            try:
                runtime.catalog.list_namespaces()
                checks["catalog"] = "ok"
            except Exception as exc:
                checks["catalog"] = redact(f"{type(exc).__name__}: {exc}")

        try:
            await asyncio.wait_for(self._housework(probe), PROBE_TIMEOUT)
        except TimeoutError:
            checks.setdefault("state_store", f"no answer within {PROBE_TIMEOUT:.0f} s")
            checks.setdefault("catalog", f"no answer within {PROBE_TIMEOUT:.0f} s")
        running = self.scheduler is not None and self.scheduler.running
        checks["scheduler"] = "ok" if running else "not running"
        ready = all(v == "ok" for v in checks.values())
        checked_before, was_ready, _ = self._ready
        self._ready = (self.loop_time(), ready, checks)
        self.metrics.ready.set(1 if ready else 0)
        if ready and not was_ready:
            log.info("ready")
        elif not ready and (was_ready or not checked_before):
            log.warning("not_ready", checks={k: v for k, v in checks.items() if v != "ok"})

    async def _update_lag(self) -> None:
        for name, runner in list(self.runners.items()):
            try:
                status = await asyncio.to_thread(destination_status, self.runtime, runner.dest)
            except Exception as exc:  # status errors show on /status; lag simply waits
                log.debug("lag_unavailable", destination=name, error=redact(str(exc)))
                continue
            if status.get("lag_seconds") is not None:
                self.metrics.lag.labels(name).set(status["lag_seconds"])

    # --- reload -------------------------------------------------------------------------

    async def _reload(self) -> None:
        self.notifier.reloading()
        log.info("reload_requested", config=str(self.config_path))
        try:
            loaded = await asyncio.to_thread(self._load)
        except Exception as exc:
            log.error(
                "reload_rejected",
                config=str(self.config_path),
                error=redact(str(exc)),
                detail="keeping the running configuration",
            )
            self.notifier.ready("reload rejected: keeping the running configuration")
            return
        old = self.loaded.spec
        new = loaded.spec
        if (old.server.host, old.server.port) != (new.server.host, new.server.port):
            log.warning(
                "reload_server_address_unchanged",
                detail="server.host and server.port take effect at the next start",
            )
        await self._stop_cycles(old.server.shutdown_grace_seconds)
        async with self._config_lock:
            keep = {d.name for d in new.ingestion.destinations if d.enabled}
            if new.state.url != old.state.url:
                keep = set()
            await self._release_all([n for n in self.held if n not in keep])
            old_runtime = self.runtime
            self._loaded, self._runtime = loaded, Runtime(new)
            await old_runtime.close()
            self._install(loaded)
            for name in self.held:
                self.runners[name].request("reload")
        await self._lease_pass()
        self.notifier.ready(f"reloaded: {len(self.runners)} destinations")
        log.info("reload_finished", destinations=sorted(self.runners))

    async def _stop_cycles(self, grace: float) -> None:
        """Stop scheduling; wait up to `grace` for running cycles, then cancel them."""
        self.accepting = False
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        pending = {r.task for r in self.runners.values() if r.task and not r.task.done()}
        if not pending:
            return
        loop = asyncio.get_running_loop()
        log.info("waiting_for_cycles", count=len(pending), grace_seconds=grace)
        deadline = loop.time() + grace
        while pending and not self.force_exit and (left := deadline - loop.time()) > 0:
            # The main loop may be gone (shutdown): keep the leases of finishing cycles.
            self._single("leases", lambda: self._lease_pass(take_new=False))
            _, pending = await asyncio.wait(pending, timeout=min(left, 0.2, self._lease_poll))
        for task in pending:
            log.warning(
                "cycle_cancelled",
                task=task.get_name(),
                reason="the grace period is over; its checkpoint did not move",
            )
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_WAIT)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("daemon_stopping", signal=self.exit_signal)
        if self._loaded is not None:
            grace = 0.0 if self.force_exit else self.loaded.spec.server.shutdown_grace_seconds
            await self._stop_cycles(grace)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=CANCEL_WAIT)
        if self._runtime is not None:
            # A cancelled cycle's database load may still be running in its thread:
            # wait for it before another daemon may take the destination over.
            await self._runtime.close_sinks()
            await self._release_all(list(self.held))
            await self._runtime.close()
        if self._http is not None:
            await self._http.cleanup()
        self._housekeeping.shutdown(wait=False, cancel_futures=True)
        self.notifier.close()
        log.info("daemon_stopped")


def run_daemon(config_path: Path) -> int:
    return asyncio.run(Daemon(config_path).serve())
