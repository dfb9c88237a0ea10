"""Fixtures for registry client tests: a client factory that closes what it made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from imagereflector.registry.client import ClientSettings, RegistryClient
from imagereflector.registry.limiter import Clock, HostLimiter, SystemClock
from imagereflector.registry.transport import RegistryObserver
from tests.registry.recording import RecordingObserver


class MakeClient(Protocol):
    """Builds a ``RegistryClient``; unset parts get real, unlimited defaults."""

    def __call__(
        self,
        *,
        clock: Clock | None = None,
        limiter: HostLimiter | None = None,
        observer: RegistryObserver | None = None,
        **settings: Any,
    ) -> RegistryClient: ...


@pytest.fixture
def observer() -> RecordingObserver:
    """An observer whose records the test can read."""
    return RecordingObserver()


@pytest.fixture
async def make_client(observer: RecordingObserver) -> AsyncIterator[MakeClient]:
    """A factory of clients (default observer: the ``observer`` fixture)."""
    made: list[RegistryClient] = []
    recording = observer

    def make(
        *,
        clock: Clock | None = None,
        limiter: HostLimiter | None = None,
        observer: RegistryObserver | None = None,
        **settings: Any,
    ) -> RegistryClient:
        if limiter is None:
            limiter = HostLimiter(qps=0, burst=0, clock=clock or SystemClock())
        client = RegistryClient(
            limiter=limiter,
            observer=observer or recording,
            settings=ClientSettings(**settings),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
