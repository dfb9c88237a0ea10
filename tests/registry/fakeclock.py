"""A controllable ``Clock`` for registry tests: time moves only when the test says so.

Two modes. ``auto_advance`` makes every ``sleep`` move time forward at once and return
(the client's retries and pauses run instantly and the requested waits are recorded in
``sleeps``). Without it, sleepers park until ``advance`` moves time past their wake-up
time, so tests can observe who is still waiting at a given instant.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

WALL_EPOCH = 1_700_000_000.0
"""Wall-clock seconds at monotonic time 0, so HTTP dates can be computed by tests."""


class FakeClock:
    """Monotonic and wall time under test control, with recorded sleeps."""

    def __init__(self, *, start: float = 1000.0, auto_advance: bool = False) -> None:
        self.now = start
        self.auto_advance = auto_advance
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._parked = asyncio.Event()

    def monotonic(self) -> float:
        """The current fake monotonic time."""
        return self.now

    def wall(self) -> float:
        """Wall time that moves with the monotonic time."""
        return WALL_EPOCH + self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait; return at once (auto mode) or when ``advance`` reaches it."""
        self.sleeps.append(seconds)
        if self.auto_advance:
            self.now += max(0.0, seconds)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.now + max(0.0, seconds), next(self._order), future))
        self._parked.set()
        await future

    async def until_sleeping(self, count: int) -> None:
        """Return once at least ``count`` sleepers are parked (they may do real I/O first)."""
        while self.sleeping < count:
            self._parked.clear()
            await self._parked.wait()

    @property
    def sleeping(self) -> int:
        """How many sleepers are parked."""
        return sum(1 for _, _, future in self._waiters if not future.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose time has come."""
        self.now += seconds
        while self._waiters and self._waiters[0][0] <= self.now:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)


async def settle(rounds: int = 20) -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
