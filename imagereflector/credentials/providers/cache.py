"""Cloud tokens, reused until 80% of their lifetime has passed (contract A9, Flux v1.2).

Flux v1.2's rules (``--token-cache-max-size``, ``--token-cache-max-duration``), in both
compatibility modes:

* A token obtained at ``t0`` that expires at ``exp`` is reused while
  ``now < t0 + min(0.8 * (exp - t0), max_duration)``; ``max_duration`` is at most one
  hour. Both the monotonic and the wall clock must agree that it is still fresh, so a
  suspended machine or a wall clock jump never serves a stale token.
* At most ``max_size`` tokens are kept; storing one more evicts the least recently used.
  A ``max_size`` of 0 is no cache at all: every lookup fetches, and no lookup is counted
  (Flux creates no cache and so records nothing either).
* Entries are keyed by strings the caller builds (``cache_key``): who asks (provider,
  audiences, cloud identity, ServiceAccount), for what (scopes, region, registry).

Invariants:

* A token that is already stale when it arrives (moto's ECR tokens expire in 2015), or
  that carries no expiry, is returned to its caller once and never stored.
* Concurrent lookups of one key fetch once: the others wait and take the fresh entry.
  A failed fetch stores nothing and its error goes to the caller that ran it.
* Every lookup is one ``cache_hit`` or one ``cache_miss`` (a miss is a lookup that
  fetched) for the involved object, and one ``success`` or ``failure`` request; the
  metrics see object names and kinds, never keys or tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, Protocol, TypeVar

MAX_DURATION: Final = 3600.0
"""Flux's ``TokenMaxDuration``: no token is cached longer, whatever the flag says."""
DEFAULT_MAX_SIZE: Final = 100
"""The image-reflector-controller's ``--token-cache-max-size`` default."""
FRESH_FRACTION: Final = 0.8
"""Tokens are renewed once 80% of their lifetime has passed (kubelet's rule, Flux's too)."""
OPERATION_RECONCILE: Final = "reconcile"

CacheEvent = Literal["hit", "miss"]
EventType = Literal["cache_hit", "cache_miss"]
RequestStatus = Literal["success", "failure"]

log = logging.getLogger("imagereflector.credentials.providers")
_T = TypeVar("_T")
_V = TypeVar("_V", covariant=True)


class Clock(Protocol):
    """Both clocks (the registry limiter's ``SystemClock`` is one)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch."""
        ...


class TokenCacheObserver(Protocol):
    """This project's per-provider count (``imagereflector_token_cache_events_total``)."""

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        """One lookup of registry credentials of ``provider`` (``aws``, ``azure``, ``gcp``)."""
        ...


class TokenCacheMetrics(Protocol):
    """Flux's ``gotk_token_*`` metrics."""

    def token_cache_event(self, event_type: EventType, involved: InvolvedObject) -> None:
        """One lookup on behalf of ``involved``."""
        ...

    def token_cache_request(self, status: RequestStatus) -> None:
        """One lookup ended: it found or fetched a token, or the fetch failed."""
        ...

    def token_cache_eviction(self) -> None:
        """A token was dropped to make room."""
        ...

    def token_cache_items(self, count: int) -> None:
        """The cache now holds ``count`` tokens."""
        ...


class NullCacheObserver:
    """Ignores everything (both observer protocols)."""

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        """Nothing to record."""

    def token_cache_event(self, event_type: EventType, involved: InvolvedObject) -> None:
        """Nothing to record."""

    def token_cache_request(self, status: RequestStatus) -> None:
        """Nothing to record."""

    def token_cache_eviction(self) -> None:
        """Nothing to record."""

    def token_cache_items(self, count: int) -> None:
        """Nothing to record."""


NULL_CACHE_OBSERVER: Final = NullCacheObserver()


@dataclass(frozen=True, slots=True)
class InvolvedObject:
    """The object a lookup is made for (the labels of ``gotk_token_cache_events_total``)."""

    kind: str
    name: str
    namespace: str
    operation: str = OPERATION_RECONCILE


@dataclass(frozen=True, slots=True)
class Expiring(Generic[_V]):
    """A value and when it stops working (seconds since the epoch; None: unknown)."""

    value: _V = field(repr=False)
    expires_at: float | None


def cache_key(*parts: str) -> str:
    """A key from ``name=value`` parts: the hex SHA-256 of the lines, as Flux builds it."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(slots=True)
class _Entry:
    token: Expiring[object] = field(repr=False)
    fresh_until_wall: float
    fresh_until_monotonic: float


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class TokenCache:
    """An LRU of expiring tokens under string keys; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        observer: TokenCacheObserver = NULL_CACHE_OBSERVER,
        metrics: TokenCacheMetrics = NULL_CACHE_OBSERVER,
        max_size: int = DEFAULT_MAX_SIZE,
        max_duration: float = MAX_DURATION,
    ) -> None:
        self._clock = clock
        self._observer = observer
        self._metrics = metrics
        self._max_size = max(0, max_size)
        self._max_duration = max(0.0, min(max_duration, MAX_DURATION))
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._locks: dict[str, _KeyLock] = {}

    @property
    def enabled(self) -> bool:
        """False when ``max_size`` is 0: nothing is stored and nothing counted."""
        return self._max_size > 0

    def __len__(self) -> int:
        """How many tokens are stored (fresh or not yet looked at again)."""
        return len(self._entries)

    async def get_or_fetch(
        self,
        key: str,
        fetch: Callable[[], Awaitable[Expiring[_T]]],
        *,
        involved: InvolvedObject | None = None,
        provider: str = "",
    ) -> Expiring[_T]:
        """The fresh token under ``key``, else ``fetch()``'s, stored when it can be.

        ``provider`` set: the lookup is also counted per provider (the registry
        credential lookups; access token lookups leave it empty).
        """
        if not self.enabled:
            return await fetch()
        slot = self._locks.setdefault(key, _KeyLock())
        slot.users += 1
        try:
            async with slot.lock:
                return await self._lookup(key, fetch, involved=involved, provider=provider)
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._locks[key]

    async def _lookup(self, key: str, fetch: Callable[[], Awaitable[Expiring[_T]]], *,
                      involved: InvolvedObject | None, provider: str) -> Expiring[_T]:
        found = self._fresh(key)
        if found is not None:
            self._count("hit", involved, provider, "success")
            return found.token  # type: ignore[return-value]  # stored by this key's fetch
        try:
            fetched = await fetch()
        except BaseException:
            self._count("miss", involved, provider, "failure")
            raise
        self._count("miss", involved, provider, "success")
        self._store(key, fetched)
        return fetched

    def forget(self, key: str) -> None:
        """Drop ``key``'s token, e.g. after the registry refused it."""
        if self._entries.pop(key, None) is not None:
            self._metrics.token_cache_items(len(self._entries))

    def _count(self, event: CacheEvent, involved: InvolvedObject | None, provider: str,
               status: RequestStatus) -> None:
        self._metrics.token_cache_request(status)
        if involved is not None:
            self._metrics.token_cache_event("cache_hit" if event == "hit" else "cache_miss",
                                            involved)
        if provider:
            self._observer.cache_event(provider, event)

    def _fresh(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (self._clock.wall() < entry.fresh_until_wall
                and self._clock.monotonic() < entry.fresh_until_monotonic):
            self._entries.move_to_end(key)
            return entry
        del self._entries[key]
        self._metrics.token_cache_items(len(self._entries))
        return None

    def _store(self, key: str, token: Expiring[object]) -> None:
        if token.expires_at is None:
            log.debug("token without expiry, not cached")
            return
        wall = self._clock.wall()
        keep = min(FRESH_FRACTION * (token.expires_at - wall), self._max_duration)
        if keep <= 0:
            log.debug("token already stale when it arrived, used once")
            return
        self._entries.pop(key, None)
        self._entries[key] = _Entry(token=token, fresh_until_wall=wall + keep,
                                    fresh_until_monotonic=self._clock.monotonic() + keep)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
            self._metrics.token_cache_eviction()
        self._metrics.token_cache_items(len(self._entries))
