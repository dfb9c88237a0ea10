"""One scan of one image repository: list, exclude, store, summarise.

This is the single code path behind both ``imagereflector scan`` and the ImageRepository
reconciler, so a user can reproduce on the command line exactly what the controller
would report. The steps are contract §2.8: list the tags (bounded by the effective
timeout), drop excluded tags, store the list for the object, and compute
``lastScanResult`` (count, time, top ten, revision).

``--flux-compatibility`` decides two things here (R4, R6): in v0.31 mode the tags are
stored in registry order and the revision is this project's (``tags_revision``); in v1.2
mode they are stored in descending byte order, as Flux v1.2 stores them, and the revision
is Flux's FluxStorage checksum of that list. Either way the revision changes exactly when
the stored list does.

Errors are ``ScanError`` whose text is what follows ``scan failed: `` in the Ready
condition; the cause stays attached for logs and classification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from imagereflector.api.compat import Compatibility
from imagereflector.api.duration import SECOND, format_duration
from imagereflector.api.imagerepository import ScanResult
from imagereflector.registry.errors import RegistryError
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.tags import (
    ExclusionError,
    compile_exclusions,
    summarise,
    summarise_descending,
)
from imagereflector.registry.types import Credentials, ProxyConfig, RegistryAccess, TLSConfig
from imagereflector.store.base import ObjectKey, StoreError, TagStore


class TagLister(Protocol):
    """The part of the registry client a scan needs."""

    async def list_tags(
        self,
        ref: ImageReference,
        *,
        credentials: Credentials | None = None,
        tls: TLSConfig | None = None,
        proxy: ProxyConfig | None = None,
        timeout: float,  # noqa: ASYNC109 - the client spreads one deadline over its retries
    ) -> list[str]:
        """List every tag of ``ref`` in registry order."""
        ...


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What one successful scan found and stored."""

    canonical_image: str
    tags: list[str]
    result: ScanResult


class ScanError(Exception):
    """A scan failed; the message is the text after ``scan failed: ``."""


async def scan(
    *,
    lister: TagLister,
    ref: ImageReference,
    access: RegistryAccess,
    exclusions: Sequence[str],
    timeout_ns: int,
    now: datetime,
    store: TagStore | None = None,
    key: ObjectKey | None = None,
    compatibility: Compatibility = Compatibility.V0_31,
) -> ScanOutcome:
    """Scan ``ref`` and, when a store and key are given, replace the object's stored tags."""
    # 1. Compile the exclusion list first: a bad pattern should not cost a registry call.
    try:
        tag_filter = compile_exclusions(exclusions)
    except ExclusionError as err:
        raise ScanError(str(err)) from err
    # 2. List the tags within the effective timeout.
    seconds = timeout_ns / SECOND
    try:
        async with asyncio.timeout(seconds):
            listed = await lister.list_tags(
                ref, credentials=access.credentials, tls=access.tls, proxy=access.proxy,
                timeout=seconds,
            )
    except TimeoutError as err:
        raise ScanError(
            f"listing tags of {ref.canonical} timed out after {format_duration(timeout_ns)}"
        ) from err
    except RegistryError as err:
        raise ScanError(str(err)) from err
    # 3. Drop excluded tags; the store keeps registry order (v0.31) or Flux v1.2's
    #    descending order, which policies then see (numerical ties, filter order).
    tags = tag_filter.apply(listed)
    if compatibility.latest:
        tags, latest, revision = summarise_descending(tags)
    else:
        latest, revision = summarise(tags)
    # 4. Store the list for this object only (contract A1).
    if store is not None and key is not None:
        try:
            await store.set_tags(key, canonical_image=ref.canonical, tags=tags,
                                 revision=revision, scan_time=now)
        except StoreError as err:
            raise ScanError(f'failed to set tags for "{ref.canonical}": {err}') from err
    result = ScanResult(tag_count=len(tags), scan_time=now,
                        latest_tags=latest or None, revision=revision)
    return ScanOutcome(canonical_image=ref.canonical, tags=tags, result=result)
