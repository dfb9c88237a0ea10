"""The tag store file deleted or corrupted under a running controller is rebuilt, once,
and rescanned.

Proves with the real manager (store checked every 0.2 s, as the harness configures), its
objects on the real API server:

* ``tags.db`` (with its WAL and shared-memory files) deleted,
* ``tags.db`` overwritten in place with garbage (same inode, no SQLite header), and
* ``tags.db`` and its WAL garbled past the header (the file still looks like SQLite and a
  fresh connection finds it damaged; a reconcile request makes the controller scan and
  write to it),

each end with a fresh, intact database: the controller says it recreated the store exactly
once in the log, every repository is rescanned (its new tags are found and stored), and
the file passes ``PRAGMA integrity_check``. The last case needs the periodic deep
check (every tenth tick reads the pages from disk).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from imagereflector.store.base import ObjectKey
from tests.controllers.harness import repository
from tests.controllers.realharness import REPOS, Cluster, KubeTest, start_cluster
from tests.fakes.registry import RegistryProcess
from tests.reliability.support import annotate, integrity, settled_with

NAMES = [f"app-{k}" for k in range(5)]
RECREATED = "tag store was missing or corrupt and has been recreated"


def garble(path: Path, *, keep_header: bool) -> None:
    """Overwrite ``path`` in place (same inode) with random bytes, optionally after 100."""
    size = max(path.stat().st_size, 8192)
    with path.open("r+b") as file:
        if keep_header:
            file.seek(100)
            size -= 100
        file.write(os.urandom(size))
        file.flush()
        os.fsync(file.fileno())


async def test_garbage_store_is_recreated_once_and_rescanned(
        registry: RegistryProcess, kube: KubeTest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imagereflector")
    registry.write_tags("app", ["1", "2"])
    async with start_cluster(kube) as cluster:
        database = await scanned(cluster, registry)
        garble(database, keep_header=False)
        await cluster.wait_all(REPOS, NAMES, lambda _, o: settled_with(3)(o), within=30)
        await assert_rebuilt(cluster, database)
    assert len([r for r in caplog.records if RECREATED in r.getMessage()]) == 1


async def test_deleted_store_is_recreated_once_and_rescanned(
        registry: RegistryProcess, kube: KubeTest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imagereflector")
    registry.write_tags("app", ["1", "2"])
    async with start_cluster(kube) as cluster:
        database = await scanned(cluster, registry)
        for path in (database, database.with_name("tags.db-wal"),
                     database.with_name("tags.db-shm")):
            path.unlink(missing_ok=True)
        await cluster.wait_all(REPOS, NAMES, lambda _, o: settled_with(3)(o), within=30)
        assert database.exists()
        await assert_rebuilt(cluster, database)
    assert len([r for r in caplog.records if RECREATED in r.getMessage()]) == 1


async def test_garbled_pages_are_recreated_once_and_rescanned(
        registry: RegistryProcess, tmp_path: Path, kube: KubeTest,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imagereflector")
    registry.write_tags("app", ["1", "2"])
    async with start_cluster(kube) as cluster:
        database = await scanned(cluster, registry)
        garble(database, keep_header=True)
        wal = database.with_name("tags.db-wal")
        if wal.exists():
            garble(wal, keep_header=True)
        # The damage is real: a copy opened afresh (as a restart would) is not intact.
        assert not copy_is_intact(database, tmp_path / "copy")
        # A reconcile request makes the controller scan and write the store again.
        annotate(cluster.api, REPOS, NAMES[0], "touch-the-store", cluster.ns)
        # Generous for a 0.2 s check interval and five rescans of a local registry.
        await cluster.wait_all(REPOS, NAMES, lambda _, o: settled_with(3)(o), within=10)
        await assert_rebuilt(cluster, database)
    assert len([r for r in caplog.records if RECREATED in r.getMessage()]) == 1


async def scanned(cluster: Cluster, registry: RegistryProcess) -> Path:
    """Create the repositories, wait for their first scans, then change the tags."""
    for name in NAMES:
        cluster.api.create(repository(name, f"{registry.host}/app"))
    await cluster.wait_all(REPOS, NAMES, lambda _, o: settled_with(2)(o), within=20)
    registry.write_tags("app", ["1", "2", "3"])
    return Path(cluster.settings.storage_path) / "tags.db"


async def assert_rebuilt(cluster: Cluster, database: Path) -> None:
    """Every object's new tags are stored, the file is intact, and no second rebuild follows."""
    for name in NAMES:
        stored = await cluster.manager.store.tags(ObjectKey(cluster.ns, name))
        assert sorted(stored) == ["1", "2", "3"]
    # Give the 0.2 s store check five more turns to repeat itself if it would.
    await asyncio.sleep(1.0)
    assert integrity(database) == "ok"


def copy_is_intact(database: Path, into: Path) -> bool:
    """Whether a copy of the database and its WAL opens and passes integrity_check."""
    into.mkdir()
    for suffix in ("", "-wal"):
        source = database.with_name(database.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / source.name)
    try:
        return integrity(into / database.name) == "ok"
    except sqlite3.DatabaseError:
        return False
