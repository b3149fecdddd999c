"""`floe-egress run`: the always-on service, its lifecycle and its reloads.

One `Daemon` runs startup, the main loop, then shutdown; signal handlers only set
flags. The main loop ticks (at most every second, faster when the systemd watchdog
asks): it pings the watchdog itself, so a stuck loop gets restarted, and starts the
periodic work as background tasks that never block it: lease passes, readiness probes,
lag, a pending reload. Each destination has a `Runner` (runner.py: its cycles one at a
time, its backoff); a runner runs only while this daemon holds the destination's lease
(leases.py). Health, lag and status are in health.py, the endpoints in http.py.

Shutdown order: stop scheduling; let in-flight cycles finish within
`server.shutdown_grace_seconds`, then cancel them (a cancelled cycle has not moved its
checkpoint: the next start resends that range); release leases; close sinks and the
store, then the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from floe_egress.config import LoadedConfig
from floe_egress.config.secrets import redact
from floe_egress.daemon.health import LAG_EVERY, PROBE_EVERY, Health
from floe_egress.daemon.http import Endpoints, server_token
from floe_egress.daemon.leases import OWNER, CycleLease, DaemonLeases
from floe_egress.daemon.metrics import Metrics
from floe_egress.daemon.polls import PollResult
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runner import Runner, install, stop
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.systemd import Notifier
from floe_egress.daemon.tasks import Housework, Tasks
from floe_egress.spec import load_spec

log = structlog.get_logger("floe_egress.daemon")

TICK_SECONDS = 1.0
CANCEL_WAIT = 5.0


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
        self.metrics = Metrics()
        self.tasks = Tasks()
        self.spawn = self.tasks.spawn
        self.housework = Housework()
        self.leases = DaemonLeases(self.owner, self, self.housework)
        self.health = Health(self, self.metrics, self.housework)
        self.runners: dict[str, Runner] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self._loaded: LoadedConfig | None = None
        self._runtime: Runtime | None = None
        self._token: str | None = None
        self.endpoints = Endpoints(self.health)
        self._wake = asyncio.Event()
        self._config_lock = asyncio.Lock()

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
    def lease_seconds(self) -> float:
        return self.loaded.spec.server.lease_seconds

    @property
    def token(self) -> str | None:
        return self._token

    # --- what runners and leases see (runner.RunnerHost, leases.LeaseEvents) ------------

    def holds(self, name: str) -> bool:
        return self.leases.holds(name)

    def lease_for(self, name: str) -> CycleLease:
        return self.leases.for_cycle(name, self.lease_seconds)

    def finished(self, runner: Runner, result: CycleResult, reason: str) -> None:
        self.metrics.observe(result)
        self.metrics.observe_runner(runner, time.time())
        if result.status != "skipped":
            ok = sum(1 for r in self.runners.values() if not r.failures)
            self.notifier.status(
                f"{len(self.leases.held)}/{len(self.runners)} destinations held here, "
                f"{ok} healthy; last: {result.destination} {result.status} ({reason})"
            )

    def polled(self, runner: Runner, result: PollResult) -> None:
        self.metrics.polls.labels(runner.dest.name, result).inc()

    def lease_held(self, name: str, held: bool) -> None:
        self.metrics.lease_held.labels(name).set(1 if held else 0)
        runner = self.runners.get(name)
        if held and runner is not None:
            runner.request("lease")

    def lease_lost(self, name: str, why: str) -> None:
        runner = self.runners.get(name)
        if runner is not None:
            runner.cancel(why)

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

    def _load(self) -> tuple[LoadedConfig, str | None]:
        loaded = load_spec(self.config_path)
        return loaded, server_token(loaded.spec.server)

    async def startup(self) -> None:
        self._loaded, self._token = await asyncio.to_thread(self._load)
        self._runtime = Runtime(self.loaded.spec)
        server = self.loaded.spec.server
        await self.endpoints.start(server.host, server.port)
        self._install(self.loaded)
        await self.health.probe()
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
        enabled = [d for d in loaded.spec.ingestion.destinations if d.enabled]
        self.runners = install(self, self.scheduler, enabled, self.runners, self._scheduled)
        self.metrics.retain(self.runners)
        self.accepting = True
        self.scheduler.start()

    async def _scheduled(self, name: str) -> None:
        runner = self.runners.get(name)
        if runner is not None and self.holds(name):
            runner.request("schedule")

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        watchdog = self.notifier.watchdog_seconds
        poll = self.leases.poll_seconds(self.lease_seconds)
        tick = min(TICK_SECONDS, poll, watchdog / 4 if watchdog else TICK_SECONDS)
        next_watchdog = next_probe = next_lag = 0.0
        next_lease = loop.time() + poll
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
                self.tasks.single("leases", self._lease_pass)
                next_lease = now + self.leases.poll_seconds(self.lease_seconds)
            if now >= next_probe:
                self.tasks.single("readiness", self.health.probe)
                next_probe = now + PROBE_EVERY
            if now >= next_lag:
                self.tasks.single("lag", self.health.update_lag)
                next_lag = now + LAG_EVERY
            if self.should_reload:
                self.should_reload = False
                self.tasks.single("reload", self._reload)
        log.info("shutdown_requested", signal=self.exit_signal)

    async def _lease_pass(self, *, take_new: bool = True) -> None:
        async with self._config_lock:
            names = list(self.runners)
            runtime = self.runtime
            await self.leases.renew(
                lambda: runtime.store, names, self.lease_seconds, take_new=take_new
            )

    async def _reload(self) -> None:
        self.notifier.reloading()
        log.info("reload_requested", config=str(self.config_path))
        before = self._token
        try:
            loaded, token = await asyncio.to_thread(self._load)
            # While two sockets may be bound, the stricter token rule of the two holds.
            self._token = token or before
            await self.endpoints.move(loaded.spec.server.host, loaded.spec.server.port)
        except Exception as exc:
            self._token = before
            log.error(
                "reload_rejected",
                config=str(self.config_path),
                error=redact(str(exc)),
                detail="keeping the running configuration",
            )
            self.notifier.ready("reload rejected: keeping the running configuration")
            return
        self._token = token
        old, new = self.loaded.spec, loaded.spec
        await self._stop_cycles(old.server.shutdown_grace_seconds)
        async with self._config_lock:
            keep = {d.name for d in new.ingestion.destinations if d.enabled}
            if new.state.url != old.state.url:
                keep = set()
            old_runtime = self.runtime
            gone = [n for n in self.leases.held if n not in keep]
            await self.leases.release(lambda: old_runtime.store, gone)
            self._loaded, self._runtime = loaded, Runtime(new)
            await old_runtime.close()
            self._install(loaded)
            for name in self.leases.held:
                self.runners[name].request("reload")
        await self._lease_pass()
        self.notifier.ready(f"reloaded: {len(self.runners)} destinations")
        log.info("reload_finished", destinations=sorted(self.runners))

    async def _stop_cycles(self, grace: float) -> None:
        """Stop scheduling; wait up to `grace` for running cycles, then cancel them."""
        self.accepting = False
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

        def keep_leases() -> None:
            # The main loop may be gone (shutdown): keep the leases of finishing cycles.
            self.tasks.single("leases", lambda: self._lease_pass(take_new=False))

        poll = self.leases.poll_seconds(self.lease_seconds)
        await stop(list(self.runners.values()), grace, lambda: self.force_exit, keep_leases, poll)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("daemon_stopping", signal=self.exit_signal)
        if self._loaded is not None:
            grace = 0.0 if self.force_exit else self.loaded.spec.server.shutdown_grace_seconds
            await self._stop_cycles(grace)
        await self.tasks.cancel_all(CANCEL_WAIT)
        if self._runtime is not None:
            # A cancelled cycle's database load may still be running in its thread:
            # wait for it before another daemon may take the destination over.
            await self._runtime.close_sinks()
            runtime = self._runtime
            await self.leases.release(lambda: runtime.store, list(self.leases.held))
            await self._runtime.close()
        await self.endpoints.close()
        self.housework.close()
        self.notifier.close()
        log.info("daemon_stopped")


def run_daemon(config_path: Path) -> int:
    return asyncio.run(Daemon(config_path).serve())
