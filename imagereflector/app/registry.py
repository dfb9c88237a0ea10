"""Builds the process-wide registry client from settings (one per process).

One client means one limiter: every object scanning a host shares its token bucket and
its Retry-After pauses (contract A7).
"""

from __future__ import annotations

from imagereflector.registry.client import (
    DEFAULT_MAX_SCAN_BYTES,
    DEFAULT_MAX_SCAN_TAGS,
    ClientSettings,
    RegistryClient,
)
from imagereflector.registry.limiter import HostLimiter, SystemClock
from imagereflector.registry.transport import NullObserver, RegistryObserver


def build_registry_client(
    *,
    qps: float,
    burst: int,
    max_pages: int,
    max_tags: int = DEFAULT_MAX_SCAN_TAGS,
    max_bytes: int = DEFAULT_MAX_SCAN_BYTES,
    max_retry_after: float = 60.0,
    observer: RegistryObserver | None = None,
    dot_local_plain_http: bool = True,
    strict_realms: bool = False,
) -> RegistryClient:
    """A registry client with a shared per-host limiter and the whole-scan bounds.

    ``dot_local_plain_http`` is False and ``strict_realms`` True in v1.2 mode: ``*.local``
    hosts are https only, and token realms follow Flux v1.2's rule.
    """
    limiter = HostLimiter(qps=qps, burst=burst, clock=SystemClock())
    settings = ClientSettings(max_pages=max_pages, max_scan_tags=max_tags,
                              max_scan_bytes=max_bytes, max_retry_after=max_retry_after,
                              dot_local_plain_http=dot_local_plain_http,
                              strict_realms=strict_realms)
    return RegistryClient(limiter=limiter, observer=observer or NullObserver(), settings=settings)
