"""Rate limiters: Flux's per-item exponential backoff, the token bucket and max-of."""

from __future__ import annotations

import pytest

from imagereflector.kube.ratelimit import (
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_MIN_RETRY_DELAY,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    TokenBucketRateLimiter,
)


class ManualTime:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_default_delays_are_flux_defaults() -> None:
    assert (DEFAULT_MIN_RETRY_DELAY, DEFAULT_MAX_RETRY_DELAY) == (0.75, 900.0)


def test_exponential_sequence_doubles_from_base_and_caps() -> None:
    limiter = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("a") for _ in range(14)]
    assert delays == [
        0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0, 384.0, 768.0, 900.0, 900.0, 900.0,
    ]  # fmt: skip
    assert limiter.num_requeues("a") == 14


def test_exponential_counts_failures_per_item() -> None:
    limiter = ItemExponentialFailureRateLimiter(1.0, 100.0)
    assert [limiter.when("a"), limiter.when("a"), limiter.when("b")] == [1.0, 2.0, 1.0]
    assert (limiter.num_requeues("a"), limiter.num_requeues("b")) == (2, 1)


def test_exponential_forget_resets_the_item_only() -> None:
    limiter = ItemExponentialFailureRateLimiter(1.0, 100.0)
    limiter.when("a")
    limiter.when("a")
    limiter.when("b")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1.0
    assert limiter.when("b") == 2.0


def test_exponential_huge_failure_counts_stay_at_cap() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.75, 900.0)
    for _ in range(1100):
        delay = limiter.when("a")
    assert delay == 900.0


@pytest.mark.parametrize(
    ("base", "cap"), [(-1.0, 1.0), (1.0, -1.0), (float("nan"), 1.0)], ids=["base", "cap", "nan"]
)
def test_exponential_rejects_invalid_delays(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        ItemExponentialFailureRateLimiter(base, cap)


def test_token_bucket_allows_a_burst_then_spaces_by_qps() -> None:
    time = ManualTime()
    bucket = TokenBucketRateLimiter(qps=10.0, burst=3, clock=time)
    delays = [bucket.when(i) for i in range(5)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:] == pytest.approx([0.1, 0.2])


def test_token_bucket_refills_over_time_up_to_burst() -> None:
    time = ManualTime()
    bucket = TokenBucketRateLimiter(qps=2.0, burst=2, clock=time)
    assert [bucket.when("x"), bucket.when("x")] == [0.0, 0.0]
    assert bucket.when("x") == pytest.approx(0.5)
    time.now += 100.0  # refills to the burst, not beyond
    assert [bucket.when("x"), bucket.when("x")] == [0.0, 0.0]
    assert bucket.when("x") == pytest.approx(0.5)


def test_token_bucket_does_not_track_items() -> None:
    bucket = TokenBucketRateLimiter(qps=1.0, burst=1, clock=ManualTime())
    bucket.when("a")
    bucket.forget("a")
    assert bucket.num_requeues("a") == 0


@pytest.mark.parametrize(("qps", "burst"), [(0.0, 1), (1.0, 0)], ids=["qps", "burst"])
def test_token_bucket_rejects_invalid_settings(qps: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucketRateLimiter(qps=qps, burst=burst, clock=ManualTime())


def test_max_of_returns_longest_delay_and_forwards_forget() -> None:
    time = ManualTime()
    exponential = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    bucket = TokenBucketRateLimiter(qps=10.0, burst=1, clock=time)
    limiter = MaxOfRateLimiter(exponential, bucket)
    assert limiter.when("a") == 0.005  # bucket had a token
    assert limiter.when("a") == pytest.approx(0.1)  # bucket empty: 100ms beats 10ms
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert exponential.num_requeues("a") == 0


def test_max_of_needs_a_limiter() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter()
