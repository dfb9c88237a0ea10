"""Registry politeness: one token bucket per host, host-wide pauses, retry timing.

A single ``HostLimiter`` is shared by every caller in the process, so all objects that
scan the same registry host draw from one bucket (``--registry-qps``/``--registry-burst``)
and a ``429``/``503`` with ``Retry-After`` seen by one caller holds back all of them
until the registry said it is ready again.

Invariants:

* Waiting is by reservation: a caller takes its token before it sleeps, so callers are
  served in arrival order and a burst never overdraws the bucket.
* No wait ever runs past the caller's deadline; a wait that would is refused at once with
  ``RegistryTimeoutError`` instead of sleeping into a timeout.
* Time comes only from the injected ``Clock`` (monotonic time, wall time for HTTP dates,
  and sleep), so tests move time without sleeping.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Protocol

from imagereflector.registry.errors import RegistryTimeoutError

_MAX_IDLE_HOSTS: Final = 1024


class Clock(Protocol):
    """The time source of the registry client."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (deadlines, buckets)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for ``Retry-After`` given as an HTTP date."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


class SystemClock:
    """The real clock: the event loop's monotonic time, ``time.time`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """The running loop's clock, the one asyncio timeouts use."""
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(0.0, seconds))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    paused_until: float = 0.0


class HostLimiter:
    """Token buckets keyed by registry host, plus host-wide pauses.

    ``qps`` 0 means unlimited (only pauses apply); ``burst`` is the bucket size and is at
    least 1 when ``qps`` is positive.
    """

    def __init__(self, *, qps: float, burst: int, clock: Clock) -> None:
        if qps < 0 or burst < 0:
            raise ValueError("registry qps and burst must not be negative")
        self._qps = qps
        self._burst = float(max(1, burst))
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, host: str, now: float) -> _Bucket:
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = _Bucket(tokens=self._burst, updated=now)
            self._buckets[host] = bucket
            self._forget_idle(now)
        else:
            self._buckets.move_to_end(host)
        return bucket

    def _forget_idle(self, now: float) -> None:
        # A full, unpaused bucket carries no state worth keeping; drop the oldest such
        # entries so a stream of distinct hosts cannot grow the map without bound.
        excess = len(self._buckets) - _MAX_IDLE_HOSTS
        for host in list(self._buckets):
            if excess <= 0:
                break
            bucket = self._buckets[host]
            self._refill(bucket, now)
            if bucket.tokens >= self._burst and bucket.paused_until <= now:
                del self._buckets[host]
                excess -= 1

    def _refill(self, bucket: _Bucket, now: float) -> None:
        if self._qps > 0 and now > bucket.updated:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._qps)
        bucket.updated = max(bucket.updated, now)

    async def acquire(self, host: str, *, deadline: float) -> None:
        """Wait for the host's pause to end and for one token of its bucket.

        Raises ``RegistryTimeoutError`` without waiting when the wait would end after
        ``deadline`` (a monotonic time on this limiter's clock).
        """
        reserved = self._qps <= 0
        while True:
            now = self.clock.monotonic()
            bucket = self._bucket(host, now)
            wait = max(0.0, bucket.paused_until - now)
            if not reserved and wait == 0.0:
                self._refill(bucket, now)
                bucket.tokens -= 1.0
                reserved = True
                wait = max(0.0, -bucket.tokens / self._qps)
            if wait == 0.0 and reserved:
                return
            if now + wait > deadline:
                if reserved and self._qps > 0 and bucket.tokens < self._burst:
                    bucket.tokens += 1.0  # hand the unused token back
                raise RegistryTimeoutError(
                    f"rate limit for {host}: waiting {wait:.1f}s would pass the deadline"
                )
            await self.clock.sleep(wait)
            # Loop: a pause may have been set while we slept.
            if reserved and self.clock.monotonic() >= self.paused_until(host):
                return

    def pause(self, host: str, *, until: float) -> None:
        """Hold back every caller of ``host`` until ``until`` (monotonic); never shortens."""
        now = self.clock.monotonic()
        bucket = self._bucket(host, now)
        bucket.paused_until = max(bucket.paused_until, until)

    @property
    def tracked_hosts(self) -> int:
        """How many hosts currently have state (bounded: idle hosts are forgotten)."""
        return len(self._buckets)

    def paused_until(self, host: str) -> float:
        """The monotonic time the host's pause ends (in the past when there is none)."""
        bucket = self._buckets.get(host)
        return bucket.paused_until if bucket is not None else 0.0


def backoff_delay(attempt: int, *, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (0-based): 100 ms * 3^attempt, +-10 % jitter."""
    jitter: float = rng.uniform(0.9, 1.1)
    return 0.1 * float(3**attempt) * jitter


# A Retry-After beyond a day is not a pause anyone waits for; past this many digits the
# value is garbage, and int() of thousands of digits is refused by Python itself.
_MAX_DIGITS: Final = 12
_ASCII_DIGITS: Final = frozenset("0123456789")


def _ascii_number(text: str) -> int | None:
    """``text`` as a non-negative integer when it is 1..12 ASCII digits, else ``None``.

    ``str.isdigit`` also accepts digits of other scripts (``"٣"``) and superscripts that
    ``int`` then rejects; HTTP's grammar is ASCII only.
    """
    if not text or len(text) > _MAX_DIGITS or not set(text) <= _ASCII_DIGITS:
        return None
    return int(text)


def parse_retry_after(value: str, *, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date).

    ``None`` when the value is unusable (the caller then ignores it); a date in the past
    gives 0. Never raises, whatever the registry sent.
    """
    text = value.strip()
    if not text or len(text) > 64:
        return None
    number = _ascii_number(text)
    if number is not None:
        return float(number)
    if text[0] in "0123456789." and set(text) <= _ASCII_DIGITS | {"."}:
        # Not RFC 9110, but some registries send fractional seconds.
        try:
            seconds = float(text)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


def parse_ratelimit_remaining(value: str) -> int | None:
    """The count from Docker Hub's ``ratelimit-remaining`` (``76;w=21600`` → 76).

    ``None`` for anything else (the header is then ignored); never raises.
    """
    return _ascii_number(value[:64].split(";", 1)[0].strip())
