"""One destination in the daemon: its schedule, its cycles one at a time, its backoff.

Requests to run (the schedule, a nudge, a lease just taken, a reload) coalesce: while a
cycle runs, any number of requests make one more cycle after it. The schedule polls
first (polls.py): when neither the table nor anything in the state store moved since
the last successful cycle, the cycle is skipped. What a failed cycle does next depends
on its error (errors.py):

- transient (the destination or the catalog is down, a 503, a 429): exponential
  backoff with jitter from the schedule's interval, up to `MAX_BACKOFF`, and never
  before the destination's own `Retry-After`. Within a Retry-After pause even a nudge
  waits: it runs as soon as the pause ends.
- permanent (a 401, a refused grant, the delete guard, an invalid table): the
  destination is `failing` with the error's message and is retried only every
  `PERMANENT_RETRY_SECONDS` on its schedule. A nudge or a reload tries at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from floe_egress.config.models import Destination
from floe_egress.config.secrets import redact
from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.leases import CycleLease
from floe_egress.daemon.polls import Poller, PollResult
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runtime import Runtime
from floe_egress.errors import EgressError, failure_kind

log = structlog.get_logger("floe_egress.daemon")
T = TypeVar("T")

MAX_BACKOFF = 30.0
"""Longest wait after transient failures (a Retry-After may ask for longer): an outage
costs one attempt every 30 s, and its end is noticed within 30 s."""
PERMANENT_RETRY_SECONDS = 300.0
"""How often a destination failing with a permanent error is tried on its schedule."""
CANCEL_WAIT = 5.0
MAX_RETRY_AFTER = 3600.0
"""The longest Retry-After honoured (a destination asking for more gets an hour)."""

State = Literal["pending", "healthy", "backing_off", "failing"]
STATES: tuple[State, ...] = ("pending", "healthy", "backing_off", "failing")


class RunnerHost(Protocol):
    """What a runner needs from the daemon."""

    @property
    def accepting(self) -> bool: ...

    @property
    def runtime(self) -> Runtime: ...

    def holds(self, name: str) -> bool: ...

    def lease_for(self, name: str) -> CycleLease: ...

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]: ...

    def finished(self, runner: Runner, result: CycleResult, reason: str) -> None: ...

    def polled(self, runner: Runner, result: PollResult) -> None: ...


class Runner:
    """Runs the cycles of one destination, one at a time; extra requests coalesce."""

    def __init__(self, host: RunnerHost, dest: Destination) -> None:
        self.host = host
        self.dest = dest
        self.task: asyncio.Task[None] | None = None
        self.again = False
        """Another cycle was asked for while one ran."""
        self.again_now = False
        """...by something other than the schedule (which waits out a backoff)."""
        self.failures = 0
        self.not_before = 0.0
        """Loop time before which the schedule does not start a cycle (backoff)."""
        self.hold_until = 0.0
        """Loop time before which nothing starts a cycle (the destination's Retry-After)."""
        self.last: CycleResult | None = None
        self.failure: CycleResult | None = None
        """The latest failed cycle, until one succeeds."""
        self._deferred: asyncio.TimerHandle | None = None
        self.poller = Poller(dest)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def state(self) -> State:
        if self.failure is not None:
            return "failing" if self.failure.error_kind == "permanent" else "backing_off"
        if self.last is None or self.last.status == "skipped":
            return "pending"
        return "healthy"

    def request(self, reason: str) -> str:
        """'started', 'coalesced', 'deferred' (after the destination's Retry-After),
        'backing_off' (a scheduled run during backoff: skipped) or 'stopping'."""
        if not self.host.accepting:
            return "stopping"
        if self.running:
            self.again = True
            self.again_now = self.again_now or reason != "schedule"
            return "coalesced"
        now = _now()
        if now < self.hold_until:
            if reason != "schedule":
                self._defer()
            return "deferred"
        if reason == "schedule" and now < self.not_before:
            return "backing_off"
        self.task = self.host.spawn(self._run(reason), f"cycle:{self.dest.name}")
        return "started"

    def _defer(self) -> None:
        """Run once the destination's pause is over (a nudge is not lost)."""
        if self._deferred is None:
            loop = asyncio.get_running_loop()
            self._deferred = loop.call_at(self.hold_until, self._run_deferred)

    def _run_deferred(self) -> None:
        self._deferred = None
        self.request("deferred")

    def cancel(self, why: str) -> None:
        if self.task is not None and not self.task.done():
            log.warning("cycle_cancelled", destination=self.dest.name, reason=why)
            self.task.cancel()

    def close(self) -> None:
        """Forget a deferred run (the daemon stops or reloads)."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None

    async def _run(self, reason: str) -> None:
        poll = reason == "schedule"
        while True:
            self.again = self.again_now = False
            if not self.host.holds(self.dest.name):
                return
            if not poll or await self._poll() != "unchanged":
                result = await self._cycle()
                self.last = result
                self._backoff(result)
                self.host.finished(self, result, reason)
            if not self.again or not self.host.accepting:
                return
            now = _now()
            if now < self.hold_until:
                self._defer()
                return
            if not self.again_now and now < self.not_before:
                return  # only schedule ticks came: the schedule tries again after the backoff
            reason, poll = "coalesced", not self.again_now

    async def _poll(self) -> PollResult:
        """Whether a cycle could do anything (polls.py); a failing destination runs one."""
        result: PollResult = "moved"
        if self.failure is None:
            try:
                result = await asyncio.to_thread(self.poller.check, self.host.runtime)
            except Exception as exc:  # the cycle reports it, with its kind
                log.debug("poll_failed", destination=self.dest.name, error=redact(str(exc)))
                result = "unknown"
        self.poller.last = (time.time(), result)
        self.host.polled(self, result)
        if result == "unchanged":
            log.debug("poll_unchanged", destination=self.dest.name)
        return result

    async def _cycle(self) -> CycleResult:
        result = await self._run_cycle()
        runtime = self.host.runtime
        if result.status in ("ok", "noop") and result.table_pointer:
            try:
                await asyncio.to_thread(self.poller.settle, runtime, result.table_pointer)
            except Exception as exc:  # the next poll runs a full cycle
                log.debug("poll_settle_failed", destination=self.dest.name, error=redact(str(exc)))
                self.poller.forget()
        elif result.status == "failed":
            self.poller.forget()
        return result

    async def _run_cycle(self) -> CycleResult:
        try:
            return await run_cycle(
                self.host.runtime, self.dest, lease=self.host.lease_for(self.dest.name)
            )
        except Exception as exc:  # before its own error handling (the state store is down)
            error = redact(str(exc) if isinstance(exc, EgressError) else f"{exc!r}")
            log.error(
                "cycle_failed",
                destination=self.dest.name,
                error=error,
                error_type=type(exc).__name__,
            )
            return CycleResult(
                self.dest.name,
                "failed",
                error=error,
                error_kind=failure_kind(exc),
                error_type=type(exc).__name__,
            )

    def _backoff(self, result: CycleResult) -> None:
        if result.status == "skipped":
            return
        if result.status != "failed":
            self.failures, self.not_before, self.hold_until = 0, 0.0, 0.0
            self.failure = None
            return
        self.failures += 1
        self.failure = result
        now = _now()
        interval = self.dest.schedule.effective_interval
        if result.error_kind == "permanent":
            delay = max(PERMANENT_RETRY_SECONDS, interval or 0.0)
        else:
            base = interval or 60.0
            delay = min(MAX_BACKOFF, base * 2 ** min(self.failures, 10))
            delay *= 0.5 + random.random() / 2
        if result.retry_after is not None:
            pause = min(result.retry_after, MAX_RETRY_AFTER)
            self.hold_until = now + pause
            delay = max(delay, pause)
        self.not_before = now + delay
        log.warning(
            "destination_failing"
            if result.error_kind == "permanent"
            else "destination_backing_off",
            destination=self.dest.name,
            consecutive_failures=self.failures,
            retry_in_seconds=round(delay, 1),
            error_kind=result.error_kind,
            error=result.error,
        )

    def seconds_to_next_attempt(self) -> float:
        """Until the schedule may start a cycle again (0: no backoff)."""
        return max(0.0, max(self.not_before, self.hold_until) - _now())

    def carry_over(self, before: Runner) -> None:
        """After a reload: keep what the old runner knew, and the pause the destination
        asked for (Retry-After); a failing destination is tried again at once."""
        self.last, self.failure, self.failures = before.last, before.failure, before.failures
        self.hold_until = before.hold_until


def _now() -> float:
    return asyncio.get_running_loop().time()


def schedule(scheduler: AsyncIOScheduler, dest: Destination, job: Any) -> None:
    """Add `job(dest.name)` to `scheduler` on the destination's interval or cron."""
    interval = dest.schedule.effective_interval
    trigger = (
        IntervalTrigger(seconds=interval)
        if interval is not None
        else CronTrigger.from_crontab(dest.schedule.cron or "", timezone="UTC")
    )
    scheduler.add_job(
        job,
        trigger,
        args=[dest.name],
        id=dest.name,
        name=dest.name,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )


def install(
    host: RunnerHost,
    scheduler: AsyncIOScheduler,
    destinations: Sequence[Destination],
    old: Mapping[str, Runner],
    job: Any,
) -> dict[str, Runner]:
    """A runner per destination, each scheduled on `scheduler` to call `job(name)`.

    Replacing `old` runners (a reload), failing destinations are retried at once, but a
    pause a destination asked for (Retry-After) still holds."""
    runners: dict[str, Runner] = {}
    for dest in destinations:
        runner = runners[dest.name] = Runner(host, dest)
        before = old.get(dest.name)
        if before is not None:
            runner.carry_over(before)
        schedule(scheduler, dest, job)
    return runners


async def stop(
    runners: Sequence[Runner],
    grace: float,
    forced: Callable[[], bool],
    keep_leases: Callable[[], None],
    poll: float,
) -> None:
    """Wait up to `grace` for running cycles (keeping their leases), then cancel them."""
    for runner in runners:
        runner.close()
    pending = {r.task for r in runners if r.task is not None and not r.task.done()}
    if not pending:
        return
    loop = asyncio.get_running_loop()
    log.info("waiting_for_cycles", count=len(pending), grace_seconds=grace)
    deadline = loop.time() + grace
    while pending and not forced() and (left := deadline - loop.time()) > 0:
        keep_leases()
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.2, poll))
    for task in pending:
        log.warning(
            "cycle_cancelled",
            task=task.get_name(),
            reason="the grace period is over; its checkpoint did not move",
        )
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=CANCEL_WAIT)


__all__ = [
    "MAX_BACKOFF",
    "PERMANENT_RETRY_SECONDS",
    "STATES",
    "Runner",
    "RunnerHost",
    "install",
    "schedule",
    "stop",
]
