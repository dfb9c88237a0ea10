"""SqliteTagStore behaviour: round trips, per-object isolation, metadata, errors."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from imagereflector.store import (
    DB_FILENAME,
    SCHEMA_VERSION,
    ObjectKey,
    SqliteTagStore,
    StoredScan,
    StoreError,
    TagStore,
)

KEY = ObjectKey(namespace="flux-system", name="podinfo")
IMAGE = "ghcr.io/stefanprodan/podinfo"
WHEN = datetime(2024, 5, 17, 10, 30, 15, 123456, tzinfo=UTC)


async def _put(
    store: SqliteTagStore,
    key: ObjectKey,
    tags: list[str],
    *,
    image: str = IMAGE,
    revision: str = "rev",
    when: datetime = WHEN,
) -> None:
    await store.set_tags(key, canonical_image=image, tags=tags, revision=revision, scan_time=when)


async def test_sqlite_store_satisfies_the_protocol(store: SqliteTagStore) -> None:
    # The annotation is the real check (mypy); isinstance covers the runtime surface.
    seam: TagStore = store
    assert isinstance(seam, TagStore)
    assert seam.is_open


async def test_open_creates_directory_and_wal_database(storage_path: Path) -> None:
    store = await SqliteTagStore.open(storage_path)
    try:
        assert store.is_open
        assert not store.recreated_on_open
        assert store.path == storage_path / DB_FILENAME
        assert store.path.is_file()
    finally:
        await store.close()
    with sqlite3.connect(storage_path / DB_FILENAME) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


async def test_unknown_object_has_no_tags_and_no_scan(store: SqliteTagStore) -> None:
    assert await store.tags(KEY) == []
    assert await store.scan(KEY) is None
    assert await store.keys() == []


async def test_round_trip_keeps_registry_order(store: SqliteTagStore) -> None:
    tags = ["v1.10.0", "latest", "v1.2.0", "v1.9.0", "sha-abc"]
    await _put(store, KEY, tags)
    assert await store.tags(KEY) == tags


async def test_second_set_replaces_tags_and_metadata(store: SqliteTagStore) -> None:
    await _put(store, KEY, ["a", "b", "c"], revision="one", image="example.com/old")
    later = WHEN + timedelta(minutes=5)
    await _put(store, KEY, ["d"], revision="two", image="example.com/new", when=later)
    assert await store.tags(KEY) == ["d"]
    assert await store.scan(KEY) == StoredScan(
        canonical_image="example.com/new", revision="two", scan_time=later, tag_count=1
    )


async def test_objects_with_the_same_image_do_not_overwrite_each_other(
    store: SqliteTagStore,
) -> None:
    first = ObjectKey(namespace="team-a", name="app")
    second = ObjectKey(namespace="team-b", name="app")
    third = ObjectKey(namespace="team-a", name="app-excluded")
    await _put(store, first, ["1.0", "1.1", "2.0-rc"], revision="a")
    await _put(store, second, ["1.0"], revision="b")
    await _put(store, third, [], revision="c")
    assert await store.tags(first) == ["1.0", "1.1", "2.0-rc"]
    assert await store.tags(second) == ["1.0"]
    assert await store.tags(third) == []
    scans = [await store.scan(key) for key in (first, second, third)]
    assert [s.revision for s in scans if s is not None] == ["a", "b", "c"]


async def test_delete_removes_only_that_object(store: SqliteTagStore) -> None:
    other = ObjectKey(namespace="flux-system", name="other")
    await _put(store, KEY, ["a"])
    await _put(store, other, ["b"])
    await store.delete(KEY)
    assert await store.tags(KEY) == []
    assert await store.scan(KEY) is None
    assert await store.tags(other) == ["b"]
    assert await store.keys() == [other]


async def test_delete_of_unknown_object_is_fine(store: SqliteTagStore) -> None:
    await store.delete(KEY)
    assert await store.keys() == []


async def test_keys_are_sorted_by_namespace_then_name(store: SqliteTagStore) -> None:
    keys = [ObjectKey("b", "a"), ObjectKey("a", "z"), ObjectKey("a", "b")]
    for key in keys:
        await _put(store, key, ["x"])
    assert await store.keys() == sorted(keys)


@pytest.mark.parametrize(
    "when",
    [
        WHEN,
        datetime(2024, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2024, 1, 1, 12, 0, 0, 1),
    ],
    ids=["utc-microseconds", "offset", "naive"],
)
async def test_scan_metadata_round_trips_exactly(store: SqliteTagStore, when: datetime) -> None:
    await _put(store, KEY, ["a", "b"], revision="sha256:abc", when=when)
    scan = await store.scan(KEY)
    assert scan == StoredScan(
        canonical_image=IMAGE, revision="sha256:abc", scan_time=when, tag_count=2
    )
    assert scan.scan_time.tzinfo == when.tzinfo


@pytest.mark.parametrize(
    "tags",
    [
        [],
        [""],
        ["", ""],
        ["ünïcödé", "日本語-タグ", "emoji-🚀", "mixed-Ωmega-1.0"],
        ["has\nnewline", "has,comma", 'has"quote', "has\\backslash"],
        ["nul\x00inside", "plain"],
        ["lone-surrogate-\udc80", "plain"],
        ["\x00"],
    ],
    ids=[
        "empty",
        "one-empty-tag",
        "two-empty-tags",
        "unicode",
        "punctuation",
        "nul-in-tag",
        "lone-surrogate",
        "only-nul",
    ],
)
async def test_any_strings_round_trip(store: SqliteTagStore, tags: list[str]) -> None:
    await _put(store, KEY, tags)
    assert await store.tags(KEY) == tags
    scan = await store.scan(KEY)
    assert scan is not None
    assert scan.tag_count == len(tags)


async def test_tags_may_be_any_sequence(store: SqliteTagStore) -> None:
    await store.set_tags(KEY, canonical_image=IMAGE, tags=("a", "b"), revision="r", scan_time=WHEN)
    assert await store.tags(KEY) == ["a", "b"]


async def test_a_str_is_not_a_tag_list(store: SqliteTagStore) -> None:
    with pytest.raises(TypeError, match="not a str"):
        await store.set_tags(KEY, canonical_image=IMAGE, tags="abc", revision="r", scan_time=WHEN)


async def test_reopen_after_close_keeps_data(storage_path: Path) -> None:
    store = await SqliteTagStore.open(storage_path)
    await _put(store, KEY, ["keep", "me"], revision="kept")
    await store.close()
    await store.close()
    assert not store.is_open

    reopened = await SqliteTagStore.open(storage_path)
    try:
        assert not reopened.recreated_on_open
        assert await reopened.tags(KEY) == ["keep", "me"]
        scan = await reopened.scan(KEY)
        assert scan is not None
        assert scan.revision == "kept"
        assert await reopened.keys() == [KEY]
    finally:
        await reopened.close()


async def test_operations_after_close_raise_store_error(storage_path: Path) -> None:
    store = await SqliteTagStore.open(storage_path)
    await store.close()
    with pytest.raises(
        StoreError, match=r'failed to read tags for "flux-system/podinfo": .*closed'
    ):
        await store.tags(KEY)
    with pytest.raises(StoreError, match="closed"):
        await _put(store, KEY, ["a"])
    with pytest.raises(StoreError, match="closed"):
        await store.check()


async def test_sqlite_errors_become_store_errors_naming_the_object(storage_path: Path) -> None:
    store = await SqliteTagStore.open(storage_path, busy_timeout=0)
    # A second connection holding the write lock makes the store's write fail at once.
    blocker = sqlite3.connect(storage_path / DB_FILENAME, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError) as caught:
            await _put(store, KEY, ["secret-looking-tag"])
        message = str(caught.value)
        assert message == 'failed to set tags for "flux-system/podinfo": database is locked'
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        blocker.execute("ROLLBACK")
        # The store is not broken by the failure.
        await _put(store, KEY, ["a"])
        assert await store.tags(KEY) == ["a"]
    finally:
        blocker.close()
        await store.close()


async def test_open_on_an_unusable_path_raises_store_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError, match="failed to open"):
        await SqliteTagStore.open(not_a_dir / "data")


async def test_concurrent_writers_and_readers_see_whole_lists(store: SqliteTagStore) -> None:
    keys = [ObjectKey(namespace="conc", name=f"obj-{i}") for i in range(5)]

    def listing(writer: int, round_: int) -> list[str]:
        # Every list has a distinct length and prefix, so a mix of two is detectable.
        size = 1 + (writer * 31 + round_ * 17) % 400
        return [f"w{writer}-r{round_}-{i}" for i in range(size)]

    def whole(tags: list[str]) -> bool:
        if not tags:
            return True
        writer, round_, _ = tags[0].split("-")
        return tags == listing(int(writer[1:]), int(round_[1:]))

    async def writer(number: int) -> None:
        for round_ in range(20):
            key = keys[(number + round_) % len(keys)]
            await _put(store, key, listing(number, round_), revision=f"{number}-{round_}")
            await asyncio.sleep(0)

    async def reader(number: int) -> int:
        seen = 0
        for round_ in range(40):
            tags = await store.tags(keys[(number + round_) % len(keys)])
            assert whole(tags)
            seen += bool(tags)
        return seen

    results = await asyncio.gather(*(writer(n) for n in range(25)), *(reader(n) for n in range(25)))
    assert sum(r for r in results if r is not None) > 0
    assert await store.keys() == keys
    for key in keys:
        tags = await store.tags(key)
        assert whole(tags)
        scan = await store.scan(key)
        assert scan is not None
        assert scan.tag_count == len(tags)
