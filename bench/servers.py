"""The registry a benchmark talks to, started in a process of its own.

``python -m bench.servers registry --tmp DIR --spec JSON`` starts the real
``docker-registry``, seeds it and starts paginating fronts; with ``--metrics`` the
registry also serves its own Prometheus counters (``registry_http_requests_total`` by
handler, method and code) on a second loopback port, which is how the fleet and soak
runs count registry requests for both controllers alike (Flux's controller has no
registry metric of its own). It prints one JSON line with its addresses on stdout once
it is ready, then serves until stdin closes or it gets SIGTERM/SIGINT, and stops
everything it started.

Why a separate process: the fronts are Python on an event loop; in the benchmark's own
process their CPU would be charged to the code under test. The Kubernetes API server of
the fleet and soak runs is the real one (``bench.kube``), not started here.

Invariants:
* Loopback only; the registry storage is removed on exit (``RegistryProcess.stop``).
* Seeding ``alias`` repositories makes them directory symlinks to one seeded repository:
  the registry lists them as distinct repositories, which makes 10,000 repositories
  cheap to create; tag listings read the same directory as a real copy would.
* The counted registry is the same ``docker-registry`` binary and storage layout as
  ``tests.fakes.registry.start_registry`` (which has no metrics switch); only the
  ``http.debug`` section differs.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.fronts import PaginatingFront, _registry_error
from tests.fakes.ports import process_listens
from tests.fakes.registry import (
    REGISTRY_BINARY,
    RegistryProcess,
    RegistryStartError,
    free_port,
    start_registry,
)

JSON = dict[str, Any]
_TMPFS = Path("/dev/shm")


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


def start_counted_registry(tmp: Path) -> tuple[RegistryProcess, str]:
    """``docker-registry`` with its Prometheus endpoint on; the process and metrics URL.

    Storage on tmpfs when there is one (as ``start_registry`` does), so 10,000
    repositories of symlinks and a seeded tag directory cost no disk. Raises
    ``RegistryStartError`` with the log when it does not listen within 10 s.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="registry-", dir=tmp))
    on_tmpfs = _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK)
    root = Path(tempfile.mkdtemp(prefix="irc-bench-registry-", dir=_TMPFS)) if on_tmpfs \
        else workdir / "storage"
    root.mkdir(exist_ok=True)
    for _ in range(3):  # a port taken between choosing and binding: try another
        port, debug = free_port(), free_port()
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root)},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16),
                     "debug": {"addr": f"127.0.0.1:{debug}",
                               "prometheus": {"enabled": True, "path": "/metrics"}}},
        }
        config_file = workdir / "config.yml"
        config_file.write_text(json.dumps(config, indent=2))  # JSON is YAML
        log_file = workdir / f"registry-{port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with log_file.open("wb") as log:
            proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config_file)],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        reg = RegistryProcess(process=proc, port=port, scheme="http", root=root,
                              workdir=workdir, log_file=log_file,
                              scratch=root if on_tmpfs else None)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and proc.poll() is None:
            if process_listens(proc.pid, port) and process_listens(proc.pid, debug):
                return reg, f"http://127.0.0.1:{debug}/metrics"
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if "address already in use" not in reg.log():
            break
    if on_tmpfs:
        shutil.rmtree(root, ignore_errors=True)
    raise RegistryStartError(f"docker-registry did not start:\n{reg.log()}")


async def run_registry(tmp: Path, spec: list[JSON], page_sizes: list[int],
                       metrics: bool) -> None:
    """Registry plus one rejecting front per page size (``n`` above it gets 400)."""
    metrics_url: str | None = None
    if metrics:
        # Blocking for well under a second, before anything else runs on this loop.
        reg, metrics_url = start_counted_registry(tmp)
    else:
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
                   "metrics": metrics_url,
                   "fronts": {str(f.default_page_size): f.host for f in fronts}})
        await _until_stopped()
    finally:
        for front in fronts:
            await front.close()
        reg.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse the mode and run it until stopped."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    sub = parser.add_subparsers(dest="mode", required=True)
    registry = sub.add_parser("registry")
    registry.add_argument("--tmp", type=Path, required=True)
    registry.add_argument("--spec", required=True,
                          help="JSON list of repositories to seed, or @FILE holding it")
    registry.add_argument("--page-size", type=int, action="append", default=[])
    registry.add_argument("--metrics", action="store_true",
                          help="serve registry_http_requests_total on a debug port")
    args = parser.parse_args(argv)
    # 10,000 repositories do not fit in argv, hence @FILE.
    raw = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
    asyncio.run(run_registry(args.tmp, json.loads(raw), args.page_size, args.metrics))


if __name__ == "__main__":
    main()
