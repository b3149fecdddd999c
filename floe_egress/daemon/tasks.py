"""Background work of the daemon: tasks it keeps a reference to, and its own threads.

Every task is kept until it ends and its failure is logged, never fired and forgotten.
Housework (lease renewals, readiness probes) runs on threads of its own, so cycles busy
in the default executor cannot delay a lease renewal past its expiry; the calling
task's context (whatever structlog has bound there) goes along, as with to_thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from floe_egress.config.secrets import redact

T = TypeVar("T")
log = structlog.get_logger("floe_egress.daemon")


class Tasks:
    """The daemon's background tasks."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[Any]] = set()
        self._singles: dict[str, asyncio.Task[Any]] = {}

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self.running.add(task)
        task.add_done_callback(self._done)
        return task

    def single(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `work` unless the previous one of that name is still running."""
        running = self._singles.get(name)
        if running is None or running.done():
            self._singles[name] = self.spawn(work(), name)

    async def cancel_all(self, wait: float) -> None:
        for task in list(self.running):
            task.cancel()
        if self.running:
            await asyncio.wait(list(self.running), timeout=wait)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task_failed", task=task.get_name(), error=redact(repr(exc)), exc_info=exc)


class Housework:
    """A few threads of the daemon's own for short blocking calls."""

    def __init__(self, threads: int = 4) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="floe-housekeeping")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["Housework", "Tasks"]
