"""A hostile registry: an HTTP/1.1 server on loopback that answers exactly the bytes a test
scripts, malformed or not.

aiohttp's server refuses to send what these tests need (a CR in a header value, bytes
that are not UTF-8, a status line it would not write), so this is a small server on
``asyncio.start_server``: it parses each request (request line, headers, a
``Content-Length`` body), records it, and writes the scripted ``Reply`` verbatim, then
closes the connection (``Connection: close``), which every client handles.

Routes are matched by exact path (query ignored) or by a prefix ending in ``*``; a
request no route matches gets a 404 in the distribution error shape. Invariant: binds
127.0.0.0/8 only, and ``close`` drops every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Self

HeaderValue = str | bytes


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the hostile server received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(slots=True)
class Reply:
    """The bytes of one answer: status line parts, headers (raw), body."""

    status: int = 200
    headers: list[tuple[str, HeaderValue]] = field(default_factory=list)
    body: bytes = b""
    reason: str = "X"

    def encode(self) -> bytes:
        """The full response, written as is (no validation of any kind)."""
        lines = [f"HTTP/1.1 {self.status} {self.reason}".encode()]
        names = {name.lower() for name, _ in self.headers}
        headers = list(self.headers)
        if "content-length" not in names:
            headers.append(("Content-Length", str(len(self.body))))
        headers.append(("Connection", "close"))
        for name, value in headers:
            raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
            lines.append(name.encode() + b": " + raw)
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


Handler = Callable[[Seen], Awaitable[Reply] | Reply]


def json_reply(document: object, status: int = 200,
               headers: Iterable[tuple[str, HeaderValue]] = ()) -> Reply:
    """A JSON answer."""
    return Reply(status=status, body=json.dumps(document).encode(),
                 headers=[("Content-Type", "application/json"), *headers])


def tags_reply(name: str, tags: list[str],
               headers: Iterable[tuple[str, HeaderValue]] = ()) -> Reply:
    """A ``tags/list`` page."""
    return json_reply({"name": name, "tags": tags}, headers=headers)


class HostileRegistry:
    """A scripted registry on ``bind`` (loopback); ``host`` is ``IP:PORT``."""

    def __init__(self, *, bind: str = "127.0.0.1") -> None:
        if not bind.startswith("127."):
            raise ValueError("hostile servers bind to loopback only")
        self._bind = bind
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.routes: dict[str, Handler] = {"/v2/": lambda _: Reply(200)}
        self.requests: list[Seen] = []
        self.port = 0

    @property
    def host(self) -> str:
        """``IP:PORT`` as registries are named."""
        return f"{self._bind}:{self.port}"

    @property
    def url(self) -> str:
        """``http://IP:PORT``."""
        return f"http://{self.host}"

    def route(self, path: str, handler: Handler | Reply) -> None:
        """Answer ``path`` (exact, or a prefix ending in ``*``) with ``handler``."""
        self.routes[path] = handler if callable(handler) else (lambda _: handler)

    def seen(self, path: str) -> list[Seen]:
        """Requests whose path is ``path``."""
        return [r for r in self.requests if r.path == path]

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self._bind, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        server, self._server = self._server, None
        for writer in list(self._writers):
            writer.close()
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _handler(self, path: str) -> Handler | None:
        if path in self.routes:
            return self.routes[path]
        prefixes = [p for p in self.routes if p.endswith("*") and path.startswith(p[:-1])]
        return self.routes[max(prefixes, key=len)] if prefixes else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            handler = self._handler(request.path)
            if handler is None:
                reply = json_reply({"errors": [{"code": "NAME_UNKNOWN", "message": "no"}]}, 404)
            else:
                answer = handler(request)
                reply = await answer if isinstance(answer, Awaitable) else answer
            writer.write(reply.encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        first = await reader.readexactly(1)
        if first == b"\x16":
            # A TLS ClientHello: clients try https first on loopback; refuse it at once, as
            # a plain-http server's connection reset would.
            return None
        head = first + await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Seen(method=method, target=target, headers=headers, body=body)
