"""The HTTP endpoints for operators: ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` is liveness and depends on nothing but the event loop answering. ``/readyz``
is readiness: every registered check must pass (informers synced, store open). Both
servers bind the addresses given by Flux's flags (``:8080``, ``:9440``); port 0 picks a
free port, which ``bound_port`` reports (tests use it).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

ReadyCheck = Callable[[], bool]

# What controller-runtime serves. Every name and label here is a classic one, so the
# text is the same in format 0.0.4 and 1.0.0, and 0.0.4 is understood by every
# Prometheus release (prometheus_client's CONTENT_TYPE_LATEST moved to 1.0.0).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def split_addr(addr: str) -> tuple[str, int]:
    """Split Go's ``host:port`` (host may be empty for all interfaces) into parts."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid listen address {addr!r}: expected [host]:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)  # noqa: S104 - ':8080' means every interface, as in Go


@dataclass(slots=True)
class HttpEndpoint:
    """A running aiohttp site on a socket we bound ourselves; ``close()`` stops it."""

    runner: web.AppRunner
    sock: socket.socket

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful when the address asked for port 0)."""
        port: int = self.sock.getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop serving and release the port."""
        await self.runner.cleanup()


async def _start(app: web.Application, addr: str) -> HttpEndpoint:
    host, port = split_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Binding the socket here (not in aiohttp) lets callers learn the port of ":0".
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return HttpEndpoint(runner, sock)


async def serve_metrics(addr: str, exposition: Callable[[], Iterable[bytes]]) -> HttpEndpoint:
    """Serve the Prometheus text ``exposition()`` yields on ``/metrics``.

    The body is streamed piece by piece (chunked transfer encoding), so a scrape of a
    large fleet never holds its whole ~20 MB text in memory, and gzip-compressed when the
    scraper accepts it (Prometheus does; so does controller-runtime's handler), which
    makes that text ~0.6 MB on the wire.
    """

    async def metrics(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": METRICS_CONTENT_TYPE})
        response.enable_compression()  # only when Accept-Encoding allows it
        await response.prepare(request)
        for chunk in exposition():
            await response.write(chunk)
            # A write returns at once while the socket keeps up; let reconciles run
            # between pieces rather than after the whole scrape.
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return await _start(app, addr)


async def serve_health(addr: str, ready_checks: Mapping[str, ReadyCheck]) -> HttpEndpoint:
    """Serve ``/healthz`` (always ok while the loop runs) and ``/readyz`` (all checks)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        failing = sorted(name for name, check in ready_checks.items() if not check())
        if failing:
            return web.Response(status=503, text="not ready: " + ", ".join(failing))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return await _start(app, addr)
