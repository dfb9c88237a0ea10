"""The servers a benchmark talks to, each started in a process of its own.

``python -m bench.servers registry --tmp DIR --spec JSON`` starts the real
``docker-registry``, seeds it and starts paginating fronts; ``python -m bench.servers
kubeapi --tmp DIR`` starts the fake Kubernetes API server and a small control endpoint.
Either prints one JSON line with its addresses on stdout once it is ready, then serves
until stdin closes or it gets SIGTERM/SIGINT, and stops everything it started.

Why separate processes: the fronts and the fake API server are Python on an event loop;
in the benchmark's own process their CPU would be charged to the code under test.

Invariants:
* Loopback only; the registry storage is removed on exit (``RegistryProcess.stop``).
* Seeding ``alias`` repositories makes them directory symlinks to one seeded repository:
  the registry lists them as distinct repositories, which makes 10,000 repositories
  cheap to create; tag listings read the same directory as a real copy would.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.fronts import PaginatingFront, _registry_error
from tests.fakes.kubeapi import FakeKubeAPI
from tests.fakes.registry import LoopbackApp, RegistryProcess, start_registry

JSON = dict[str, Any]
REPOS = "imagerepositories"


class CachedPaginatingFront(PaginatingFront):
    """``PaginatingFront`` with the registry's full list fetched once per repository.

    The stock front fetches and sorts the whole upstream list for every page; at 100
    pages of 100 tags that front work would dominate every client's time and hide the
    differences being measured. Tags never change during a benchmark, so the sorted list
    is cached and pages are cut with ``bisect``. Semantics are the stock front's: ``n``,
    ``last``, ``Link`` while tags remain, oversized ``n`` rejected with 400.
    """

    def __init__(self, upstream: RegistryProcess, **kwargs: Any) -> None:
        super().__init__(upstream, **kwargs)
        self._sorted: dict[str, list[str]] = {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method != "GET" or not path.startswith("/v2/") or not path.endswith(
                "/tags/list"):
            return await self._proxy(request)
        name = path[len("/v2/"):-len("/tags/list")]
        size = self.default_page_size
        raw_n = request.query.get("n")
        if raw_n is not None:
            if not raw_n.isdigit():
                return _registry_error(400, "PAGINATION_NUMBER_INVALID",
                                       "invalid number of results")
            size = int(raw_n)
            if self.max_page_size is not None and size > self.max_page_size:
                return _registry_error(400, self.reject_code,
                                       f"page size {size} above {self.max_page_size}")
        tags = self._sorted.get(name)
        if tags is None:
            up = await self._upstream(request, f"/v2/{name}/tags/list")
            if up.status != 200:
                return web.Response(status=up.status, headers=up.headers, body=up.body)
            tags = sorted(json.loads(up.body).get("tags") or [])
            self._sorted[name] = tags
        last = request.query.get("last")
        start = 0 if last is None else bisect.bisect_right(tags, last)
        end = len(tags) if size is None else min(len(tags), start + size)
        out = web.json_response({"name": name, "tags": tags[start:end]})
        if size is not None and end < len(tags) and end > start:
            out.headers["Link"] = self._link(name, size, tags[end - 1])
        return out


def seed(reg: RegistryProcess, spec: list[JSON]) -> None:
    """Seed repositories: ``{"name", "tags": N}`` writes N tags, ``{"name", "alias"}``
    makes ``name`` a symlink to the already seeded repository ``alias``."""
    repos = reg.root / "docker" / "registry" / "v2" / "repositories"
    for item in spec:
        if "alias" in item:
            link = repos / item["name"]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(repos / item["alias"], target_is_directory=True)
        else:
            reg.write_tags(item["name"], tag_names(int(item["tags"])))


def tag_names(count: int) -> list[str]:
    """``count`` semver-looking tags, the shape real repositories have (``1.2.3``)."""
    return [f"{i // 10000}.{(i // 100) % 100}.{i % 100}" for i in range(count)]


async def _until_stopped() -> None:
    """Wait for SIGTERM/SIGINT or stdin to close (the parent went away)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher: asyncio.Task[None] | None = None
    # Only a pipe can be watched for EOF (epoll refuses regular files and /dev/null).
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def eof() -> None:
            await reader.read()
            stop.set()

        watcher = asyncio.create_task(eof())
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _announce(doc: JSON) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def run_registry(tmp: Path, spec: list[JSON], page_sizes: list[int]) -> None:
    """Registry plus one rejecting front per page size (``n`` above it gets 400)."""
    reg = await start_registry(tmp)
    fronts: list[CachedPaginatingFront] = []
    try:
        started = time.perf_counter()
        seed(reg, spec)
        seeded = time.perf_counter() - started
        for size in page_sizes:
            # Like Quay: pages of ``size`` unless asked for less, more is rejected.
            front = CachedPaginatingFront(reg, max_page_size=size, default_page_size=size)
            await front.start()
            fronts.append(front)
        _announce({"registry": reg.host, "pid": reg.process.pid, "seed_seconds": seeded,
                   "fronts": {str(f.default_page_size): f.host for f in fronts}})
        await _until_stopped()
    finally:
        for front in fronts:
            await front.close()
        reg.stop()


class KubeControl:
    """Control endpoint of the fake API server process: bulk create and progress.

    Runs in the fake's process so creating 10,000 objects and counting Ready ones cost
    no HTTP round trips (and no API requests that would be counted as the controller's).
    """

    def __init__(self, api: FakeKubeAPI) -> None:
        self.api = api

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/create", self.create)
        app.router.add_get("/stats", self.stats)
        return app

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        started = time.perf_counter()
        images: list[str] = body["images"]
        for i in range(int(body["count"])):
            self.api.create({
                "apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
                "metadata": {"name": f"{body.get('prefix', 'repo')}-{i:05d}",
                             "namespace": body.get("namespace", "default")},
                "spec": {"image": images[i % len(images)],
                         "interval": body.get("interval", "1h")}})
        return web.json_response({"seconds": time.perf_counter() - started})

    async def stats(self, _: web.Request) -> web.Response:
        total = ready = 0
        for obj in self.api.store.list(self.api.store.resolve(REPOS), None)["items"]:
            total += 1
            status = obj.get("status") or {}
            if status.get("observedGeneration") != obj["metadata"].get("generation"):
                continue
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or []):
                ready += 1
        by_verb: dict[str, int] = {}
        for record in self.api.requests:
            verb = f"{record.verb}:{record.resource}" + (
                f"/{record.subresource}" if record.subresource else "")
            by_verb[verb] = by_verb.get(verb, 0) + 1
        return web.json_response({"total": total, "ready": ready,
                                  "requests": len(self.api.requests), "by_verb": by_verb})


async def run_kubeapi(tmp: Path) -> None:
    """The fake API server, its kubeconfig in ``tmp`` and the control endpoint."""
    api = FakeKubeAPI(bookmark_interval=60.0)
    await api.start()
    control = LoopbackApp(KubeControl(api).app())
    try:
        await control.start()
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        _announce({"url": api.url, "control": control.url, "kubeconfig": str(kubeconfig),
                   "pid": os.getpid()})
        await _until_stopped()
    finally:
        await control.close()
        await api.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the mode and run it until stopped."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    sub = parser.add_subparsers(dest="mode", required=True)
    registry = sub.add_parser("registry")
    registry.add_argument("--tmp", type=Path, required=True)
    registry.add_argument("--spec", required=True,
                          help="JSON list of repositories to seed, or @FILE holding it")
    registry.add_argument("--page-size", type=int, action="append", default=[])
    kubeapi = sub.add_parser("kubeapi")
    kubeapi.add_argument("--tmp", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mode == "registry":
        # 10,000 repositories do not fit in argv, hence @FILE.
        raw = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
        asyncio.run(run_registry(args.tmp, json.loads(raw), args.page_size))
    else:
        asyncio.run(run_kubeapi(args.tmp))


if __name__ == "__main__":
    main()
