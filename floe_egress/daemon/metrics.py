"""Prometheus metrics of the daemon (one registry per daemon, text format on /metrics).

Families (counters carry the `_total` suffix on the wire):
floe_egress_cycles{destination,result},
floe_egress_polls{destination,result} (result: unchanged (no cycle ran), moved, pending,
unknown; see polls.py), floe_egress_rows{destination,op},
floe_egress_failed_rows{destination}, floe_egress_invalid_rows{destination},
floe_egress_cycle_duration_seconds{destination} (histogram),
floe_egress_lag_seconds{destination}, floe_egress_rate_limit_wait_seconds{destination},
floe_egress_destination_http_responses{destination,status},
floe_egress_lease_held{destination}, floe_egress_ready,
floe_egress_cycle_errors{destination,kind} (kind: transient or permanent),
floe_egress_destination_state{destination,state} (1 for the current state),
floe_egress_destination_retry_at_timestamp_seconds{destination}.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runner import STATES, Runner

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# One `*_created` series per counter doubles the output and no dashboard reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._seen: set[str] = set()
        """Destinations with per-destination gauges."""
        r = self.registry
        self.cycles = Counter(
            "floe_egress_cycles", "Sync cycles by result.", ["destination", "result"], registry=r
        )
        self.polls = Counter(
            "floe_egress_polls",
            "Scheduled polls by result: unchanged (neither the table nor the state moved: "
            "no cycle ran), moved (the table moved), pending (something in the state "
            "store waits), unknown (the table or the state could not be read).",
            ["destination", "result"],
            registry=r,
        )
        self.rows = Counter(
            "floe_egress_rows", "Rows delivered, by op.", ["destination", "op"], registry=r
        )
        self.failed_rows = Counter(
            "floe_egress_failed_rows",
            "Rows the destination refused.",
            ["destination"],
            registry=r,
        )
        self.invalid_rows = Counter(
            "floe_egress_invalid_rows",
            "Rows never sent: null or duplicated key.",
            ["destination"],
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "floe_egress_cycle_duration_seconds",
            "Duration of sync cycles.",
            ["destination"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=r,
        )
        self.lag = Gauge(
            "floe_egress_lag_seconds",
            "Age of the oldest table commit the destination has not received (0: up to date).",
            ["destination"],
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "floe_egress_rate_limit_wait_seconds",
            "Seconds spent waiting on rate limits.",
            ["destination"],
            registry=r,
        )
        self.http_responses = Counter(
            "floe_egress_destination_http_responses",
            "HTTP status codes returned by destinations.",
            ["destination", "status"],
            registry=r,
        )
        self.lease_held = Gauge(
            "floe_egress_lease_held",
            "1 while this daemon holds the destination's lease (runs its cycles).",
            ["destination"],
            registry=r,
        )
        self.ready = Gauge("floe_egress_ready", "1 when /readyz answers 200.", registry=r)
        self.digest_rebuilds = Counter(
            "floe_egress_digest_rebuilds",
            "Cycles that sent every row once because the digest of what the destination "
            "holds was lost, damaged or made for another mapping or sink type.",
            ["destination"],
            registry=r,
        )
        self.cycle_errors = Counter(
            "floe_egress_cycle_errors",
            "Failed cycles by error kind: transient (retried with backoff) or permanent "
            "(the destination is failing: retried slowly, or at once on a nudge or reload).",
            ["destination", "kind"],
            registry=r,
        )
        self.state = Gauge(
            "floe_egress_destination_state",
            "1 for the destination's current state: pending, healthy, backing_off, failing.",
            ["destination", "state"],
            registry=r,
        )
        self.retry_at = Gauge(
            "floe_egress_destination_retry_at_timestamp_seconds",
            "Unix time before which the schedule does not retry the destination (0: none).",
            ["destination"],
            registry=r,
        )

    def observe(self, result: CycleResult) -> None:
        name = result.destination
        self.cycles.labels(name, result.status).inc()
        for op, n in (
            ("insert", result.inserted),
            ("update", result.updated),
            ("delete", result.deleted),
        ):
            self.rows.labels(name, op).inc(n)
        self.failed_rows.labels(name).inc(result.failed)
        self.invalid_rows.labels(name).inc(result.invalid)
        if result.status != "skipped":
            self.cycle_seconds.labels(name).observe(result.duration_seconds)
        self.rate_limit_wait.labels(name).inc(result.rate_limit_wait_seconds)
        for status, n in result.http_statuses.items():
            self.http_responses.labels(name, str(status)).inc(n)
        if result.digest_rebuilt is not None and result.status != "failed":
            self.digest_rebuilds.labels(name).inc()
        if result.status == "failed" and result.error_kind is not None:
            self.cycle_errors.labels(name, result.error_kind).inc()

    def retain(self, names: Collection[str]) -> None:
        """Drop the gauges of destinations not in `names` (a reload removed them; their
        counters stay)."""
        for name in self._seen - set(names):
            self._forget(name)
        self._seen &= set(names)

    def _forget(self, name: str) -> None:
        for state in STATES:
            _remove(self.state, name, state)
        for gauge in (self.retry_at, self.lag, self.lease_held):
            _remove(gauge, name)

    def observe_runner(self, runner: Runner, now: float) -> None:
        """The destination's state and backoff, as its runner sees them."""
        name = runner.dest.name
        self._seen.add(name)
        for state in STATES:
            self.state.labels(name, state).set(1 if state == runner.state else 0)
        retry_in = runner.seconds_to_next_attempt()
        self.retry_at.labels(name).set(now + retry_in if retry_in else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        gauge.remove(*labels)
