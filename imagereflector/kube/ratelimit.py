"""Rate limiters that decide how long a workqueue item waits before it is retried.

These are the limiters of client-go's ``util/workqueue`` (``default_rate_limiters.go``),
kept apart from the queue so each has one concern:

* :class:`ItemExponentialFailureRateLimiter` -- per-item exponential backoff; the only
  limiter Flux's controllers use (``--min-retry-delay`` 750 ms .. ``--max-retry-delay``
  15 min, no global bucket).
* :class:`TokenBucketRateLimiter` -- an overall QPS/burst limit shared by all items
  (``golang.org/x/time/rate`` reservation semantics).
* :class:`MaxOfRateLimiter` -- the worst (longest) answer of several limiters.

Invariants: ``when(item)`` counts as one failure of ``item`` and returns a delay in seconds
(never negative); ``forget(item)`` makes the item's next ``when`` start from the base again;
``num_requeues(item)`` is the number of ``when`` calls since the last ``forget``. Limiters are
used from one event loop and are not thread-safe.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import Final, Protocol

__all__ = [
    "DEFAULT_MAX_RETRY_DELAY",
    "DEFAULT_MIN_RETRY_DELAY",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "TokenBucketRateLimiter",
    "loop_time",
]

DEFAULT_MIN_RETRY_DELAY: Final = 0.75
"""Seconds; the default of ``--min-retry-delay`` (Flux: 750ms)."""
DEFAULT_MAX_RETRY_DELAY: Final = 900.0
"""Seconds; the default of ``--max-retry-delay`` (Flux: 15m)."""


def loop_time() -> float:
    """The running event loop's clock: the one clock every timing decision reads."""
    return asyncio.get_running_loop().time()


class RateLimiter(Protocol):
    """How long an item waits before it is requeued, and its failure bookkeeping."""

    def when(self, item: Hashable) -> float:
        """Record one more failure of ``item``; return the seconds it should wait."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item`` (it succeeded): its next delay starts from scratch."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many times ``item`` has been requeued since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter:
    """Per-item exponential backoff: ``base * 2**failures``, capped at ``cap``.

    The first ``when`` of an item returns ``base``, the next ``2*base`` and so on; the
    sequence for the defaults is 0.75, 1.5, 3, 6, ... 768, 900, 900, ...
    """

    __slots__ = ("_base", "_cap", "_failures")

    def __init__(
        self, base: float = DEFAULT_MIN_RETRY_DELAY, cap: float = DEFAULT_MAX_RETRY_DELAY
    ) -> None:
        if base < 0 or cap < 0 or math.isnan(base) or math.isnan(cap):
            raise ValueError(f"retry delays must be non-negative numbers, got {base}..{cap}")
        self._base = base
        self._cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        """Count a failure of ``item`` and return ``min(cap, base * 2**previous_failures)``."""
        exponent = self._failures.get(item, 0)
        self._failures[item] = exponent + 1
        try:
            backoff = math.ldexp(self._base, exponent)
        except OverflowError:
            # Go returns maxDelay once the float no longer fits; an unbounded failure count
            # must not turn into an exception in the retry path.
            return self._cap
        return min(backoff, self._cap)

    def forget(self, item: Hashable) -> None:
        """Reset the failure count of ``item``."""
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        """Failures of ``item`` counted since it was last forgotten."""
        return self._failures.get(item, 0)


class TokenBucketRateLimiter:
    """An overall limit of ``qps`` items per second with bursts of up to ``burst``.

    Each ``when`` reserves one token; when the bucket is empty the reservation is taken on
    credit and the returned delay is the time until that token will have been refilled,
    so a burst of ``burst + k`` calls spaces the last ``k`` by ``1/qps`` each. Items are
    not tracked, so ``forget`` does nothing and ``num_requeues`` is always 0.
    """

    __slots__ = ("_burst", "_clock", "_last", "_qps", "_tokens")

    def __init__(self, *, qps: float, burst: int, clock: Callable[[], float] = loop_time) -> None:
        if not qps > 0:
            raise ValueError(f"qps must be positive, got {qps}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._qps = qps
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last: float | None = None

    def when(self, item: Hashable) -> float:
        """Reserve a token and return how long the caller must wait for it."""
        now = self._clock()
        if self._last is not None and now > self._last:
            refill = (now - self._last) * self._qps
            self._tokens = min(float(self._burst), self._tokens + refill)
        self._last = now if self._last is None else max(now, self._last)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._qps

    def forget(self, item: Hashable) -> None:
        """Nothing to forget: the bucket is shared by all items."""

    def num_requeues(self, item: Hashable) -> int:
        """Always 0: the bucket does not track items."""
        return 0


class MaxOfRateLimiter:
    """Combine limiters: the longest delay wins; forget and requeue counts reach all."""

    __slots__ = ("_limiters",)

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        """Ask every limiter (each records the failure) and return the longest delay."""
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: Hashable) -> None:
        """Forget ``item`` in every limiter."""
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        """The highest requeue count any limiter reports for ``item``."""
        return max(limiter.num_requeues(item) for limiter in self._limiters)
