"""The worst a registry can make one scan cost in memory under the default bounds.

A hostile registry chooses its answers; ``--max-tags-per-scan`` (100,000) and
``--max-tag-bytes-per-scan`` (8 MiB) bound what one scan holds. This benchmark serves the
worst inputs those defaults still accept and measures the resident memory a scan adds
above the process's baseline:

* ``most-tags``: 100,000 short tags in 100 pages of 1,000 (the page and tag limits);
* ``longest-tags``: 128-character tags until the byte limit, in pages of 1,000;
* ``one-page``: 100,000 78-character tags in one page just under 8 MiB (the largest
  single parse);
* ``one-page x4``: four such scans at once, as ``--concurrent 4`` (the default) allows.

Each scan runs the controller's own scan step (``controllers.scan.scan``: list, exclude,
summarise, store in SQLite) in a fresh process; baseline is ``VmRSS`` after the imports,
the client and the store are set up and one tiny scan has run, peak is ``VmHWM`` after.
The registry is a separate process (aiohttp on loopback) serving precomputed pages.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import JSON, BenchError, Result, Target, free_port, rss_kib

SHAPES: dict[str, tuple[int, int, int]] = {
    # name: (tags, tag length, tags per page)
    "most-tags": (100_000, 14, 1_000),
    "longest-tags": (63_000, 128, 1_000),
    "one-page": (100_000, 78, 100_000),
}
# Headroom the fleet of a full Deployment needs (docs/performance.md: about 290 MiB peak
# for 10,000 objects) under its 512 MiB limit: four worst scans must fit beside it.
BUDGET_MIB = 512 - 300


def _tags(count: int, length: int) -> list[str]:
    return [f"t{index:07d}".ljust(length, "x") for index in range(count)]


def _pages(count: int, length: int, per_page: int) -> list[bytes]:
    tags = _tags(count, length)
    return [json.dumps({"name": "app", "tags": tags[i:i + per_page]}).encode()
            for i in range(0, count, per_page)]


async def _serve(port: int) -> None:
    from aiohttp import web

    books = {name: _pages(*shape) for name, shape in SHAPES.items()}
    books["tiny"] = _pages(3, 5, 3)

    async def tags(request: web.Request) -> web.Response:
        book = books[request.match_info["name"]]
        page = int(request.query.get("page", "0"))
        headers = {"Content-Type": "application/json"}
        if page + 1 < len(book):
            name = request.match_info["name"]
            headers["Link"] = f'</v2/{name}/tags/list?page={page + 1}>; rel="next"'
        return web.Response(body=book[page], headers=headers)

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/v2/", ping)
    app.router.add_get("/v2/{name}/tags/list", tags)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _measure(host: str, shape: str, copies: int) -> JSON:
    from imagereflector.api.duration import SECOND
    from imagereflector.app.registry import build_registry_client
    from imagereflector.controllers.scan import scan
    from imagereflector.registry.reference import ImageReference
    from imagereflector.registry.types import RegistryAccess
    from imagereflector.store.base import ObjectKey
    from imagereflector.store.sqlite import SqliteTagStore

    client = build_registry_client(qps=0, burst=1, max_pages=100)
    store = await SqliteTagStore.open(Path(tempfile.mkdtemp(prefix="worst-case-")))

    async def one(name: str, index: int) -> int:
        outcome = await scan(lister=client, ref=ImageReference(registry=host, repository=name),
                             access=RegistryAccess(), exclusions=["^.*\\.sig$"],
                             timeout_ns=120 * SECOND, now=datetime.now(UTC), store=store,
                             key=ObjectKey("bench", f"{name}-{index}"))
        return outcome.result.tag_count

    try:
        await one("tiny", 0)
        baseline = rss_kib(os.getpid(), "VmRSS")
        started = time.monotonic()
        counts = await asyncio.gather(*(one(shape, i) for i in range(copies)))
        elapsed = time.monotonic() - started
        peak = rss_kib(os.getpid(), "VmHWM")
    finally:
        # The store's worker thread would otherwise keep a failed run from exiting.
        await client.close()
        await store.close()
    return {"baseline_kib": baseline, "peak_kib": peak, "tags": counts[0],
            "seconds": elapsed, "copies": copies}


def run(tmp: Path) -> list[Result]:
    """Serve every shape, scan each in a fresh process, report RSS above baseline."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.worst_case_bench", "serve",
                               str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise BenchError("worst-case registry did not start")
        results = []
        for shape, copies in (("most-tags", 1), ("longest-tags", 1), ("one-page", 1),
                              ("one-page", 4)):
            out = subprocess.run(
                [sys.executable, "-m", "bench.worst_case_bench", "measure",
                 f"127.0.0.1:{port}", shape, str(copies)],
                capture_output=True, text=True, timeout=600, check=False)
            if out.returncode != 0:
                raise BenchError(f"worst-case scan {shape} failed: {out.stderr[-2000:]}")
            data: dict[str, Any] = json.loads(out.stdout)
            added = (data["peak_kib"] - data["baseline_kib"]) / 1024
            name = f"worst-{shape}" + (f"-x{copies}" if copies > 1 else "")
            data.update(shape=shape, added_mib=added, tag_length=SHAPES[shape][1],
                        per_page=SHAPES[shape][2])
            targets = []
            if copies > 1:
                targets.append(Target(
                    f"{copies} worst scans at once add at most {BUDGET_MIB} MiB (the "
                    "Deployment's 512 MiB minus the 10,000-object fleet's peak)",
                    added <= BUDGET_MIB, f"{added:.0f} MiB"))
            results.append(Result(
                name, f"{name}: {data['tags']} tags x{copies} in {data['seconds']:.2f} s, "
                f"RSS +{added:.1f} MiB over a {data['baseline_kib'] / 1024:.0f} MiB baseline",
                data, targets))
        return results
    finally:
        server.terminate()
        server.wait(10)


def main(argv: list[str]) -> None:
    """``serve PORT`` or ``measure HOST SHAPE COPIES`` (the two halves of ``run``)."""
    if argv[0] == "serve":
        asyncio.run(_serve(int(argv[1])))
    else:
        print(json.dumps(asyncio.run(_measure(argv[1], argv[2], int(argv[3])))))


if __name__ == "__main__":
    main(sys.argv[1:])
