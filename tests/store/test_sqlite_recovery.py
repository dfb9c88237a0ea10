"""Recovery: a deleted, replaced or corrupt database file is noticed and started afresh.

The store is a rebuildable cache, so every recovery ends in an empty, working database
and ``check`` (or ``open``) says so once, for the caller to log and rescan.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagereflector.store import DB_FILENAME, ObjectKey, SqliteTagStore, StoreError

OLD = [ObjectKey(namespace="ns", name=f"old-{i}") for i in range(20)]
NEW = ObjectKey(namespace="ns", name="new")
WHEN = datetime(2024, 5, 17, tzinfo=UTC)


async def _fill(store: SqliteTagStore) -> None:
    for index, key in enumerate(OLD):
        tags = [f"{index}-{tag}" for tag in range(2_000)]
        await store.set_tags(key, canonical_image="img", tags=tags, revision="r", scan_time=WHEN)


def _checkpoint(path: Path) -> None:
    """Move every committed page from the WAL into the main file, as SQLite will later."""
    raw = sqlite3.connect(path)
    try:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _garble_pages(path: Path, *, keep_header: bool) -> None:
    """Overwrite the file in place (same inode), optionally sparing the first page."""
    start = 4096 if keep_header else 0
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(start)
        file.write(os.urandom(size - start))


def _write_unusable_database(storage_path: Path, damage: str) -> None:
    """Put a file at the database path that the store cannot use as it is."""
    storage_path.mkdir()
    path = storage_path / DB_FILENAME
    if damage == "garbage":
        path.write_bytes(os.urandom(100_000))
    elif damage == "empty-garbage-header":
        path.write_bytes(b"not a database")
    else:
        raw = sqlite3.connect(path)
        if damage == "newer-schema":
            raw.execute("PRAGMA user_version = 999")
        else:
            raw.execute("CREATE TABLE objects (id INTEGER)")
        raw.commit()
        raw.close()


def _replace_with_file(directory: Path) -> None:
    shutil.rmtree(directory)
    directory.write_text("in the way")


def _remove(path: Path) -> None:
    path.unlink()


async def _assert_fresh_and_working(store: SqliteTagStore) -> None:
    assert store.is_open
    assert await store.keys() == []
    for key in OLD:
        assert await store.tags(key) == []
        assert await store.scan(key) is None
    await store.set_tags(NEW, canonical_image="img", tags=["a", "b"], revision="n", scan_time=WHEN)
    assert await store.tags(NEW) == ["a", "b"]
    assert await store.keys() == [NEW]
    # Healthy now: a second check, even a deep one, leaves the data alone.
    assert await store.check(quick_check=True) is False
    assert await store.tags(NEW) == ["a", "b"]


async def test_check_on_a_healthy_store_changes_nothing(store: SqliteTagStore) -> None:
    await _fill(store)
    assert await store.check() is False
    assert await store.check(quick_check=True) is False
    assert len(await store.keys()) == len(OLD)


async def test_deleted_file_is_recreated(store: SqliteTagStore) -> None:
    await _fill(store)
    store.path.unlink()
    assert await store.check() is True
    assert store.path.is_file()
    await _assert_fresh_and_working(store)


async def test_deleted_directory_is_recreated(store: SqliteTagStore, storage_path: Path) -> None:
    await _fill(store)
    shutil.rmtree(storage_path)
    assert await store.check() is True
    await _assert_fresh_and_working(store)


async def test_file_overwritten_with_garbage_in_place_is_recreated(store: SqliteTagStore) -> None:
    await _fill(store)
    _checkpoint(store.path)
    _garble_pages(store.path, keep_header=False)
    assert await store.check() is True
    await _assert_fresh_and_working(store)


async def test_file_replaced_by_garbage_is_recreated(store: SqliteTagStore) -> None:
    await _fill(store)
    replacement = store.path.with_name("garbage")
    replacement.write_bytes(os.urandom(64 * 1024))
    replacement.replace(store.path)
    assert await store.check() is True
    await _assert_fresh_and_working(store)


async def test_file_replaced_by_another_database_is_recreated(store: SqliteTagStore) -> None:
    # A valid SQLite file at the path is still not the one opened: its inode differs.
    await _fill(store)
    other = store.path.with_name("other.db")
    sqlite3.connect(other).close()
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE unrelated (x)")
    raw.close()
    other.replace(store.path)
    assert await store.check() is True
    await _assert_fresh_and_working(store)


async def test_corrupt_pages_are_found_by_quick_check_only(store: SqliteTagStore) -> None:
    await _fill(store)
    _checkpoint(store.path)
    _garble_pages(store.path, keep_header=True)
    # The cheap check only sees the same file with a valid header.
    assert await store.check() is False
    assert await store.check(quick_check=True) is True
    await _assert_fresh_and_working(store)


async def test_corruption_seen_by_an_operation_makes_the_cheap_check_deep(
    store: SqliteTagStore,
) -> None:
    await _fill(store)
    _checkpoint(store.path)
    _garble_pages(store.path, keep_header=True)
    with pytest.raises(StoreError, match=r'failed to read tags for "ns/old-5": .*malformed'):
        await store.tags(OLD[5])
    assert await store.check() is True
    await _assert_fresh_and_working(store)


@pytest.mark.parametrize(
    "damage",
    ["garbage", "empty-garbage-header", "newer-schema", "foreign-tables"],
    ids=["garbage", "short-garbage", "newer-schema", "foreign-tables"],
)
async def test_open_replaces_an_unusable_file(storage_path: Path, damage: str) -> None:
    _write_unusable_database(storage_path, damage)
    store = await SqliteTagStore.open(storage_path)
    try:
        assert store.recreated_on_open
        await _assert_fresh_and_working(store)
    finally:
        await store.close()


async def test_a_failed_recreate_is_retried_by_the_next_check(
    store: SqliteTagStore, storage_path: Path
) -> None:
    await _fill(store)
    # A file where the storage directory belongs makes the recreate fail ...
    _replace_with_file(storage_path)
    with pytest.raises(StoreError, match="failed to open"):
        await store.check()
    assert not store.is_open
    with pytest.raises(StoreError, match="unavailable"):
        await store.tags(OLD[0])
    # ... until the obstacle is gone.
    _remove(storage_path)
    assert await store.check() is True
    await _assert_fresh_and_working(store)
