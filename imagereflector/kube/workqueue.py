"""An asyncio workqueue with client-go's ``util/workqueue`` semantics.

The queue supports the following features (client-go ``doc.go``, kept word for word):

* Fair: items processed in the order in which they are added.
* Stingy: a single item will not be processed multiple times concurrently,
  and if an item is added multiple times before it can be processed, it
  will only be processed once.
* Multiple consumers and producers. In particular, it is allowed for an
  item to be reenqueued while it is being processed.
* Shutdown notifications.

Three layers, one concern each, as in client-go:

* :class:`Queue` -- FIFO of distinct items with the *dirty* set (items that need processing)
  and the *processing* set (items a worker holds). An item added while it is processed is
  only marked dirty; :meth:`Queue.done` puts it back in the queue, so no two workers ever
  hold the same item.
* :class:`DelayingQueue` -- :meth:`DelayingQueue.add_after`: an item becomes ready after a
  delay; of several pending delays for one item the earliest wins.
* :class:`RateLimitingQueue` -- :meth:`RateLimitingQueue.add_rate_limited` asks a
  :class:`~imagereflector.kube.ratelimit.RateLimiter` for the delay.

Everything runs on one event loop and nothing here is thread-safe. Time comes from one
injectable :class:`Clock` (the running loop's ``time()``/``call_at`` by default), so tests
move time with a fake clock instead of sleeping. Metrics are reported through the
:class:`QueueMetrics` hooks; the Prometheus binding (client-go's ``workqueue_*`` names)
lives elsewhere and only receives the values computed here.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from imagereflector.kube.ratelimit import RateLimiter

__all__ = [
    "LOOP_CLOCK",
    "NO_METRICS",
    "SHUT_DOWN",
    "Clock",
    "DelayingQueue",
    "LoopClock",
    "NoMetrics",
    "Queue",
    "QueueMetrics",
    "RateLimitingQueue",
    "ShutDown",
    "TimerHandle",
    "UnfinishedWork",
]

T = TypeVar("T", bound=Hashable)


class ShutDown(enum.Enum):
    """The value :meth:`Queue.get` returns once the queue is shut down and drained."""

    SIGNAL = "shutdown"


SHUT_DOWN: Final = ShutDown.SIGNAL
"""Returned by :meth:`Queue.get` when the worker should stop (``shutdown == true`` in Go)."""


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled (``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None:
        """Do not run the callback."""
        ...


class Clock(Protocol):
    """The time source of a queue: a monotonic ``now`` in seconds and timers on it."""

    def now(self) -> float:
        """Current time in seconds on this clock."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once ``now() >= when``."""
        ...


class LoopClock:
    """The running event loop's clock: ``loop.time()`` and ``loop.call_at``.

    The loop is looked up on each call, so a queue can be built before the loop runs.
    """

    __slots__ = ()

    def now(self) -> float:
        """The running loop's ``time()``."""
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Schedule ``callback`` on the running loop at loop time ``when``."""
        return asyncio.get_running_loop().call_at(when, callback)


@dataclass(frozen=True, slots=True)
class UnfinishedWork:
    """Work in progress at one instant: what ``workqueue_unfinished_work_seconds`` and
    ``workqueue_longest_running_processor_seconds`` report."""

    total_seconds: float
    """Sum over items being processed of the time since their ``get``."""
    longest_seconds: float
    """The longest time any item currently being processed has been held."""


class QueueMetrics(Protocol):
    """Hooks a queue calls so a metrics backend can export client-go's workqueue metrics.

    ``depth`` is the number of items waiting to be handed out (``workqueue_depth``);
    latencies are seconds on the queue's clock.
    """

    def add(self, *, depth: int) -> None:
        """An item was marked as needing processing (``workqueue_adds_total``)."""
        ...

    def get(self, *, depth: int, queue_latency: float) -> None:
        """An item was handed to a worker after waiting ``queue_latency`` seconds
        (``workqueue_queue_duration_seconds``)."""
        ...

    def done(self, *, work_duration: float) -> None:
        """A worker finished an item it held for ``work_duration`` seconds
        (``workqueue_work_duration_seconds``)."""
        ...

    def retry(self) -> None:
        """An item was scheduled with :meth:`DelayingQueue.add_after`
        (``workqueue_retries_total``)."""
        ...

    def track_unfinished(self, probe: Callable[[], UnfinishedWork]) -> None:
        """Called once by the queue: ``probe()`` returns the current unfinished work, to be
        read whenever the metrics are collected."""
        ...


class NoMetrics:
    """The default :class:`QueueMetrics`: records nothing."""

    __slots__ = ()

    def add(self, *, depth: int) -> None:
        """Ignore."""

    def get(self, *, depth: int, queue_latency: float) -> None:
        """Ignore."""

    def done(self, *, work_duration: float) -> None:
        """Ignore."""

    def retry(self) -> None:
        """Ignore."""

    def track_unfinished(self, probe: Callable[[], UnfinishedWork]) -> None:
        """Ignore."""


LOOP_CLOCK: Final = LoopClock()
"""The default clock of every queue."""
NO_METRICS: Final = NoMetrics()
"""The default metrics hooks of every queue."""


class Queue(Generic[T]):
    """A fair, stingy FIFO work queue (client-go ``workqueue.Type``).

    Invariants: every item in the FIFO is in the dirty set and not in the processing set;
    an item is in the FIFO at most once; an item is held by at most one worker. Each item
    returned by :meth:`get` must be passed to :meth:`done` exactly once.
    """

    def __init__(self, *, clock: Clock = LOOP_CLOCK, metrics: QueueMetrics = NO_METRICS) -> None:
        self._clock = clock
        self._metrics = metrics
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._drain = False
        # Futures of blocked get() calls, and of shut_down_with_drain() calls waiting for
        # the processing set to empty; plain futures keep add()/done() synchronous.
        self._getters: deque[asyncio.Future[None]] = deque()
        self._drainers: list[asyncio.Future[None]] = []
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        self._metrics.track_unfinished(self.unfinished_work)

    def add(self, item: T) -> None:
        """Mark ``item`` as needing processing.

        Ignored while shutting down or if the item is already waiting. If a worker holds the
        item it is only marked dirty, and :meth:`done` requeues it.
        """
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        self._added_at.setdefault(item, self._clock.now())
        self._metrics.add(depth=len(self._dirty))
        if item in self._processing:
            return
        self._queue.append(item)
        self._wake_getter()

    def __len__(self) -> int:
        """The number of items ready to be handed out (informational only)."""
        return len(self._queue)

    async def get(self) -> T | ShutDown:
        """Wait for an item to process, or return :data:`SHUT_DOWN` once shut down and empty.

        The caller must call :meth:`done` with the returned item when it has finished.
        """
        while not self._queue and not self._shutting_down:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # A cancelled getter that had already been woken must pass the wake-up on,
                # or an item could sit in the queue while another getter sleeps.
                if waiter in self._getters:
                    self._getters.remove(waiter)
                elif self._queue:
                    self._wake_getter()
                raise
        if not self._queue:
            return SHUT_DOWN
        item = self._queue.popleft()
        now = self._clock.now()
        self._processing.add(item)
        self._dirty.discard(item)
        self._started_at[item] = now
        added = self._added_at.pop(item, now)
        self._metrics.get(depth=len(self._dirty), queue_latency=now - added)
        return item

    def done(self, item: T) -> None:
        """Mark ``item`` as processed; if it was added again meanwhile, queue it again.

        An item no worker holds is ignored, so a second ``done`` cannot duplicate it.
        """
        if item not in self._processing:
            return
        started = self._started_at.pop(item, None)
        if started is not None:
            self._metrics.done(work_duration=self._clock.now() - started)
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_getter()
        elif not self._processing:
            self._wake_drainers()

    def shut_down(self) -> None:
        """Ignore new items; :meth:`get` returns :data:`SHUT_DOWN` once the queue is empty.

        Also releases a pending :meth:`shut_down_with_drain` without waiting for workers.
        """
        self._drain = False
        self._shutdown()
        self._wake_drainers()

    async def shut_down_with_drain(self) -> None:
        """Ignore new items and wait until every item handed out has been :meth:`done`.

        Workers must keep calling :meth:`done`, or this waits forever; calling
        :meth:`shut_down` meanwhile ends the wait at once.
        """
        self._drain = True
        self._shutdown()
        while self._processing and self._drain:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drainers.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drainers:
                    self._drainers.remove(waiter)

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shut_down` or :meth:`shut_down_with_drain` has been called."""
        return self._shutting_down

    def unfinished_work(self) -> UnfinishedWork:
        """The time items currently being processed have been held, in total and at most."""
        now = self._clock.now()
        held = [now - started for started in self._started_at.values()]
        return UnfinishedWork(total_seconds=sum(held), longest_seconds=max(held, default=0.0))

    def _shutdown(self) -> None:
        self._shutting_down = True
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _wake_drainers(self) -> None:
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_result(None)
        self._drainers.clear()


class DelayingQueue(Queue[T]):
    """A :class:`Queue` that can add an item after a delay (client-go ``DelayingInterface``).

    Pending delays live in a heap ordered by ready time (ties in call order) with one timer
    armed for the earliest. An item has at most one pending delay: a new ``add_after`` can
    only move it earlier. Pending delays are dropped on shutdown.
    """

    def __init__(self, *, clock: Clock = LOOP_CLOCK, metrics: QueueMetrics = NO_METRICS) -> None:
        super().__init__(clock=clock, metrics=metrics)
        self._waiting: list[tuple[float, int, T]] = []
        self._ready_at: dict[T, float] = {}
        self._sequence = itertools.count()
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed; ``delay <= 0`` adds it now.

        If the item already waits for an earlier time, this call changes nothing.
        """
        if self.shutting_down:
            return
        self._metrics.retry()
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.now() + delay
        current = self._ready_at.get(item)
        if current is not None and current <= ready_at:
            return
        # The superseded heap entry stays behind and is skipped when popped: its time no
        # longer matches _ready_at.
        self._ready_at[item] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._sequence), item))
        self._arm_timer()

    def waiting(self) -> int:
        """The number of items waiting for their delay to pass."""
        return len(self._ready_at)

    def shut_down(self) -> None:
        """Shut down (see :meth:`Queue.shut_down`) and drop all pending delays."""
        self._drop_waiting()
        super().shut_down()

    async def shut_down_with_drain(self) -> None:
        """Drop pending delays, then shut down with drain (see :meth:`Queue`)."""
        self._drop_waiting()
        await super().shut_down_with_drain()

    def _drop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None
        self._waiting.clear()
        self._ready_at.clear()

    def _arm_timer(self) -> None:
        if not self._waiting:
            return
        earliest = self._waiting[0][0]
        if self._timer is not None and self._timer_at is not None and self._timer_at <= earliest:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = earliest
        self._timer = self._clock.call_at(earliest, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.shutting_down:
            return
        now = self._clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, item = heapq.heappop(self._waiting)
            if self._ready_at.get(item) != ready_at:
                continue
            del self._ready_at[item]
            self.add(item)
        self._discard_stale_head()
        self._arm_timer()

    def _discard_stale_head(self) -> None:
        while self._waiting:
            ready_at, _, item = self._waiting[0]
            if self._ready_at.get(item) == ready_at:
                return
            heapq.heappop(self._waiting)


class RateLimitingQueue(DelayingQueue[T]):
    """A :class:`DelayingQueue` whose retries are spaced by a rate limiter
    (client-go ``RateLimitingInterface``)."""

    def __init__(
        self,
        *,
        rate_limiter: RateLimiter,
        clock: Clock = LOOP_CLOCK,
        metrics: QueueMetrics = NO_METRICS,
    ) -> None:
        super().__init__(clock=clock, metrics=metrics)
        self._rate_limiter = rate_limiter

    def add_rate_limited(self, item: T) -> None:
        """Add ``item`` after the delay the rate limiter gives for it (one more failure)."""
        self.add_after(item, self._rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """The item succeeded: reset its failure count in the rate limiter.

        This does not remove the item from the queue or its pending delays.
        """
        self._rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        """How many rate-limited requeues ``item`` has had since it was last forgotten."""
        return self._rate_limiter.num_requeues(item)
