"""What the daemon and the CLI say about health: readiness, lag and per-destination status.

Readiness is probed in the background (the state store and the catalog answer, the
scheduler runs) and read by `/readyz` without waiting; a probe older than
`READY_STALE` seconds makes the daemon not ready. `destination_status` is the JSON of
one destination for `floe-egress status` and `/status`; the daemon adds what its runner
knows (state, backoff, the last error and its kind).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from floe_egress.config.models import Destination, FloeSpec
from floe_egress.config.secrets import redact
from floe_egress.daemon.digest import DAMAGED
from floe_egress.daemon.leases import DaemonLeases
from floe_egress.daemon.metrics import Metrics
from floe_egress.daemon.overview import history, verdict
from floe_egress.daemon.runner import Runner
from floe_egress.daemon.runtime import Runtime
from floe_egress.daemon.tasks import Housework
from floe_egress.errors import EgressError
from floe_egress.state.store import Checkpoint, StoredDigest

log = structlog.get_logger("floe_egress.daemon")

PROBE_EVERY = 2.0
PROBE_TIMEOUT = 5.0
READY_STALE = 10.0
LAG_EVERY = 5.0
MIN_FREE_BYTES = 8 * 2**20
"""Below this much free space in the work directory the daemon is not ready."""


def lag(
    table: Table, ref: str, checkpoint: Checkpoint | None, now: float
) -> tuple[float, int, int | None]:
    """The age of the oldest commit on `ref` the destination has not received, how many
    commits it has not received, and when that oldest one was committed (Unix ms);
    (0, 0, None): up to date. A checkpoint that is no longer among the ref's ancestors
    (expired, or the table was replaced) counts them all."""
    head = table.snapshot_by_name(ref)
    if head is None:
        return 0.0, 0, None
    synced = checkpoint.snapshot_id if checkpoint else None
    if head.snapshot_id == synced:
        return 0.0, 0, None
    oldest_unsynced = head
    behind = 0
    for snapshot in ancestors_of(head, table.metadata):
        if snapshot.snapshot_id == synced:
            break
        oldest_unsynced = snapshot
        behind += 1
    since = oldest_unsynced.timestamp_ms
    return max(0.0, now - since / 1000), behind, since


def destination_status(rt: Runtime, dest: Destination, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    store = rt.store
    checkpoint = store.get_checkpoint(dest.name)
    last = store.last_run(dest.name)
    status: dict[str, Any] = {
        "destination": dest.name,
        "source_table": dest.source_table,
        "ref": dest.ref,
        "sink_type": dest.sink_type,
        "mode": dest.mode,
        "filter": dest.filter,
        "enabled": dest.enabled,
        "checkpoint": None
        if checkpoint is None
        else {
            "snapshot_id": checkpoint.snapshot_id,
            "snapshot_timestamp_ms": checkpoint.snapshot_timestamp_ms,
            "updated_at": checkpoint.updated_at,
        },
        "table_snapshot": None,
        "lag_seconds": None,
        "lag_snapshots": None,
        "behind_since_ms": None,
        "last_run": None if last is None else last.to_json(),
        "failed_rows": store.failed_row_count(dest.name),
        "digest": _digest_status(store.read_digest(dest.name, data=False), checkpoint),
        "error": None,
    }
    try:
        table = rt.load_table(dest)
        head = table.snapshot_by_name(dest.ref)
        if head is not None:
            status["table_snapshot"] = {
                "snapshot_id": head.snapshot_id,
                "timestamp_ms": head.timestamp_ms,
            }
        seconds, behind, since = lag(table, dest.ref, checkpoint, now)
        status |= {"lag_seconds": seconds, "lag_snapshots": behind, "behind_since_ms": since}
    except EgressError as exc:
        status["error"] = redact(str(exc))
    return status


def _digest_status(stored: StoredDigest | None, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """What the digest of what the destination holds looks like from its meta."""
    if stored is None:
        state = "missing: the next cycle sends every row once" if checkpoint else "none yet"
        return {"state": state, "segments": 0, "reserved": 0, "entries": 0}
    held = [s for s in stored.segments if s.kind == "held"]
    if stored.fingerprint == "":
        state = "to be built from the table at the checkpoint (synced before digests)"
    elif stored.fingerprint == DAMAGED:
        state = "a damaged segment was found: rebuilt by one full send"
    elif len(held) < stored.held_segments:
        state = f"{stored.held_segments - len(held)} segments missing: rebuilt by one full send"
    else:
        state = "ok"
    return {
        "state": state,
        "segments": len(held),
        "reserved": len(stored.segments) - len(held),
        "entries": sum(s.rows for s in held),
    }


def collect_status(spec: FloeSpec, rt: Runtime | None = None) -> list[dict[str, Any]]:
    if rt is not None:
        return [destination_status(rt, d) for d in spec.ingestion.destinations]
    runtime = Runtime(spec)
    try:
        return [destination_status(runtime, d) for d in spec.ingestion.destinations]
    finally:
        asyncio.run(runtime.close())


def runner_status(runner: Runner, next_run: datetime | None, held_here: bool) -> dict[str, Any]:
    """What the daemon knows of a destination beyond the state store."""
    failure = runner.failure
    retry_in = runner.seconds_to_next_attempt()
    return {
        "state": runner.state,
        "running": runner.running,
        "held_here": held_here,
        "consecutive_failures": runner.failures,
        "error": failure.error if failure else None,
        "error_kind": failure.error_kind if failure else None,
        "retry_after_seconds": failure.retry_after if failure else None,
        "next_attempt_at": _iso(time.time() + retry_in) if retry_in else None,
        "next_run": next_run.isoformat() if next_run else None,
        "last_result": runner.last.to_json() if runner.last else None,
        "last_poll": None
        if runner.poller.last is None
        else {"at": _iso(runner.poller.last[0]), "result": runner.poller.last[1]},
    }


def _space(work_dir: Path) -> str:
    """'ok' while the work directory (dlt's files, the SQLite state) has room to write."""
    try:
        free = shutil.disk_usage(work_dir).free
    except OSError as exc:
        return f"{work_dir}: {exc.strerror or exc}"
    if free < MIN_FREE_BYTES:
        return f"{work_dir}: only {free // 1024} KiB free; cycles cannot write their files"
    return "ok"


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


class HealthHost(Protocol):
    """What health needs from the daemon."""

    owner: str
    runners: dict[str, Runner]
    scheduler: AsyncIOScheduler | None
    leases: DaemonLeases

    @property
    def runtime(self) -> Runtime: ...

    @property
    def token(self) -> str | None: ...


class Health:
    """Readiness as last probed, lag, status and metrics: what the endpoints show
    (http.DaemonView), and the nudge they pass on."""

    def __init__(self, host: HealthHost, metrics: Metrics, housework: Housework) -> None:
        self._host = host
        self._metrics = metrics
        self._housework = housework
        self._ready: tuple[float, bool, dict[str, str]] = (0.0, False, {"startup": "pending"})

    @property
    def token(self) -> str | None:
        return self._host.token

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        checked, ready, checks = self._ready
        age = asyncio.get_running_loop().time() - checked
        if checked and age > READY_STALE:
            return False, {**checks, "probe": f"no answer for {age:.0f} s"}
        return ready, checks

    async def status(self, *, details: bool = False, only: str | None = None) -> dict[str, Any]:
        """Every destination's status (or only the one named); with `details`, also its
        recent runs, first failed rows and verdict (what the status page shows)."""
        host = self._host

        def read(dest: Destination) -> dict[str, Any]:
            item = destination_status(host.runtime, dest)
            if details:
                item |= history(host.runtime, dest)
            return item

        async def one(name: str, runner: Runner) -> dict[str, Any]:
            try:
                item = await asyncio.to_thread(read, runner.dest)
            except Exception as exc:  # the store may be down: say so, keep answering
                item = {"destination": name, "error": redact(str(exc))}
            job = host.scheduler.get_job(name) if host.scheduler else None
            next_run = job.next_run_time if job else None
            item["daemon"] = runner_status(runner, next_run, host.leases.holds(name))
            if details:
                item["state"], item["reason"] = verdict(item)
            return redact(item)

        runners = {n: r for n, r in host.runners.items() if only is None or n == only}
        items = await asyncio.gather(*(one(n, r) for n, r in runners.items()))
        ready, _ = await self.readiness()
        return {"owner": host.owner, "ready": ready, "destinations": list(items)}

    def metrics_text(self) -> bytes:
        now = time.time()
        for runner in self._host.runners.values():
            self._metrics.observe_runner(runner, now)
        return self._metrics.render()

    def request_sync(self, name: str, reason: str) -> str | None:
        runner = self._host.runners.get(name)
        if runner is None:
            return None
        leases = self._host.leases
        if not leases.holds(name):
            # Until the lease pass has taken it, the cycle of taking it will run.
            return "held_elsewhere" if name in leases.elsewhere else "pending"
        return runner.request(reason)

    async def probe(self) -> None:
        runtime = self._host.runtime
        scheduler = self._host.scheduler
        checks: dict[str, str] = {}

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
            checks["work_dir"] = _space(runtime.work_dir)

        try:
            await asyncio.wait_for(self._housework.run(probe), PROBE_TIMEOUT)
        except TimeoutError:
            checks.setdefault("state_store", f"no answer within {PROBE_TIMEOUT:.0f} s")
            checks.setdefault("catalog", f"no answer within {PROBE_TIMEOUT:.0f} s")
        running = scheduler is not None and scheduler.running
        checks["scheduler"] = "ok" if running else "not running"
        ready = all(v == "ok" for v in checks.values())
        checked_before, was_ready, _ = self._ready
        self._ready = (asyncio.get_running_loop().time(), ready, checks)
        self._metrics.ready.set(1 if ready else 0)
        if ready and not was_ready:
            log.info("ready")
        elif not ready and (was_ready or not checked_before):
            log.warning("not_ready", checks={k: v for k, v in checks.items() if v != "ok"})

    async def update_lag(self) -> None:
        for name, runner in list(self._host.runners.items()):
            try:  # the runtime is read each time: a reload may replace it meanwhile
                status = await asyncio.to_thread(
                    destination_status, self._host.runtime, runner.dest
                )
            except Exception as exc:  # status errors show on /status; lag simply waits
                log.debug("lag_unavailable", destination=name, error=redact(str(exc)))
                continue
            if status.get("lag_seconds") is not None:
                self._metrics.lag.labels(name).set(status["lag_seconds"])


__all__ = [
    "LAG_EVERY",
    "PROBE_EVERY",
    "Health",
    "HealthHost",
    "collect_status",
    "destination_status",
    "runner_status",
]
