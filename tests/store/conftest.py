"""Fixtures for the tag store tests: a real SQLite store in the test's tmp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagereflector.store import SqliteTagStore


@pytest.fixture
def storage_path(tmp_path: Path) -> Path:
    """A storage directory that does not exist yet (open must create it)."""
    return tmp_path / "data"


@pytest.fixture
async def store(storage_path: Path) -> AsyncIterator[SqliteTagStore]:
    """An open store, always closed at teardown so its worker thread ends."""
    opened = await SqliteTagStore.open(storage_path)
    try:
        yield opened
    finally:
        await opened.close()
