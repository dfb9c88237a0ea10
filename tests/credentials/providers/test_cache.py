"""The cloud token cache on manual clocks: Flux v1.2's 80% rule, max duration, LRU size,
size 0, both clocks, and what the metrics see.

The fetch here is a scripted coroutine standing in for a plugin; the plugins themselves
are tested against their cloud fakes elsewhere.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest

from imagereflector.credentials.providers.base import ProviderError
from imagereflector.credentials.providers.cache import (
    CacheEvent,
    EventType,
    Expiring,
    InvolvedObject,
    RequestStatus,
    TokenCache,
    cache_key,
)
from imagereflector.registry.types import Credentials

T0 = 1_700_000_000.0
MOTO_EXPIRY = 1_420_070_400.0  # 2015-01-01T00:00:00Z, what moto's ECR always answers
KEY = cache_key("provider=aws", "stsRegion=us-east-1")
REPO = InvolvedObject("ImageRepository", "app", "team-a")


class ManualClock:
    """Wall and monotonic time that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.mono = 1000.0

    def wall(self) -> float:
        """The current manual time."""
        return self.now

    def monotonic(self) -> float:
        """The current manual monotonic time."""
        return self.mono

    def advance(self, seconds: float) -> None:
        """Both clocks move on."""
        self.now += seconds
        self.mono += seconds


@dataclass
class Seen:
    """Records what both observers see."""

    provider: list[tuple[str, CacheEvent]] = field(default_factory=list)
    events: list[tuple[EventType, InvolvedObject]] = field(default_factory=list)
    requests: list[RequestStatus] = field(default_factory=list)
    evictions: int = 0
    items: list[int] = field(default_factory=list)

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        self.provider.append((provider, event))

    def token_cache_event(self, event_type: EventType, involved: InvolvedObject) -> None:
        self.events.append((event_type, involved))

    def token_cache_request(self, status: RequestStatus) -> None:
        self.requests.append(status)

    def token_cache_eviction(self) -> None:
        self.evictions += 1

    def token_cache_items(self, count: int) -> None:
        self.items.append(count)


class Scripted:
    """Hands out numbered tokens expiring ``lifetime`` after the clock's now (or at ``at``)."""

    def __init__(self, clock: ManualClock, *, lifetime: float | None = 3600.0,
                 at: float | None = None) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.at = at
        self.calls = 0

    async def __call__(self) -> Expiring[Credentials]:
        self.calls += 1
        if self.at is not None:
            expires: float | None = self.at
        elif self.lifetime is None:
            expires = None
        else:
            expires = self.clock.now + self.lifetime
        return Expiring(Credentials(username="u", password=f"token-{self.calls}"), expires)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def cache(clock: ManualClock, seen: Seen) -> TokenCache:
    return TokenCache(clock=clock, observer=seen, metrics=seen)


async def _password(cache: TokenCache, fetch: Scripted, key: str = KEY) -> str:
    return (await cache.get_or_fetch(key, fetch, involved=REPO, provider="aws")).value.password


async def test_reuses_token_and_counts_hits(cache: TokenCache, clock: ManualClock,
                                            seen: Seen) -> None:
    fetch = Scripted(clock)
    assert await _password(cache, fetch) == await _password(cache, fetch) == "token-1"
    assert fetch.calls == 1
    assert seen.provider == [("aws", "miss"), ("aws", "hit")]
    assert seen.events == [("cache_miss", REPO), ("cache_hit", REPO)]
    assert seen.requests == ["success", "success"]
    assert seen.items == [1]


async def test_renews_at_80_percent_of_a_short_lifetime(cache: TokenCache,
                                                         clock: ManualClock) -> None:
    fetch = Scripted(clock, lifetime=1000)  # 80%: 800 s
    await _password(cache, fetch)
    clock.advance(799.5)
    assert await _password(cache, fetch) == "token-1"
    clock.advance(0.5)
    assert await _password(cache, fetch) == "token-2"


async def test_long_tokens_are_kept_at_most_max_duration(clock: ManualClock) -> None:
    cache = TokenCache(clock=clock, max_duration=600)
    fetch = Scripted(clock, lifetime=12 * 3600)
    await _password(cache, fetch)
    clock.advance(599)
    assert await _password(cache, fetch) == "token-1"
    clock.advance(1)
    assert await _password(cache, fetch) == "token-2"


async def test_max_duration_is_capped_at_one_hour(clock: ManualClock) -> None:
    cache = TokenCache(clock=clock, max_duration=5 * 3600)
    fetch = Scripted(clock, lifetime=12 * 3600)
    await _password(cache, fetch)
    clock.advance(3599)
    assert await _password(cache, fetch) == "token-1"
    clock.advance(1)
    assert await _password(cache, fetch) == "token-2"


@pytest.mark.parametrize("which", ["wall", "monotonic"])
async def test_either_clock_expires_an_entry(cache: TokenCache, clock: ManualClock,
                                             which: str) -> None:
    fetch = Scripted(clock, lifetime=1000)
    await _password(cache, fetch)
    if which == "wall":
        clock.now += 800  # a wall clock jump (or NTP step) alone
    else:
        clock.mono += 800  # a suspended machine's wall clock catching up later
    assert await _password(cache, fetch) == "token-2"


async def test_stale_on_arrival_is_used_once_and_not_cached(cache: TokenCache,
                                                            clock: ManualClock,
                                                            seen: Seen) -> None:
    fetch = Scripted(clock, at=MOTO_EXPIRY)
    assert await _password(cache, fetch) == "token-1"
    assert len(cache) == 0
    assert await _password(cache, fetch) == "token-2"
    assert Counter(e for e, _ in seen.events) == Counter({"cache_miss": 2})


async def test_token_without_expiry_is_not_cached(cache: TokenCache, clock: ManualClock) -> None:
    fetch = Scripted(clock, lifetime=None)
    await _password(cache, fetch)
    await _password(cache, fetch)
    assert fetch.calls == 2


async def test_size_zero_disables_the_cache_and_its_counts(clock: ManualClock,
                                                           seen: Seen) -> None:
    cache = TokenCache(clock=clock, observer=seen, metrics=seen, max_size=0)
    fetch = Scripted(clock)
    assert [await _password(cache, fetch) for _ in range(2)] == ["token-1", "token-2"]
    assert not cache.enabled
    assert seen == Seen()


async def test_least_recently_used_is_evicted(clock: ManualClock, seen: Seen) -> None:
    cache = TokenCache(clock=clock, metrics=seen, max_size=2)
    fetch = Scripted(clock)
    keys = [cache_key(f"provider=aws-{i}") for i in range(3)]
    await _password(cache, fetch, keys[0])
    await _password(cache, fetch, keys[1])
    assert await _password(cache, fetch, keys[0]) == "token-1"  # keys[0] used last
    await _password(cache, fetch, keys[2])  # evicts keys[1]
    assert len(cache) == 2
    assert seen.evictions == 1
    assert seen.items[-1] == 2
    assert await _password(cache, fetch, keys[0]) == "token-1"
    assert await _password(cache, fetch, keys[1]) == "token-4"


async def test_concurrent_lookups_fetch_once(cache: TokenCache, clock: ManualClock,
                                             seen: Seen) -> None:
    release = asyncio.Event()
    calls = 0

    async def slow() -> Expiring[Credentials]:
        nonlocal calls
        calls += 1
        await release.wait()
        return Expiring(Credentials(username="u", password="shared"), clock.now + 3600)

    tasks = [asyncio.create_task(cache.get_or_fetch(KEY, slow, involved=REPO),
                                 name=f"get-{i}") for i in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert {r.value.password for r in results} == {"shared"}
    assert calls == 1
    assert Counter(e for e, _ in seen.events) == Counter({"cache_miss": 1, "cache_hit": 4})


async def test_failed_fetch_stores_nothing_and_counts_a_failure(
        cache: TokenCache, clock: ManualClock, seen: Seen) -> None:
    async def failing() -> Expiring[Credentials]:
        raise ProviderError("ECR", "no authorization data")

    with pytest.raises(ProviderError, match="ECR authentication failed: no authorization data"):
        await cache.get_or_fetch(KEY, failing, involved=REPO)
    assert await _password(cache, Scripted(clock)) == "token-1"
    assert seen.requests == ["failure", "success"]
    assert [e for e, _ in seen.events] == ["cache_miss", "cache_miss"]


async def test_forget_forces_a_new_fetch(cache: TokenCache, clock: ManualClock) -> None:
    fetch = Scripted(clock)
    await _password(cache, fetch)
    cache.forget(KEY)
    assert await _password(cache, fetch) == "token-2"


def test_keys_are_hashed_lines() -> None:
    assert len(cache_key("provider=aws")) == 64
    assert cache_key("provider=aws") != cache_key("provider=gcp")


async def test_cache_never_shows_tokens(cache: TokenCache, clock: ManualClock) -> None:
    planted = "planted-secret-7f3a"

    async def fetch() -> Expiring[Credentials]:
        return Expiring(Credentials(username="u", password=planted), clock.now + 3600)

    found = await cache.get_or_fetch(KEY, fetch)
    assert planted not in repr(found)
    assert planted not in repr(cache._entries)
