"""What the command line prints: cycle results, failed rows, verify reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_results(results: Sequence[Any], *, as_json: bool, verb: str) -> None:
    from floe_egress.daemon.result import filter_line, invalid_lines

    if as_json:
        print_json([r.to_json() for r in results])
        return
    for r in results:
        head = f"{r.destination}: {r.status}"
        if r.plan:
            head += f" (plan {r.plan}, snapshot {r.from_snapshot} -> {r.to_snapshot})"
        print(head)
        if r.status in ("ok", "noop"):
            print(
                f"  {verb}: {r.inserted} inserted, {r.updated} updated, {r.deleted} deleted; "
                f"{r.failed} failed, {r.invalid} invalid, {r.retried} retried"
            )
        for line in invalid_lines(r.invalid, r.invalid_sample):
            print(f"  {line}")
        if r.filter_effects is not None:
            print(f"  filter: {filter_line(r.filter_effects)}")
        if r.reason:
            print(f"  why: {r.reason}")
        if r.error:
            print(f"  error: {r.error}")
        for op, rows in r.sample.items():
            print(f"  sample {op}:")
            for row in rows:
                print(f"    {json.dumps(row, default=str)}")


def print_verify(report: Any, *, as_json: bool) -> None:
    """A `floe_egress.daemon.verify_report.VerifyReport`."""
    if as_json:
        print_json(report.to_json())
        return
    for line in report.lines():
        print(line)


__all__ = ["print_json", "print_results", "print_verify"]
