"""A manual clock for the workqueue tests: time moves only when a test calls ``advance``.

It satisfies :class:`imagereflector.kube.workqueue.Clock`; timers fire synchronously inside
``advance`` in time order, which is what lets delay tests run without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeTimer:
    """A timer of :class:`FakeClock`; cancelling it keeps it from firing."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        """Do not fire."""
        self.cancelled = True


class FakeClock:
    """A clock starting at ``start`` whose timers fire only during :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._sequence = itertools.count()

    def now(self) -> float:
        """The current fake time."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        """Register ``callback`` to fire when time reaches ``when``."""
        timer = FakeTimer()
        heapq.heappush(self._timers, (when, next(self._sequence), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every due timer at its own time, in order."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            callback()
        self._now = target

    def pending(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for _, _, timer, _ in self._timers if not timer.cancelled)
