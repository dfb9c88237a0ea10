"""Crash safety: a writer process killed with SIGKILL mid-write never leaves a partial list.

Each round starts ``tests.store.crash_writer`` on the same storage path, waits until it
has written every object once, lets it run for a varying moment and kills it. The file
must then pass ``PRAGMA integrity_check`` on its own (before the store gets a chance to
recreate anything), open without recreation, and hold for every object exactly one of
the lists the writer produced, with matching metadata.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

from imagereflector.store import DB_FILENAME, SqliteTagStore
from tests.store.crash_writer import OBJECTS, expected_tags, generation_of, object_key

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5


async def _run_and_kill(storage_path: Path, delay: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.store.crash_writer",
        str(storage_path),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None
        # The timeout only guards against a hung writer; it asserts nothing about speed.
        line = await asyncio.wait_for(writer.stdout.readline(), timeout=60)
        assert line == b"ready\n"
        await asyncio.sleep(delay)
        assert writer.returncode is None, "the writer must still be writing when killed"
    finally:
        if writer.returncode is None:
            writer.send_signal(signal.SIGKILL)
        await writer.wait()
    assert writer.returncode == -signal.SIGKILL


def _integrity(path: Path) -> str:
    raw = sqlite3.connect(path)
    try:
        return str(raw.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        raw.close()


async def test_sigkill_mid_write_leaves_whole_lists(storage_path: Path) -> None:
    rng = random.Random(20240517)
    generations_seen: set[int] = set()
    for _ in range(ROUNDS):
        await _run_and_kill(storage_path, rng.uniform(0.0, 0.4))

        assert _integrity(storage_path / DB_FILENAME) == "ok"
        store = await SqliteTagStore.open(storage_path)
        try:
            assert not store.recreated_on_open
            assert await store.keys() == [object_key(i) for i in range(OBJECTS)]
            for index in range(OBJECTS):
                tags = await store.tags(object_key(index))
                generation = generation_of(tags)
                assert tags == expected_tags(index, generation)
                scan = await store.scan(object_key(index))
                assert scan is not None
                assert scan.revision == f"rev-{generation}"
                assert scan.tag_count == len(tags)
                generations_seen.add(generation)
        finally:
            await store.close()
    # The kills landed at different points of the writing, not always after round 0.
    assert len(generations_seen) > 1
