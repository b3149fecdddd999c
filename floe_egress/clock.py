"""The clock seam: the product reads the time through a `Clock`, so tests can move it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Protocol


class Clock(Protocol):
    """Wall time for what is stored, monotonic time for deadlines."""

    def time(self) -> float:
        """Unix seconds, like `time.time()`."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back, like `time.monotonic()`."""


@dataclass(frozen=True, slots=True)
class SystemClock:
    """The host's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Final[Clock] = SystemClock()
