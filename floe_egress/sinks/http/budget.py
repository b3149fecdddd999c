"""What one template render may spend (sandbox.py enforces it, templates.py sets it):
`MAX_SECONDS`, `MAX_STEPS`, `MAX_DEPTH` nested calls, a size for any one value and
`PRODUCED` times that for all the text it writes."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_SECONDS = 1.0
MAX_STEPS = 100_000
MAX_DEPTH = 24
"""Nested calls (macros, recursive loops) in one render: stopped well before Python's
own recursion limit."""
PRODUCED = 4
_OUTSIDE_CHARS = 1 << 20


class OverBudget(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"stopped: it ran over its render budget: {reason}")


@dataclass(slots=True)
class Budget:
    """What one render may still spend."""

    deadline: float
    steps: int
    max_chars: int
    produced: int = 0
    depth: int = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise OverBudget(f"it took longer than {MAX_SECONDS:g} s")

    def step(self, count: int = 1) -> None:
        self.steps -= count
        if self.steps < 0:
            raise OverBudget(f"it took more than {MAX_STEPS:,} loop steps")
        if self.steps % 256 == 0:
            self.tick()

    def size(self, chars: int) -> None:
        if chars > self.max_chars:
            raise OverBudget(
                f"a text of {chars:,} characters, over the limit of {self.max_chars:,}"
            )

    def produce(self, chars: int) -> None:
        """A text written: sized, and counted with all the others (at each level)."""
        self.size(chars)
        self.produced += chars
        if self.produced > PRODUCED * self.max_chars:
            raise OverBudget(f"it wrote more than {PRODUCED * self.max_chars:,} characters in all")


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def current_budget() -> Budget:
    """The render's; outside one (constant folding at compile time) a fresh small one."""
    budget = _BUDGET.get()
    return budget or Budget(time.monotonic() + MAX_SECONDS, MAX_STEPS, _OUTSIDE_CHARS)


@contextmanager
def budget_scope(budget: Budget) -> Iterator[Budget]:
    """Renders inside spend `budget`."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


__all__ = [
    "MAX_DEPTH",
    "MAX_SECONDS",
    "MAX_STEPS",
    "PRODUCED",
    "Budget",
    "OverBudget",
    "budget_scope",
    "current_budget",
]
