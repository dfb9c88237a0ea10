"""Store, policy and scrape benchmarks: in-process, no servers.

Store: ``SqliteTagStore`` on a fresh file, writing then reading N objects of M tags each
(sequential awaits, as the controller's workers do one scan at a time per object), and
one object of 100,000 tags; medians where an operation is repeated.

Policy: ``build_policer`` + ``select_latest`` over 10,000 tags for semver (a range that
every tag satisfies, so all are parsed and compared), alphabetical and numerical order,
and semver behind a ``filterTags`` pattern with ``extract``.

Scrape: the ``/metrics`` body of 10,000 objects' ``gotk_*`` series, its time and the
``tracemalloc`` peak while it is produced, streamed and built whole.

Invariants: each store run uses its own temporary directory, removed after; every tag
list is checked for length after a read.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import re2
from prometheus_client import CollectorRegistry

from bench.common import BenchError, Result, Target, median, ms
from bench.servers import tag_names
from imagereflector.api.imagerepository import DEFAULT_EXCLUSION_LIST
from imagereflector.metrics import Metrics
from imagereflector.policy import PolicyChoice, TagFilter, build_policer, select_latest
from imagereflector.registry.tags import compile_exclusions, summarise, tags_revision
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
    """The per-tag steps of a scan over ``tags`` tags, against the naive way to do them.

    The product's exclusion filter (joined patterns matched through RE2's own ``Match``,
    with verdicts remembered per pattern list) on a first pass over new tags ("cold") and
    on a rescan of the same tags ("warm"), against google-re2's public ``search`` per tag;
    and ``summarise`` (one sort for latest tags and revision) against sorting by encoded
    bytes twice. The naive versions are checked to give the same answers.
    """
    names = tag_names(tags)
    options = re2.Options()
    options.log_errors = False
    program = re2.compile(DEFAULT_EXCLUSION_LIST[0].encode(), options)

    def naive_filter() -> list[str]:
        return [tag for tag in names
                if program.search(tag.encode("utf-8", "surrogatepass")) is None]

    def naive_summary() -> tuple[list[str], str]:
        latest = sorted(names, key=lambda t: t.encode("utf-8", "surrogatepass"),
                        reverse=True)[:10]
        encoded = sorted({t.encode("utf-8", "surrogatepass") for t in names})
        return latest, "sha256:" + hashlib.sha256(b"\n".join(encoded)).hexdigest()

    fresh_lists = itertools.count()

    def cold_filter() -> list[str]:
        # A new pattern list each run, so no verdict is remembered from an earlier run.
        patterns = [DEFAULT_EXCLUSION_LIST[0], f"^never-{next(fresh_lists)}$"]
        return compile_exclusions(patterns).apply(names)

    warm = compile_exclusions(DEFAULT_EXCLUSION_LIST)
    if naive_filter() != warm.apply(names) or naive_filter() != cold_filter() or (
            naive_summary() != summarise(names)):
        raise BenchError("the product's scan steps disagree with the naive ones")
    t = {
        "exclusion_naive": _time(naive_filter, runs),
        "exclusion_cold": _time(cold_filter, runs),
        "exclusion_warm": _time(lambda: warm.apply(names), runs),
        "summary_naive": _time(naive_summary, runs),
        "summary": _time(lambda: summarise(names), runs),
    }
    line = (f"scan-steps-{tags // 1000}k: exclusion {ms(t['exclusion_cold'])} first pass, "
            f"{ms(t['exclusion_warm'])} rescan (naive search per tag "
            f"{ms(t['exclusion_naive'])}); latest tags + revision {ms(t['summary'])} "
            f"(naive {ms(t['summary_naive'])})")
    return Result(f"scan-steps-{tags // 1000}k", line, {**t, "tags": tags, "runs": runs})


def scrape(*, runs: int, objects: int = 10_000) -> Result:
    """One ``/metrics`` body for ``objects`` ImageRepositories: time, and the most memory
    Python allocations held at once (``tracemalloc`` peak), streamed in pieces as the
    endpoint serves it and, for contrast, built whole (``Metrics.exposition``)."""
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    for i in range(objects):
        labels = {"kind": "ImageRepository", "name": f"repo-{i:05d}",
                  "namespace": f"ns-{i % 100:02d}"}
        metrics.record_condition(status="True", **labels)
        metrics.record_suspend(suspended=False, **labels)
        metrics.record_duration(seconds=0.05, **labels)

    def streamed() -> int:
        return sum(len(piece) for piece in metrics.exposition_chunks())

    def whole() -> int:
        return len(metrics.exposition())

    def peak(fn: Callable[[], int]) -> float:
        tracemalloc.start()
        try:
            fn()
            return float(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()

    size = streamed()
    if size != whole():
        raise BenchError("the streamed /metrics body differs in length from the whole one")
    t = {"streamed": _time(streamed, runs), "whole": _time(whole, runs),
         "peak_streamed": peak(streamed), "peak_whole": peak(whole), "bytes": float(size)}
    mib = 1024.0 * 1024.0
    line = (f"scrape-{objects // 1000}k: {size / mib:.1f} MiB body in {ms(t['streamed'])}, "
            f"peak allocation {t['peak_streamed'] / mib:.2f} MiB streamed vs "
            f"{t['peak_whole'] / mib:.1f} MiB built whole")
    return Result(f"scrape-{objects // 1000}k", line, {**t, "objects": objects, "runs": runs},
                  [Target(f"a scrape of {objects:,} objects holds < 1 MiB at a time",
                          t["peak_streamed"] < mib, f"{t['peak_streamed'] / mib:.2f} MiB")])
