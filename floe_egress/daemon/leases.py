"""Leases: one process at a time delivers a destination.

A lease is a row in the state store with an owner and an expiry on the database's own
clock. A cycle runs under a `CycleLease`, which has two implementations:

- `StandaloneLease` (the CLI's `sync`): taken for one cycle, kept alive while it runs,
  released after it. A lease left by a process of this host that no longer exists (a
  `sync` killed before it could release it) is taken over.
- `HeldLease` (the daemon): the daemon's `DaemonLeases` takes and renews leases in
  passes and holds them between cycles. One not renewed in time is given up here before
  the store lets another daemon take it (the running cycle is cancelled), so two
  daemons never deliver the same destination at once; a cycle also asks between writes.

Both renew the lease in the store right before the checkpoint moves: a process that
lost it does not commit, and the holder resends the range.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from floe_egress.config.secrets import redact
from floe_egress.daemon.tasks import Housework
from floe_egress.errors import LeaseLostError
from floe_egress.state.store import StateStore

log = structlog.get_logger("floe_egress.leases")

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
"""This process as a lease owner: host, pid and a random part (pids are reused)."""
LEASE_SECONDS = 60.0
"""A standalone `sync`'s lease; renewed every third of it while the cycle runs."""
LEASE_POLL_SECONDS = 1.0
"""How often the daemon tries destinations held elsewhere (at most; lease_seconds/3 when
shorter): a dead holder's go within about a second of its lease expiring."""
FENCE_MARGIN_SECONDS = 0.5
"""A lease is given up this long (at most a quarter of it) before it can expire in the
store, so its cycle is cancelled before another daemon may start one."""
RELEASE_WAIT = 5.0
StoreOf = Callable[[], StateStore]
"""The state store, opened on first use (in a thread: it may block)."""


class CycleLease(Protocol):
    """What a cycle needs from a lease."""

    async def take(self, store: StateStore) -> str | None:
        """None when this process may deliver the destination now; else why not."""

    def check(self) -> None:
        """Raise LeaseLostError when the lease is no longer held (asked between writes)."""

    async def confirm(self) -> None:
        """Renew the lease in the store before the checkpoint moves; LeaseLostError if
        another process holds it now."""

    async def release(self) -> None:
        """Give the lease back if this cycle alone held it."""


def take_lease(store: StateStore, destination: str, owner: str, ttl: float) -> bool:
    """Take the lease; also from a process of this host that no longer exists."""
    if store.acquire_lease(destination, owner, ttl):
        return True
    holder = store.lease_holder(destination)
    if holder is None or not _is_dead_local_process(holder):
        return False
    log.warning("lease_taken_from_dead_process", destination=destination, dead_owner=holder)
    return store.take_over_lease(destination, holder, owner, ttl)


def _is_dead_local_process(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


class _StoreLease:
    """Taking and confirming in the store, shared by both kinds of lease."""

    def __init__(self, destination: str, owner: str, ttl: float) -> None:
        self.destination = destination
        self.owner = owner
        self.ttl = ttl
        self.store: StateStore | None = None

    async def take(self, store: StateStore) -> str | None:
        self.store = store
        if await asyncio.to_thread(take_lease, store, self.destination, self.owner, self.ttl):
            self.taken()
            return None
        holder = await asyncio.to_thread(store.lease_holder, self.destination)
        return (
            f"destination {self.destination} is being synced by {holder or 'another process'} "
            f"(its lease lasts up to {self.ttl:.0f} s); nothing was done"
        )

    def taken(self) -> None:
        """Called once the store granted the lease."""

    async def confirm(self) -> None:
        store = self.store
        assert store is not None, "confirm() before take()"
        if not await asyncio.to_thread(store.acquire_lease, self.destination, self.owner, self.ttl):
            raise LeaseLostError(
                f"destination {self.destination}: the lease was lost during the cycle; the "
                "checkpoint was not moved (the next holder resends this range)"
            )


class StandaloneLease(_StoreLease):
    """The lease of one `floe-egress sync` cycle."""

    def __init__(self, destination: str, owner: str = OWNER, ttl: float = LEASE_SECONDS) -> None:
        super().__init__(destination, owner, ttl)
        self._keeper: asyncio.Task[None] | None = None

    def taken(self) -> None:
        self._keeper = asyncio.create_task(self._keep_alive())

    def check(self) -> None:
        """The keep-alive renews it; a lost lease shows at `confirm`."""

    async def _keep_alive(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(
                    self.store.acquire_lease, self.destination, self.owner, self.ttl
                )
            except Exception as exc:  # confirm() checks the lease again before the commit
                log.warning("lease_renewal_failed", error=redact(str(exc)))

    async def release(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is None or self.store is None:
            return
        keeper.cancel()
        try:
            await asyncio.to_thread(self.store.release_lease, self.destination, self.owner)
        except Exception as exc:  # it expires on its own
            log.warning("lease_release_failed", error=redact(str(exc)))


class HeldLease(_StoreLease):
    """A cycle run under a lease the daemon holds (and keeps after the cycle)."""

    def __init__(self, leases: DaemonLeases, destination: str, ttl: float) -> None:
        super().__init__(destination, leases.owner, ttl)
        self._leases = leases

    def check(self) -> None:
        if not self._leases.holds(self.destination):
            raise LeaseLostError(
                f"destination {self.destination}: this daemon no longer holds its lease; "
                "stopped before the next write"
            )

    async def release(self) -> None:
        """The daemon keeps holding it."""


class LeaseEvents(Protocol):
    """What the daemon does when its leases change."""

    def lease_held(self, name: str, held: bool) -> None:
        """`name` was taken (True) or given up or released (False)."""

    def lease_lost(self, name: str, why: str) -> None:
        """`name` was given up while held: stop acting for it (cancel its cycle)."""


class DaemonLeases:
    """The leases one daemon holds: taken and renewed in passes, fenced before expiry."""

    def __init__(self, owner: str, events: LeaseEvents, housework: Housework) -> None:
        self.owner = owner
        self.held: dict[str, float] = {}
        """Destinations whose lease this daemon holds -> loop time it is safe until."""
        self.elsewhere: set[str] = set()
        """Destinations another daemon held when this one last asked the store."""
        self._events = events
        self._housework = housework
        self._fences: dict[str, asyncio.TimerHandle] = {}
        self._errors: dict[str, str] = {}

    def holds(self, name: str) -> bool:
        return name in self.held

    def for_cycle(self, name: str, ttl: float) -> HeldLease:
        return HeldLease(self, name, ttl)

    @staticmethod
    def poll_seconds(ttl: float) -> float:
        return min(LEASE_POLL_SECONDS, ttl / 3)

    async def renew(
        self, store: StoreOf, names: Sequence[str], ttl: float, *, take_new: bool = True
    ) -> None:
        """Renew the leases held here that are due; try to take the others (`take_new`).

        `store` is called on a housework thread: opening the store may block, or fail."""
        loop = asyncio.get_running_loop()
        for name in names:
            until = self.held.get(name)
            if until is None and not take_new:
                continue
            if until is not None and until - loop.time() > ttl * 2 / 3:
                continue
            asked = loop.time()
            try:
                got = await self._housework.run(_acquire, store, name, self.owner, ttl)
            except Exception as exc:  # the fence gives the lease up if this persists
                error = redact(str(exc))
                if self._errors.get(name) != error:  # once, not every second
                    log.warning("lease_renewal_failed", destination=name, error=error)
                self._errors[name] = error
                continue
            if self._errors.pop(name, None) is not None:
                log.info("lease_renewal_recovered", destination=name)
            if got:
                self.elsewhere.discard(name)
                self._hold(name, asked + ttl, ttl)
                continue
            self.elsewhere.add(name)
            if name in self.held:
                self.give_up(name, "lease_lost", "another daemon holds it now")

    def _hold(self, name: str, until: float, ttl: float) -> None:
        first = name not in self.held
        self.held[name] = until
        self._unfence(name)
        self._fences[name] = asyncio.get_running_loop().call_at(
            until - min(FENCE_MARGIN_SECONDS, ttl / 4),
            self.give_up,
            name,
            "lease_expired",
            "not renewed in time (is the state store answering?)",
        )
        if first:
            log.info("lease_acquired", destination=name, owner=self.owner)
            self._events.lease_held(name, True)

    def give_up(self, name: str, event: str, why: str) -> None:
        """Stop acting for `name`: forget the lease, cancel its running cycle."""
        self.forget(name)
        log.warning(event, destination=name, owner=self.owner, reason=why)
        self._events.lease_lost(name, f"{event}: {why}")

    def forget(self, name: str) -> None:
        if self.held.pop(name, None) is not None:
            self._events.lease_held(name, False)
        self._unfence(name)

    def _unfence(self, name: str) -> None:
        fence = self._fences.pop(name, None)
        if fence is not None:
            fence.cancel()

    async def release(self, store: StoreOf, names: Sequence[str]) -> None:
        for name in names:
            self.forget(name)
            try:
                await asyncio.wait_for(
                    self._housework.run(_release, store, name, self.owner),
                    RELEASE_WAIT,
                )
            except Exception as exc:  # it expires on its own
                log.warning("lease_release_failed", destination=name, error=redact(str(exc)))


def _acquire(store: StoreOf, name: str, owner: str, ttl: float) -> bool:
    return store().acquire_lease(name, owner, ttl)


def _release(store: StoreOf, name: str, owner: str) -> None:
    store().release_lease(name, owner)


__all__ = [
    "LEASE_SECONDS",
    "OWNER",
    "CycleLease",
    "DaemonLeases",
    "HeldLease",
    "LeaseEvents",
    "StandaloneLease",
    "take_lease",
]
