"""Cloud registry tokens, reused until shortly before they expire (contract A9).

Entries are keyed by (provider, registry host, identity). A token obtained at ``t0`` that
expires at ``exp`` is reused while ``now < exp - margin``, where the margin is the
smaller of ``max_margin`` (5 minutes) and ``margin_fraction`` (10%) of its lifetime
``exp - t0``: a 12-hour ECR token is renewed 5 minutes early, a 10-minute token one
minute early.

Invariants:

* A token that is already inside its margin when it arrives (moto's ECR tokens expire in
  2015) is returned to its caller once and not stored: every call logs in again, it never
  loops and never serves a dead token twice. A token without an expiry is not stored
  either.
* Concurrent calls for one key log in once: the others wait and take the fresh entry.
  A failed login stores nothing; its error goes to the caller that ran it.
* Every call is exactly one ``hit`` or one ``miss`` for the observer (a miss is a call
  that logged in). The observer never sees keys or tokens, only the provider name.
* Time is read only from the injected clock's ``wall()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from imagereflector.credentials.providers.base import ProviderToken
from imagereflector.registry.types import Credentials

CacheEvent = Literal["hit", "miss"]

DEFAULT_MAX_MARGIN: Final = 300.0
DEFAULT_MARGIN_FRACTION: Final = 0.1
DEFAULT_MAX_ENTRIES: Final = 1024

log = logging.getLogger("imagereflector.credentials.providers")


class WallClock(Protocol):
    """Seconds since the epoch (the registry limiter's ``SystemClock`` is one)."""

    def wall(self) -> float:
        """Now, in seconds since the epoch."""
        ...


class TokenCacheObserver(Protocol):
    """Receives one event per cache lookup; metrics bind a counter to it."""

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        """``provider`` is ``aws``, ``azure`` or ``gcp``."""
        ...


class NullCacheObserver:
    """Ignores every event."""

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        """Nothing to record."""


NULL_CACHE_OBSERVER: Final = NullCacheObserver()


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Who asked for which registry: provider, registry host, identity (empty: ambient)."""

    provider: str
    registry: str
    identity: str = ""


@dataclass(frozen=True, slots=True)
class _Entry:
    credentials: Credentials
    fresh_until: float


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class TokenCache:
    """Reuses provider tokens per ``CacheKey`` until shortly before they expire."""

    def __init__(
        self,
        *,
        clock: WallClock,
        observer: TokenCacheObserver = NULL_CACHE_OBSERVER,
        max_margin: float = DEFAULT_MAX_MARGIN,
        margin_fraction: float = DEFAULT_MARGIN_FRACTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self._observer = observer
        self._max_margin = max_margin
        self._margin_fraction = margin_fraction
        self._max_entries = max_entries
        self._entries: dict[CacheKey, _Entry] = {}
        self._locks: dict[CacheKey, _KeyLock] = {}

    def __len__(self) -> int:
        """How many tokens are stored (fresh or not yet evicted)."""
        return len(self._entries)

    async def get(
        self, key: CacheKey, login: Callable[[], Awaitable[ProviderToken]]
    ) -> Credentials:
        """The stored credentials for ``key`` if still fresh, else ``login()``'s, stored."""
        slot = self._locks.setdefault(key, _KeyLock())
        slot.users += 1
        try:
            async with slot.lock:
                cached = self._fresh(key)
                if cached is not None:
                    self._observer.cache_event(key.provider, "hit")
                    return cached
                self._observer.cache_event(key.provider, "miss")
                token = await login()
                self._store(key, token)
                return token.credentials
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._locks[key]

    def forget(self, key: CacheKey) -> None:
        """Drop ``key``'s token, e.g. after the registry refused it."""
        self._entries.pop(key, None)

    def _fresh(self, key: CacheKey) -> Credentials | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock.wall() < entry.fresh_until:
            return entry.credentials
        del self._entries[key]
        return None

    def _store(self, key: CacheKey, token: ProviderToken) -> None:
        now = self._clock.wall()
        if token.expires_at is None:
            log.debug("%s token has no expiry, not cached", key.provider)
            return
        lifetime = token.expires_at - now
        margin = min(self._max_margin, max(0.0, self._margin_fraction * lifetime))
        fresh_until = token.expires_at - margin
        if fresh_until <= now:
            log.debug("%s token for %s already expired, used once", key.provider, key.registry)
            return
        self._entries.pop(key, None)
        self._entries[key] = _Entry(credentials=token.credentials, fresh_until=fresh_until)
        self._evict(now)

    def _evict(self, now: float) -> None:
        if len(self._entries) <= self._max_entries:
            return
        for stale in [k for k, e in self._entries.items() if e.fresh_until <= now]:
            del self._entries[stale]
        while len(self._entries) > self._max_entries:
            # Insertion order is storage order: drop the oldest.
            del self._entries[next(iter(self._entries))]
