"""Kubernetes client: paths, rate limiting, proxy rule (pure parts; server parts use the fake)."""

from __future__ import annotations

import pytest

from imagereflector.kube.client import (
    EVENTS,
    IMAGE_REPOSITORIES,
    NAMESPACES,
    TokenBucket,
    is_loopback_host,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            IMAGE_REPOSITORIES.path(namespace="apps", name="pod info", subresource="status"),
            "/apis/image.toolkit.fluxcd.io/v1beta2/namespaces/apps/imagerepositories/pod%20info/status",
        ),
        (IMAGE_REPOSITORIES.path(), "/apis/image.toolkit.fluxcd.io/v1beta2/imagerepositories"),
        (NAMESPACES.path(namespace="ignored", name="apps"), "/api/v1/namespaces/apps"),
        (EVENTS.path(namespace="apps"), "/api/v1/namespaces/apps/events"),
    ],
    ids=["object-status", "all-namespaces", "cluster-scoped", "core"],
)
def test_paths(path: str, expected: str) -> None:
    assert path == expected


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Out of tokens: waiters are spaced 1/qps apart, in arrival order.
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock.t += 1.0  # refills 10 tokens, capped at the burst of 3 (after repaying the debt of 2)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_token_bucket_disabled() -> None:
    bucket = TokenBucket(qps=0, burst=1, clock=FakeClock())
    assert all(bucket.reserve() == 0.0 for _ in range(1000))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("10.96.0.1", False),
        ("kubernetes.default.svc", False),
        (None, False),
    ],
)
def test_loopback_hosts_bypass_proxies(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
