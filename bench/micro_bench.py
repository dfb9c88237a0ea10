"""Store and policy benchmarks: in-process, no servers.

Store: ``SqliteTagStore`` on a fresh file, writing then reading N objects of M tags each
(sequential awaits, as the controller's workers do one scan at a time per object), and
one object of 100,000 tags; medians where an operation is repeated.

Policy: ``build_policer`` + ``select_latest`` over 10,000 tags for semver (a range that
every tag satisfies, so all are parsed and compared), alphabetical and numerical order,
and semver behind a ``filterTags`` pattern with ``extract``.

Invariants: each store run uses its own temporary directory, removed after; every tag
list is checked for length after a read.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import re2

from bench.common import BenchError, Result, Target, median, ms
from bench.servers import tag_names
from imagereflector.api.imagerepository import DEFAULT_EXCLUSION_LIST
from imagereflector.policy import PolicyChoice, TagFilter, build_policer, select_latest
from imagereflector.registry.tags import compile_exclusions, latest_tags, tags_revision
from imagereflector.store.base import ObjectKey
from imagereflector.store.sqlite import SqliteTagStore


async def _store(tmp: Path, objects: int, tags: int, big: int, repeats: int) -> dict[str, float]:
    names = tag_names(tags)
    revision = tags_revision(names)
    big_names = tag_names(big)
    big_revision = tags_revision(big_names)
    now = datetime.now(UTC)
    store = await SqliteTagStore.open(tmp)
    try:
        keys = [ObjectKey(namespace="bench", name=f"repo-{i:05d}") for i in range(objects)]
        started = time.perf_counter()
        for key in keys:
            await store.set_tags(key, canonical_image=f"r.example/{key.name}", tags=names,
                                 revision=revision, scan_time=now)
        write = time.perf_counter() - started
        started = time.perf_counter()
        for key in keys:
            if len(await store.tags(key)) != tags:
                raise BenchError("store read back a wrong tag count")
        read = time.perf_counter() - started
        big_key = ObjectKey(namespace="bench", name="big")
        writes: list[float] = []
        reads: list[float] = []
        for _ in range(repeats):
            started = time.perf_counter()
            await store.set_tags(big_key, canonical_image="r.example/big", tags=big_names,
                                 revision=big_revision, scan_time=now)
            writes.append(time.perf_counter() - started)
            started = time.perf_counter()
            if len(await store.tags(big_key)) != big:
                raise BenchError("store read back a wrong tag count")
            reads.append(time.perf_counter() - started)
    finally:
        await store.close()
    # After close: the WAL is checkpointed, so the main file holds everything.
    size = sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())  # noqa: ASYNC240
    return {"write_total": write, "read_total": read, "write_each": write / objects,
            "read_each": read / objects, "big_write": median(writes), "big_read": median(reads),
            "file_mib": size / 2**20}


def store(tmp: Path, *, objects: int, tags: int = 1000, big: int = 100_000,
          repeats: int = 5) -> Result:
    """Write and read ``objects`` x ``tags``, and one object of ``big`` tags."""
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        t = asyncio.run(_store(Path(work), objects, tags, big, repeats))
    line = (f"store: {objects} objects x {tags} tags: write {t['write_total']:.2f} s "
            f"({ms(t['write_each'])} each), read {t['read_total']:.2f} s "
            f"({ms(t['read_each'])} each), files {t['file_mib']:.1f} MiB; one object of "
            f"{big} tags: write {ms(t['big_write'])}, read {ms(t['big_read'])}")
    return Result("store", line, {**t, "objects": objects, "tags": tags, "big": big})


def _time(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up, discarded
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return median(times)


def policy(*, runs: int, tags: int = 10_000) -> Result:
    """Time the three policies over ``tags`` tags (medians of ``runs``)."""
    versions = tag_names(tags)
    numbers = [str(i) for i in range(tags)]
    prefixed = [f"main-{v}" for v in versions]
    semver = build_policer(PolicyChoice(semver_range=">=0.0.0"))
    alpha = build_policer(PolicyChoice(alphabetical_order="asc"))
    numeric = build_policer(PolicyChoice(numerical_order="asc"))
    tag_filter = TagFilter.compile("^main-(?P<v>.*)$", "$v")
    t = {
        "semver": _time(lambda: select_latest(versions, policer=semver), runs),
        "alphabetical": _time(lambda: select_latest(versions, policer=alpha), runs),
        "numerical": _time(lambda: select_latest(numbers, policer=numeric), runs),
        "semver_filtered": _time(
            lambda: select_latest(prefixed, policer=semver, tag_filter=tag_filter), runs),
    }
    line = (f"policy-{tags // 1000}k: semver {ms(t['semver'])}, alphabetical "
            f"{ms(t['alphabetical'])}, numerical {ms(t['numerical'])}, semver with filterTags "
            f"{ms(t['semver_filtered'])}")
    return Result(f"policy-{tags // 1000}k", line, {**t, "tags": tags, "runs": runs},
                  [Target("semver over 10,000 tags < 50 ms", t["semver"] < 0.050,
                          ms(t["semver"]))])


def scan_steps(*, runs: int, tags: int = 10_000) -> Result:
    """The per-tag steps of a scan over ``tags`` tags, and cheaper equivalents.

    Evidence for the scan target: the product's ``TagFilter.apply`` (default exclusion
    list) against the same RE2 program called through google-re2's low-level ``Match``
    (no ``_Match`` object per tag), and ``latest_tags``/``tags_revision`` against plain
    ``str`` ordering, which equals UTF-8 byte order for every string without lone
    surrogates. The alternatives are checked to give the same answers here.
    """
    names = tag_names(tags)
    tag_filter = compile_exclusions(DEFAULT_EXCLUSION_LIST)
    program: Any = tag_filter._compiled[0]._regexp
    unanchored = re2._Anchor.UNANCHORED
    null = (-1, -1)

    def low_level() -> list[str]:
        match = program.Match
        kept = []
        for tag in names:
            data = tag.encode("utf-8", "surrogatepass")
            if match(unanchored, data, 0, len(data))[0] == null:
                kept.append(tag)
        return kept

    def str_latest() -> list[str]:
        return sorted(names, reverse=True)[:10]

    def str_revision() -> str:
        joined = "\n".join(sorted(set(names))).encode()
        return "sha256:" + hashlib.sha256(joined).hexdigest()

    if low_level() != tag_filter.apply(names) or str_latest() != latest_tags(names) or (
            str_revision() != tags_revision(names)):
        raise BenchError("the cheaper scan steps disagree with the product's")
    t = {
        "exclusion": _time(lambda: tag_filter.apply(names), runs),
        "exclusion_low_level": _time(low_level, runs),
        "latest_tags": _time(lambda: latest_tags(names), runs),
        "latest_tags_str": _time(str_latest, runs),
        "revision": _time(lambda: tags_revision(names), runs),
        "revision_str": _time(str_revision, runs),
    }
    line = (f"scan-steps-{tags // 1000}k: exclusion {ms(t['exclusion'])} (low-level RE2 "
            f"{ms(t['exclusion_low_level'])}), latest_tags {ms(t['latest_tags'])} (str order "
            f"{ms(t['latest_tags_str'])}), revision {ms(t['revision'])} (str order "
            f"{ms(t['revision_str'])})")
    return Result(f"scan-steps-{tags // 1000}k", line, {**t, "tags": tags, "runs": runs})
