"""A writer process for the crash test: it rewrites big tag lists until it is killed.

Run as ``python -m tests.store.crash_writer <storage-path>``. After one full round it
prints ``ready``, so the killer knows every object has rows. ``expected_tags`` is the
single source of the lists, shared with the test that checks what survived the kill.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from imagereflector.store import ObjectKey, SqliteTagStore

OBJECTS = 4
"""How many objects the writer cycles through."""


def object_key(index: int) -> ObjectKey:
    """The key of writer object ``index``."""
    return ObjectKey(namespace="crash", name=f"obj-{index}")


def expected_tags(index: int, generation: int) -> list[str]:
    """The list written for object ``index`` in round ``generation``; sizes vary a lot."""
    size = 5_000 + (generation * 7_919 + index * 104_729) % 45_000
    return [f"o{index}-g{generation}-{position:06d}" for position in range(size)]


def generation_of(tags: list[str]) -> int:
    """The round a stored list was written in (from its first tag)."""
    return int(tags[0].split("-")[1].removeprefix("g"))


async def _write_forever(storage_path: Path) -> None:
    store = await SqliteTagStore.open(storage_path)
    generation = 0
    while True:
        for index in range(OBJECTS):
            await store.set_tags(
                object_key(index),
                canonical_image="registry.example/crash",
                tags=expected_tags(index, generation),
                revision=f"rev-{generation}",
                scan_time=datetime.now(UTC),
            )
        if generation == 0:
            print("ready", flush=True)
        generation += 1


if __name__ == "__main__":
    asyncio.run(_write_forever(Path(sys.argv[1])))
