"""Scan benchmark: list a 10,000-tag repository on the real registry, three ways.

Shapes: one page straight from ``docker-registry`` (2.8.2 ignores ``n`` and answers the
whole list), and pages of 100 and of 1,000 through a paginating front that rejects
larger ``n`` (as Quay and ECR do). Clients:

* ``ours``: ``controllers.scan.scan`` with the real ``RegistryClient`` built as the
  controller builds it, warm (one client for all runs, as in the controller process),
  without a store and with a ``SqliteTagStore``; the first (cold) call is reported apart.
  ``list_tags`` alone (no exclusion, revision or summary) is timed too, to tell the
  client's HTTP overhead from the scan's per-tag work.
* ``aiohttp``: a bare loop with one ``ClientSession`` doing the same GETs (``n`` = page
  size, ``Link`` followed) and ``json.loads``: the floor for Python on this machine.
* ``skopeo list-tags`` (Go, containers/image) as a subprocess; its process start and
  ping cost is measured against a 1-tag repository so the listing alone can be compared.
  ``imagereflector scan`` as a subprocess is measured the same way, for the comparison of
  whole processes.

Invariants: medians over ``runs`` runs after one discarded warm-up per client; every
run checks it got all 10,000 tags; servers run in their own process (``bench.servers``).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.common import VENV_BIN, BenchError, Result, Target, median, ms, service
from imagereflector.api.duration import SECOND
from imagereflector.api.imagerepository import DEFAULT_EXCLUSION_LIST
from imagereflector.app.registry import build_registry_client
from imagereflector.controllers.scan import scan
from imagereflector.registry.client import RegistryClient
from imagereflector.registry.reference import parse_image_reference
from imagereflector.registry.types import RegistryAccess
from imagereflector.store.base import ObjectKey
from imagereflector.store.sqlite import SqliteTagStore

TAGS = 10_000
_LINK = re.compile(r"<([^>]+)>")


class CountingObserver:
    """Counts the registry requests the client makes (the controller counts the same)."""

    def __init__(self) -> None:
        self.requests = 0

    def request_done(self, host: str, method: str, code: str) -> None:
        """One exchange done."""
        self.requests += 1

    def ratelimit_remaining(self, host: str, remaining: int) -> None:
        """Not used here."""

    def invalid_tags(self, host: str, count: int) -> None:
        """Not used here."""


@dataclass(slots=True)
class Shape:
    """One listing shape: where to list and the page size the server allows."""

    name: str
    host: str
    page_size: int | None


def _ours_client(observer: CountingObserver) -> RegistryClient:
    # Exactly the controller's construction; qps 0 so the limiter never waits.
    return build_registry_client(qps=0.0, burst=20, max_pages=100, observer=observer)


async def _ours(client: RegistryClient, image: str, store: SqliteTagStore | None) -> float:
    ref = parse_image_reference(image)
    started = time.perf_counter()
    outcome = await scan(lister=client, ref=ref, access=RegistryAccess(),
                         exclusions=DEFAULT_EXCLUSION_LIST, timeout_ns=60 * SECOND,
                         now=datetime.now(UTC), store=store,
                         key=ObjectKey(namespace="bench", name="scan"))
    elapsed = time.perf_counter() - started
    if outcome.result.tag_count != TAGS:
        raise BenchError(f"ours listed {outcome.result.tag_count} tags, not {TAGS}")
    return elapsed


async def _list_only(client: RegistryClient, image: str) -> float:
    # The client alone (HTTP, pages, JSON), without exclusion, revision and summary.
    ref = parse_image_reference(image)
    started = time.perf_counter()
    tags = await client.list_tags(ref, timeout=60.0)
    elapsed = time.perf_counter() - started
    if len(tags) != TAGS:
        raise BenchError(f"list_tags gave {len(tags)} tags, not {TAGS}")
    return elapsed


async def _bare(session: aiohttp.ClientSession, host: str, repo: str,
                page_size: int | None) -> float:
    base = f"http://{host}"
    url = f"{base}/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
    started = time.perf_counter()
    tags: list[str] = []
    for _ in range(1000):  # bounded: 10,000 tags need at most 100 pages here
        async with session.get(url) as resp:
            if resp.status != 200:
                raise BenchError(f"aiohttp GET {url}: HTTP {resp.status}")
            body = await resp.read()
            link = resp.headers.get("Link")
        tags.extend(json.loads(body)["tags"])
        if not link:
            break
        match = _LINK.search(link)
        if match is None:
            break
        target = match[1]
        url = target if target.startswith("http") else base + target
    elapsed = time.perf_counter() - started
    if len(tags) != TAGS:
        raise BenchError(f"aiohttp listed {len(tags)} tags, not {TAGS}")
    return elapsed


def _subprocess(argv: list[str], expect: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False, timeout=120)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-500:]}")
    doc = json.loads(done.stdout)
    count = len(doc["Tags"]) if "Tags" in doc else int(doc["lastScanResult"]["tagCount"])
    if count != expect:
        raise BenchError(f"{argv[0]} listed {count} tags, not {expect}")
    return elapsed


def _skopeo(image: str, expect: int) -> float:
    return _subprocess(["skopeo", "list-tags", "--tls-verify=false", f"docker://{image}"],
                       expect)


def _cli(image: str, expect: int) -> float:
    return _subprocess([str(VENV_BIN / "imagereflector"), "scan", image, "--output", "json"],
                       expect)


def _quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles (both the value itself for a single run)."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def _timed_runs(runs: int, fn: object) -> list[float]:
    assert callable(fn)
    fn()  # warm-up, discarded
    return [fn() for _ in range(runs)]


async def _in_process(shapes: list[Shape], runs: int, tmp: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    observer = CountingObserver()
    client = _ours_client(observer)
    store = await SqliteTagStore.open(tmp / "store")
    try:
        async with aiohttp.ClientSession() as session:
            for shape in shapes:
                image = f"{shape.host}/big"
                before = observer.requests
                cold = await _ours(client, image, None)
                cold_requests = observer.requests - before
                # Alternate the clients run by run so drift (thermal, other load) hits
                # them alike.
                await _bare(session, shape.host, "big", shape.page_size)
                ours: list[float] = []
                stored: list[float] = []
                bare: list[float] = []
                listed: list[float] = []
                before = observer.requests
                for _ in range(runs):
                    ours.append(await _ours(client, image, None))
                    stored.append(await _ours(client, image, store))
                    bare.append(await _bare(session, shape.host, "big", shape.page_size))
                scans = observer.requests - before
                for _ in range(runs):
                    listed.append(await _list_only(client, image))
                out[shape.name] = {
                    "ours": median(ours), "ours_store": median(stored), "aiohttp": median(bare),
                    "ours_list": median(listed),
                    "ours_cold": cold, "cold_requests": cold_requests,
                    "requests_per_scan": scans / (2 * runs),
                    "ours_min": min(ours), "aiohttp_min": min(bare)}
    finally:
        await store.close()
        await client.close()
    return out


def run(tmp: Path, *, runs: int, quick: bool) -> list[Result]:
    """Run the scan benchmark; one result per shape."""
    spec = [{"name": "big", "tags": TAGS}, {"name": "one", "tags": 1}]
    sizes = [1000] if quick else [100, 1000]
    args = ["registry", "--tmp", str(tmp), "--spec", json.dumps(spec)]
    for size in sizes:
        args += ["--page-size", str(size)]
    results: list[Result] = []
    with service(args, tmp / "registry-service.log") as info:
        registry = info["registry"]
        shapes = [Shape("scan-10k-single", registry, None)]
        shapes += [Shape(f"scan-10k-pages-{s}", info["fronts"][str(s)], s) for s in sizes]
        with tempfile.TemporaryDirectory(dir=tmp) as work:
            timings = asyncio.run(_in_process(shapes, runs, Path(work)))
        sk_runs = runs
        cli_runs = max(3, runs // 3)
        start_runs = _timed_runs(sk_runs, lambda: _skopeo(f"{registry}/one", 1))
        skopeo_start = median(start_runs)
        cli_start = median(_timed_runs(cli_runs, lambda: _cli(f"{registry}/one", 1)))
        for shape in shapes:
            t = timings[shape.name]
            image = f"{shape.host}/big"
            big_runs = _timed_runs(sk_runs, lambda image=image: _skopeo(image, TAGS))
            skopeo = median(big_runs)
            cli = median(_timed_runs(cli_runs, lambda image=image: _cli(image, TAGS)))
            ratio = t["ours"] / t["aiohttp"]
            skopeo_net = skopeo - skopeo_start
            data = {**t, "skopeo": skopeo, "skopeo_start": skopeo_start,
                    "skopeo_net": skopeo_net, "cli": cli, "cli_start": cli_start,
                    # How well the net listing time is known: the difference of the
                    # quartiles of two process timings (a whole skopeo run each).
                    "skopeo_net_low": _quartiles(big_runs)[0] - _quartiles(start_runs)[1],
                    "skopeo_net_high": _quartiles(big_runs)[1] - _quartiles(start_runs)[0],
                    "ratio": ratio, "runs": runs}
            line = (f"{shape.name}: ours {ms(t['ours'])} (with store {ms(t['ours_store'])}, "
                    f"cold {ms(t['ours_cold'])}, list_tags alone {ms(t['ours_list'])}), "
                    f"aiohttp {ms(t['aiohttp'])} ({ratio:.2f}x), "
                    f"skopeo {ms(skopeo)} (1-tag start {ms(skopeo_start)}, "
                    f"net {ms(skopeo_net)}); imagereflector scan CLI {ms(cli)} "
                    f"(1-tag {ms(cli_start)})")
            targets = [
                Target(f"{shape.name}: ours <= 1.5x bare aiohttp", ratio <= 1.5,
                       f"{ratio:.2f}x ({ms(t['ours'])} vs {ms(t['aiohttp'])})"),
                Target(f"{shape.name}: ours faster than skopeo (listing, start cost removed)",
                       t["ours"] < skopeo_net,
                       f"{ms(t['ours'])} vs {ms(skopeo_net)}"),
            ]
            results.append(Result(shape.name, line, data, targets))
    return results
