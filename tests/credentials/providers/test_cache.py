"""The provider token cache on a manual clock: reuse, renewal margin, expired tokens, events.

The login here is a scripted coroutine standing in for a plugin behind the ``ProviderLogin``
seam; the plugins themselves are tested against their cloud fakes elsewhere.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest

from imagereflector.credentials.providers.base import ProviderError, ProviderToken
from imagereflector.credentials.providers.cache import CacheEvent, CacheKey, TokenCache
from imagereflector.registry.types import Credentials

T0 = 1_700_000_000.0
MOTO_EXPIRY = 1_420_070_400.0  # 2015-01-01T00:00:00Z, what moto's ECR always answers
KEY = CacheKey(provider="aws", registry="1.dkr.ecr.us-east-1.amazonaws.com")


class ManualClock:
    """Wall time that moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def wall(self) -> float:
        """The current manual time."""
        return self.now


@dataclass
class Events:
    """Records cache events as the metrics binding would."""

    seen: list[tuple[str, CacheEvent]] = field(default_factory=list)

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        """Record one event."""
        self.seen.append((provider, event))

    def counts(self) -> Counter[CacheEvent]:
        """Events by kind."""
        return Counter(e for _, e in self.seen)


class ScriptedLogin:
    """Hands out numbered tokens expiring ``lifetime`` after the clock's now (or at ``at``)."""

    def __init__(self, clock: ManualClock, *, lifetime: float | None = 3600.0,
                 at: float | None = None) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.at = at
        self.calls = 0

    async def __call__(self) -> ProviderToken:
        self.calls += 1
        if self.at is not None:
            expires: float | None = self.at
        elif self.lifetime is None:
            expires = None
        else:
            expires = self.clock.now + self.lifetime
        return ProviderToken(Credentials(username="u", password=f"token-{self.calls}"), expires)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def cache(clock: ManualClock, events: Events) -> TokenCache:
    return TokenCache(clock=clock, observer=events)


async def test_reuses_token_and_counts_hits(
    cache: TokenCache, clock: ManualClock, events: Events
) -> None:
    login = ScriptedLogin(clock)
    first = await cache.get(KEY, login)
    second = await cache.get(KEY, login)
    assert first.password == second.password == "token-1"
    assert login.calls == 1
    assert events.seen == [("aws", "miss"), ("aws", "hit")]


async def test_renews_five_minutes_before_a_long_token_expires(
    cache: TokenCache, clock: ManualClock
) -> None:
    login = ScriptedLogin(clock, lifetime=12 * 3600)
    await cache.get(KEY, login)
    clock.now = T0 + 12 * 3600 - 300.5
    assert (await cache.get(KEY, login)).password == "token-1"
    clock.now = T0 + 12 * 3600 - 300
    assert (await cache.get(KEY, login)).password == "token-2"
    assert login.calls == 2


async def test_renews_ten_percent_before_a_short_token_expires(
    cache: TokenCache, clock: ManualClock
) -> None:
    login = ScriptedLogin(clock, lifetime=600)  # 10 minutes: margin 60 s, not 300 s
    await cache.get(KEY, login)
    clock.now = T0 + 539
    assert (await cache.get(KEY, login)).password == "token-1"
    clock.now = T0 + 540
    assert (await cache.get(KEY, login)).password == "token-2"


async def test_expired_token_is_used_once_and_not_cached(
    cache: TokenCache, clock: ManualClock, events: Events
) -> None:
    login = ScriptedLogin(clock, at=MOTO_EXPIRY)
    assert (await cache.get(KEY, login)).password == "token-1"
    assert len(cache) == 0
    assert (await cache.get(KEY, login)).password == "token-2"
    assert login.calls == 2
    assert events.counts() == Counter({"miss": 2})


async def test_token_expiring_as_it_arrives_is_not_cached(
    cache: TokenCache, clock: ManualClock
) -> None:
    login = ScriptedLogin(clock, at=T0)
    await cache.get(KEY, login)
    await cache.get(KEY, login)
    assert login.calls == 2
    assert len(cache) == 0


async def test_token_without_expiry_is_not_cached(cache: TokenCache, clock: ManualClock) -> None:
    login = ScriptedLogin(clock, lifetime=None)
    await cache.get(KEY, login)
    await cache.get(KEY, login)
    assert login.calls == 2


@pytest.mark.parametrize(
    "other",
    [
        CacheKey(provider="aws", registry="2.dkr.ecr.us-east-1.amazonaws.com"),
        CacheKey(provider="aws", registry=KEY.registry, identity="team-a"),
        CacheKey(provider="gcp", registry=KEY.registry),
    ],
    ids=["registry", "identity", "provider"],
)
async def test_keys_do_not_share_tokens(
    cache: TokenCache, clock: ManualClock, other: CacheKey
) -> None:
    login = ScriptedLogin(clock)
    await cache.get(KEY, login)
    assert (await cache.get(other, login)).password == "token-2"
    assert (await cache.get(KEY, login)).password == "token-1"


async def test_concurrent_callers_log_in_once(
    cache: TokenCache, clock: ManualClock, events: Events
) -> None:
    release = asyncio.Event()
    calls = 0

    async def slow_login() -> ProviderToken:
        nonlocal calls
        calls += 1
        await release.wait()
        return ProviderToken(Credentials(username="u", password="shared"), clock.now + 3600)

    tasks = [asyncio.create_task(cache.get(KEY, slow_login), name=f"get-{i}") for i in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert {r.password for r in results} == {"shared"}
    assert calls == 1
    assert events.counts() == Counter({"miss": 1, "hit": 4})


async def test_failed_login_stores_nothing(
    cache: TokenCache, clock: ManualClock, events: Events
) -> None:
    async def failing() -> ProviderToken:
        raise ProviderError("ECR", "no authorization data")

    with pytest.raises(ProviderError, match="ECR authentication failed: no authorization data"):
        await cache.get(KEY, failing)
    login = ScriptedLogin(clock)
    assert (await cache.get(KEY, login)).password == "token-1"
    assert events.counts() == Counter({"miss": 2})


async def test_forget_forces_a_new_login(cache: TokenCache, clock: ManualClock) -> None:
    login = ScriptedLogin(clock)
    await cache.get(KEY, login)
    cache.forget(KEY)
    assert (await cache.get(KEY, login)).password == "token-2"


async def test_bounded_entries_drop_the_oldest(clock: ManualClock) -> None:
    cache = TokenCache(clock=clock, max_entries=2)
    login = ScriptedLogin(clock)
    keys = [CacheKey(provider="aws", registry=f"r{i}") for i in range(3)]
    for key in keys:
        await cache.get(key, login)
    assert len(cache) == 2
    assert (await cache.get(keys[0], login)).password == "token-4"
    assert (await cache.get(keys[2], login)).password == "token-3"


async def test_cache_never_shows_tokens(cache: TokenCache, clock: ManualClock) -> None:
    planted = "planted-secret-7f3a"

    async def login() -> ProviderToken:
        return ProviderToken(Credentials(username="u", password=planted), clock.now + 3600)

    creds = await cache.get(KEY, login)
    assert planted not in repr(creds)
    assert planted not in repr(cache._entries)  # the stored entry is a Credentials too
