"""Scale: a 100,000-tag repository and 1,000 repositories of 1,000 tags each.

These check correctness at size, not speed; the numbers from a run are in the
store's report and the benchmarks, never asserted here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagereflector.store import ObjectKey, SqliteTagStore

WHEN = datetime(2024, 5, 17, tzinfo=UTC)


@pytest.mark.slow
async def test_hundred_thousand_tags_round_trip(storage_path: Path) -> None:
    key = ObjectKey(namespace="big", name="repo")
    tags = [f"v{i // 1000}.{i % 1000}.0-build.{i:06d}" for i in range(100_000)]
    store = await SqliteTagStore.open(storage_path)
    try:
        await store.set_tags(
            key, canonical_image="big/repo", tags=tags, revision="r1", scan_time=WHEN
        )
        assert await store.tags(key) == tags
        scan = await store.scan(key)
        assert scan is not None
        assert scan.tag_count == 100_000
        # A shorter list replaces the long one entirely.
        await store.set_tags(
            key, canonical_image="big/repo", tags=tags[:10], revision="r2", scan_time=WHEN
        )
        assert await store.tags(key) == tags[:10]
        await store.set_tags(
            key, canonical_image="big/repo", tags=tags, revision="r3", scan_time=WHEN
        )
    finally:
        await store.close()

    reopened = await SqliteTagStore.open(storage_path)
    try:
        assert await reopened.tags(key) == tags
    finally:
        await reopened.close()


@pytest.mark.slow
async def test_thousand_objects_of_thousand_tags(storage_path: Path) -> None:
    keys = [ObjectKey(namespace=f"ns-{i % 10}", name=f"repo-{i:04d}") for i in range(1_000)]

    def listing(index: int) -> list[str]:
        return [f"r{index}-{tag:04d}" for tag in range(1_000)]

    store = await SqliteTagStore.open(storage_path)
    try:
        for index, key in enumerate(keys):
            await store.set_tags(
                key,
                # Every object shares one image: per-object keys must keep them apart.
                canonical_image="shared/image",
                tags=listing(index),
                revision=f"rev-{index}",
                scan_time=WHEN,
            )
        assert await store.keys() == sorted(keys)
        for index, key in enumerate(keys):
            assert await store.tags(key) == listing(index)
    finally:
        await store.close()

    reopened = await SqliteTagStore.open(storage_path)
    try:
        assert len(await reopened.keys()) == 1_000
        for index in (0, 499, 999):
            scan = await reopened.scan(keys[index])
            assert scan is not None
            assert (scan.revision, scan.tag_count) == (f"rev-{index}", 1_000)
            assert await reopened.tags(keys[index]) == listing(index)
    finally:
        await reopened.close()
