"""A search's time budget (``budget.time_s``, ``--time-budget``), counted across ``--resume``.

Like Tune's TimeoutStopper, it counts the time that passes while the search runs: pickled with
the searcher's state and restored, it goes on from what was spent, not from zero and not from
the wall clock (the time between an interrupt and its --resume is not the search's). After a
kill (not a Ctrl-C), the time since Tune's last snapshot of the searcher is not counted.
"""

from __future__ import annotations

import math
import time
from typing import Any


class Clock:
    def __init__(self, limit_s: float | None = None):
        self.limit_s = limit_s
        self.spent_s = 0.0
        self._last: float | None = None

    def tick(self) -> float:
        """Seconds spent so far."""
        now = time.monotonic()
        if self._last is not None:
            self.spent_s += now - self._last
        self._last = now
        return self.spent_s

    def left(self) -> float:
        return math.inf if self.limit_s is None else self.limit_s - self.tick()

    def over(self) -> bool:
        return self.left() <= 0

    def carry_on(self, saved: Clock) -> None:
        """Go on from ``saved``'s spent time (a --resume), keeping this clock's limit (the one
        this invocation set) and its identity (the scheduler holds it too)."""
        self.spent_s = saved.spent_s
        self._last = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        self.tick()
        return {**self.__dict__, "_last": None}  # a restored clock starts counting when used
