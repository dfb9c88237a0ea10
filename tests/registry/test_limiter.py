"""Per-host token buckets, host-wide pauses and retry timing, on a fake clock."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random

import pytest

from imagereflector.registry.errors import RegistryTimeoutError
from imagereflector.registry.limiter import (
    HostLimiter,
    backoff_delay,
    parse_ratelimit_remaining,
    parse_retry_after,
)
from tests.registry.fakeclock import FakeClock, settle

FAR = math.inf


async def test_burst_is_free_then_requests_are_spaced_by_qps() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=2, burst=2, clock=clock)
    for _ in range(4):
        await limiter.acquire("r.example", deadline=FAR)
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


async def test_zero_qps_means_unlimited() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=0, burst=0, clock=clock)
    for _ in range(500):
        await limiter.acquire("r.example", deadline=FAR)
    assert clock.sleeps == []


async def test_bucket_refills_with_time_up_to_burst() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=1, burst=3, clock=clock)
    for _ in range(3):
        await limiter.acquire("r.example", deadline=FAR)
    clock.now += 100  # far more than needed: the bucket holds at most `burst`
    for _ in range(3):
        await limiter.acquire("r.example", deadline=FAR)
    assert clock.sleeps == []
    await limiter.acquire("r.example", deadline=FAR)
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_hosts_have_separate_buckets() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=1, burst=1, clock=clock)
    await limiter.acquire("a.example", deadline=FAR)
    await limiter.acquire("b.example", deadline=FAR)
    assert clock.sleeps == []


async def test_waiters_are_served_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = HostLimiter(qps=1, burst=1, clock=clock)
    done: list[str] = []

    async def caller(name: str) -> None:
        await limiter.acquire("r.example", deadline=FAR)
        done.append(name)

    tasks = [asyncio.create_task(caller(n)) for n in "abc"]
    await settle()
    assert done == ["a"]
    clock.advance(1.0)
    await settle()
    assert done == ["a", "b"]
    clock.advance(1.0)
    await settle()
    assert done == ["a", "b", "c"]
    await asyncio.gather(*tasks)


async def test_pause_holds_every_caller_of_the_host_only() -> None:
    clock = FakeClock()
    limiter = HostLimiter(qps=0, burst=0, clock=clock)
    limiter.pause("r.example", until=clock.now + 30)
    first = asyncio.create_task(limiter.acquire("r.example", deadline=FAR))
    second = asyncio.create_task(limiter.acquire("r.example", deadline=FAR))
    await limiter.acquire("other.example", deadline=FAR)  # not paused
    await settle()
    assert not first.done()
    assert not second.done()
    clock.advance(29.0)
    await settle()
    assert not first.done()
    assert not second.done()
    clock.advance(1.0)
    await asyncio.gather(first, second)


async def test_pause_never_shortens() -> None:
    clock = FakeClock()
    limiter = HostLimiter(qps=0, burst=0, clock=clock)
    limiter.pause("r.example", until=clock.now + 60)
    limiter.pause("r.example", until=clock.now + 5)
    assert limiter.paused_until("r.example") == clock.now + 60


async def test_pause_set_while_waiting_for_a_token_is_honoured() -> None:
    clock = FakeClock()
    limiter = HostLimiter(qps=1, burst=1, clock=clock)
    await limiter.acquire("r.example", deadline=FAR)
    waiter = asyncio.create_task(limiter.acquire("r.example", deadline=FAR))
    await settle()
    limiter.pause("r.example", until=clock.now + 10)
    clock.advance(1.0)  # its token is due now, but the host is paused
    await settle()
    assert not waiter.done()
    clock.advance(9.0)
    await settle()
    assert waiter.done()


async def test_a_wait_past_the_deadline_is_refused_without_sleeping() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=0.5, burst=1, clock=clock)
    await limiter.acquire("r.example", deadline=FAR)
    with pytest.raises(RegistryTimeoutError, match=r"r\.example"):
        await limiter.acquire("r.example", deadline=clock.now + 1)
    assert clock.sleeps == []
    # The refused caller gave its token back: the next one waits the same 2 s, not 4 s.
    await limiter.acquire("r.example", deadline=FAR)
    assert clock.sleeps == [pytest.approx(2.0)]


async def test_a_pause_past_the_deadline_is_refused() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=0, burst=0, clock=clock)
    limiter.pause("r.example", until=clock.now + 60)
    with pytest.raises(RegistryTimeoutError):
        await limiter.acquire("r.example", deadline=clock.now + 10)
    assert clock.sleeps == []


async def test_idle_hosts_are_forgotten() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=10, burst=1, clock=clock)
    for i in range(3000):
        await limiter.acquire(f"h{i}.example", deadline=FAR)
        clock.now += 1.0  # every earlier bucket is full again
    assert limiter.tracked_hosts <= 1025


async def test_paused_hosts_are_not_forgotten() -> None:
    clock = FakeClock(auto_advance=True)
    limiter = HostLimiter(qps=10, burst=1, clock=clock)
    limiter.pause("slow.example", until=clock.now + 10_000)
    for i in range(2000):
        await limiter.acquire(f"h{i}.example", deadline=FAR)
        clock.now += 1.0
    assert limiter.paused_until("slow.example") > clock.now


def test_negative_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        HostLimiter(qps=-1, burst=1, clock=FakeClock())


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(0, 0.09, 0.11), (1, 0.27, 0.33), (2, 0.81, 0.99)]
)
def test_backoff_is_100ms_times_3_to_the_n_with_10_percent_jitter(
    attempt: int, low: float, high: float
) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, rng=rng) for _ in range(2000)]
    assert low <= min(delays)
    assert max(delays) <= high
    assert max(delays) - min(delays) > (high - low) / 2  # there is jitter


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("-5", None),
        ("soon", None),
        ("", None),
        ("inf", None),
        ("nan", None),
        ("9" * 5000, None),
        ("1" + "0" * 400, None),
        ("\u0663", None),
        ("\u00b2", None),
        ("1e400", None),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
        ("999999999999", 999999999999.0),
    ],
    ids=["seconds", "zero", "fraction", "date", "past-date", "negative", "word", "empty",
         "inf", "nan", "5000-digits", "400-digits", "arabic-digit", "superscript",
         "float-overflow", "year-99999", "twelve-digits"],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now_wall=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("76;w=21600", 76), ("0;w=21600", 0), ("100", 100), ("many", None), ("", None),
     ("9" * 5000, None), ("\u0663;w=1", None), ("-1", None), ("1_000", None)],
)
def test_parse_ratelimit_remaining(value: str, expected: int | None) -> None:
    assert parse_ratelimit_remaining(value) == expected
