"""The fixed cost of handing one small HTTP write to its requests, per hand-off.

A 10-row, 4-column change table goes to a handler that only counts the rows (no HTTP):
what remains is the hand-off itself. Three legs, interleaved write by write:
- dlt, dlt's defaults: the DltBridge with the runtime trace and the state restore on
  (what every HTTP write paid before issue 13);
- dlt, as the platform plugin now runs it: trace and restore off (dltrun.py);
- direct: the handler awaited on the event loop (the daemon's HTTP sinks).

For the dlt legs it also reports dlt's own steps (extract, normalize, load), timed by
wrapping the pipeline's methods. Medians over `--writes` writes after `--warmup`.

Reproduce:  .venv/bin/python bench/handoff.py                (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floe_egress.sinks.http.dltrun import DltBridge  # noqa: E402
from floe_egress.sinks.http.handoff import DirectHandoff, Handoff  # noqa: E402

STEPS = ("extract", "normalize", "load")


def table(start: int) -> pa.Table:
    ids = list(range(start, start + 10))
    return pa.table(
        {
            "customer_id": ids,
            "email": [f"user{i}@example.com" for i in ids],
            "plan": ["pro"] * 10,
            "_floe_op": ["insert"] * 10,
        }
    )


def timed_steps(pipeline: Any, into: dict[str, list[float]]) -> None:
    """Wrap the pipeline's extract/normalize/load so each call's duration is noted."""
    for step in STEPS:
        original: Callable[..., Any] = getattr(pipeline, step)

        @functools.wraps(original)
        def wrapper(
            *args: Any, _f: Callable[..., Any] = original, _s: str = step, **kw: Any
        ) -> Any:
            started = time.perf_counter()
            try:
                return _f(*args, **kw)
            finally:
                into[_s].append(time.perf_counter() - started)

        setattr(pipeline, step, wrapper)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    rows_seen = 0

    async def handler(data: pa.Table) -> None:
        nonlocal rows_seen
        rows_seen += data.num_rows

    with tempfile.TemporaryDirectory(prefix="floe-handoff-") as tmp:
        defaults = DltBridge("defaults", Path(tmp) / "defaults")
        defaults.pipeline.config.enable_runtime_trace = True
        defaults.pipeline.config.restore_from_destination = True
        configured = DltBridge("configured", Path(tmp) / "configured")
        legs: dict[str, Handoff] = {
            "dlt, dlt's defaults (trace, state restore)": defaults,
            "dlt, as configured (trace, restore off)": configured,
            "direct": DirectHandoff(),
        }
        steps: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in legs}
        timed_steps(defaults.pipeline, steps[next(iter(legs))])
        timed_steps(configured.pipeline, steps[list(legs)[1]])
        times: dict[str, list[float]] = defaultdict(list)
        load_before = os.getloadavg()[0]
        for index in range(args.warmup + args.writes):
            for name, handoff in legs.items():
                if index == args.warmup:
                    for values in steps[name].values():
                        values.clear()
                started = time.perf_counter()
                await handoff.run(table(index * 10), handler)
                if index >= args.warmup:
                    times[name].append(time.perf_counter() - started)
        for handoff in legs.values():
            await handoff.close()
    expected = (args.warmup + args.writes) * 10 * len(legs)
    if rows_seen != expected:
        raise RuntimeError(f"the handlers saw {rows_seen} rows, not {expected}")
    print(
        f"{args.writes} writes of 10 rows per leg; load average {load_before:.2f} -> "
        f"{os.getloadavg()[0]:.2f}"
    )
    for name, values in times.items():
        parts = ", ".join(
            f"{step} {statistics.median(steps[name][step]) * 1000:.1f}"
            for step in STEPS
            if steps[name][step]
        )
        print(
            f"  {name:45} p50 {statistics.median(values) * 1000:7.2f} ms"
            f"{f'  (dlt steps p50, ms: {parts})' if parts else ''}"
        )


if __name__ == "__main__":
    asyncio.run(main())
