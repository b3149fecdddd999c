"""Request budgets shared per API account: a leaky-bucket rate limit and a concurrency cap.

Every destination that talks to the same account (RateLimit.account, else the host of
the API plus a digest of the credential) draws from one budget, so two destinations on
one CRM cannot together exceed what the account allows. Budgets live on an event loop:
asyncio primitives cannot cross loops, so the registry is keyed by (loop, account).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
from aiolimiter import AsyncLimiter

from floe_egress.config.models import RateLimit

DEFAULT_MAX_CONCURRENCY = 4
log = structlog.get_logger(__name__)
JITTER_ALLOWANCE = 0.1
"""Requests reach the API some time after leaving the limiter, and not all equally late
(network jitter, new connections, pauses of a busy process), so a 1-second window at the
API can hold a little more than 1 s of the limiter's output. The bucket drains as if a
second lasted 1.1 s: every API-side second stays within rps + burst for up to 100 ms of
jitter, at the cost of running at about 91% of the configured rate."""


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """What a destination asks of its account's budget."""

    account: str
    requests_per_second: float | None
    burst: int
    max_concurrency: int

    @classmethod
    def from_rate_limit(cls, account: str, rate: RateLimit | None) -> BudgetSpec:
        if rate is None:
            return cls(account, None, 1, DEFAULT_MAX_CONCURRENCY)
        burst = rate.burst if rate.burst is not None else max(1, int(rate.requests_per_second))
        return cls(account, rate.requests_per_second, burst, rate.max_concurrency)


class Budget:
    """One account's limiter and concurrency cap on one event loop."""

    def __init__(self, spec: BudgetSpec) -> None:
        self.spec = spec
        self._semaphore = asyncio.Semaphore(spec.max_concurrency)
        self._limiter: AsyncLimiter | None = None
        self._resume_at = 0.0
        if spec.requests_per_second is not None:
            # A bucket of `burst` that drains at `rps`: any window of T seconds admits at
            # most burst + rps * T requests.
            rate = spec.requests_per_second / (1 + JITTER_ALLOWANCE)
            self._limiter = AsyncLimiter(spec.burst, spec.burst / rate)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the account's concurrent request slots."""
        async with self._semaphore:
            yield

    def hold(self, seconds: float) -> None:
        """Pause the whole account for `seconds` (the API said so with a 429)."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def take(self) -> float:
        """Take one request from the rate limit, to be sent at once; returns the seconds
        spent waiting.

        A hold that began while the request waited in the limiter is waited out too, and
        the limit taken again after it: nothing reaches the account before the hold ends,
        and what leaves after it still keeps to the rate.
        """
        start = time.monotonic()
        while True:
            await self._held()
            if self._limiter is None:
                break
            await self._limiter.acquire()
            if self._resume_at <= time.monotonic():
                break
        return time.monotonic() - start

    async def _held(self) -> None:
        pause = self._resume_at - time.monotonic()
        while pause > 0:  # another 429 may extend the hold while we sleep
            await asyncio.sleep(pause)
            pause = self._resume_at - time.monotonic()


_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Budget]] = (
    weakref.WeakKeyDictionary()
)


_WARNED: set[str] = set()


def budget_for(spec: BudgetSpec) -> Budget:
    """The budget of `spec.account` on the running loop; the first destination sets it."""
    loop = asyncio.get_running_loop()
    budgets = _BUDGETS.setdefault(loop, {})
    budget = budgets.get(spec.account)
    if budget is None:
        budget = budgets[spec.account] = Budget(spec)
    elif budget.spec != spec and spec.account not in _WARNED:
        _WARNED.add(spec.account)
        log.warning(
            "rate_limit_conflict",
            account=spec.account,
            used=str(budget.spec),
            ignored=str(spec),
            hint="destinations sharing an account should declare the same rate_limit",
        )
    return budget


def account_key(rate: RateLimit | None, url: str, credential: str | None) -> str:
    """RateLimit.account when set, else `host#<digest of the credential>`.

    The credential is hashed so that the key can be logged and two tokens of one host
    (two HubSpot portals, say) get separate budgets.
    """
    if rate is not None and rate.account:
        return rate.account
    host = urlsplit(url).netloc.lower() or url
    if not credential:
        return host
    digest = hashlib.sha256(credential.encode()).hexdigest()[:12]
    return f"{host}#{digest}"
