"""Reverse proxies in front of the real registry, for behaviour 2.8.2 does not have.

* ``PaginatingFront`` pages ``tags/list`` the way hosted registries and distribution v3
  do (``n``, ``last``, ``Link: <…>; rel="next"``), rejects oversized pages with a
  registry error code, and can emit a ``Link`` loop.
* ``FaultFront`` misbehaves on request: error statuses with ``Retry-After``, hangs,
  truncated, non-JSON or endless bodies, and redirects to another host.

Both forward everything else unchanged, including ``Authorization`` and the ``Host``
header (so absolute URLs the registry builds point back at the front), and record
every request in ``requests``.

Invariants:
* They bind loopback only; ``close`` releases hanging handlers and endless bodies,
  so teardown never waits on a scripted fault.
* A huge body is generated chunk by chunk, never held in memory.
* Faults are consumed in the order they were scripted, each by the first request
  that matches it; requests no fault matches are proxied.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, Self
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tests.fakes.registry import LoopbackApp, RegistryProcess

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_TAGS_LIST = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FrontRequest:
    """One request a front received: method, path with query, and all headers."""

    method: str
    path_qs: str
    headers: Mapping[str, str]

    @property
    def path(self) -> str:
        """The path without the query."""
        return self.path_qs.partition("?")[0]

    @property
    def authorization(self) -> str | None:
        """The Authorization header, if one arrived."""
        return next((v for k, v in self.headers.items() if k.lower() == "authorization"), None)


class HasURL(Protocol):
    """Anything serving HTTP at a base URL (a front, a token server, a registry)."""

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        ...


class _Front:
    """A recording reverse proxy to one registry."""

    def __init__(
        self, upstream: RegistryProcess, *, bind: str = "127.0.0.1", advertise: str | None = None
    ) -> None:
        self.upstream = upstream
        self.requests: list[FrontRequest] = []
        self._advertise = advertise
        self._closing = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._entry)
        self._server = LoopbackApp(app, bind=bind)

    @property
    def host(self) -> str:
        """``IP:PORT`` (or ``advertise:PORT``) as clients use it in image references."""
        if self._advertise is not None:
            return f"{self._advertise}:{self._server.port}"
        return self._server.host

    @property
    def url(self) -> str:
        """``http://HOST``; fronts serve plain http even before a TLS registry."""
        return f"http://{self.host}"

    def ref(self, repo: str) -> str:
        """The image reference ``HOST/repo`` through this front."""
        return f"{self.host}/{repo}"

    async def start(self) -> None:
        """Open the upstream session and start serving."""
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
        )
        await self._server.start()

    async def close(self) -> None:
        """Release scripted hangs and streams, stop serving, close the upstream session."""
        self._closing.set()
        await self._server.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            FrontRequest(request.method, request.path_qs, dict(request.headers.items()))
        )
        return await self._handle(request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request)

    async def _upstream(self, request: web.Request, path_qs: str) -> _Upstream:
        """Send ``request`` (with ``path_qs``) upstream and read the whole answer."""
        assert self._session is not None, "start() the front first"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream.base_url + path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            ssl=self.upstream.ssl_context() or True,
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
            return _Upstream(resp.status, out, data, resp.content_length)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        up = await self._upstream(request, request.path_qs)
        if request.method == "HEAD":
            # A HEAD answer has no body but keeps the length of the one it describes.
            resp = web.StreamResponse(status=up.status, headers=up.headers)
            if up.length is not None:
                resp.content_length = up.length
            await resp.prepare(request)
            return resp
        return web.Response(status=up.status, headers=up.headers, body=up.body)


@dataclass(frozen=True, slots=True)
class _Upstream:
    status: int
    headers: dict[str, str]
    body: bytes
    length: int | None


class PaginatingFront(_Front):
    """A front that pages ``GET /v2/<name>/tags/list`` from the registry's full list.

    Tags are sorted, ``last`` skips up to and including that tag, ``n`` caps the page and
    a ``Link`` header names the next page while tags remain. Without ``n`` the page is
    ``default_page_size`` long, or the whole list if that is None. ``n`` above
    ``max_page_size`` answers 400 with ``reject_code``; ``link_loop`` makes every page
    link back to the first one.
    """

    def __init__(
        self,
        upstream: RegistryProcess,
        *,
        max_page_size: int | None = None,
        default_page_size: int | None = None,
        reject_code: str = "PAGINATION_NUMBER_INVALID",
        link_loop: bool = False,
        absolute_links: bool = False,
        bind: str = "127.0.0.1",
    ) -> None:
        super().__init__(upstream, bind=bind)
        self.max_page_size = max_page_size
        self.default_page_size = default_page_size
        self.reject_code = reject_code
        self.link_loop = link_loop
        self.absolute_links = absolute_links

    @property
    def tag_list_requests(self) -> list[FrontRequest]:
        """The ``tags/list`` requests received, in order."""
        return [r for r in self.requests if _TAGS_LIST.match(r.path)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = _TAGS_LIST.match(request.path)
        if request.method != "GET" or match is None:
            return await self._proxy(request)
        name = match["name"]
        size = self.default_page_size
        raw_n = request.query.get("n")
        if raw_n is not None:
            if not raw_n.isdigit():
                return _registry_error(
                    400, "PAGINATION_NUMBER_INVALID", "invalid number of results"
                )
            size = int(raw_n)
            if self.max_page_size is not None and size > self.max_page_size:
                return _registry_error(
                    400, self.reject_code, f"page size {size} above {self.max_page_size}"
                )
        up = await self._upstream(request, f"/v2/{name}/tags/list")
        if up.status != 200:
            return web.Response(status=up.status, headers=up.headers, body=up.body)
        tags = sorted(json.loads(up.body).get("tags") or [])
        last = request.query.get("last")
        if last is not None:
            tags = [t for t in tags if t > last]
        page = tags if size is None else tags[:size]
        out = web.json_response({"name": name, "tags": page})
        if self.link_loop:
            out.headers["Link"] = self._link(name, size, None)
        elif size is not None and len(tags) > size and page:
            out.headers["Link"] = self._link(name, size, page[-1])
        return out

    def _link(self, name: str, size: int | None, last: str | None) -> str:
        params = [] if size is None else [f"n={size}"]
        if last is not None:
            params.append(f"last={quote(last, safe='')}")
        target = f"/v2/{name}/tags/list" + (f"?{'&'.join(params)}" if params else "")
        if self.absolute_links:
            target = self.url + target
        return f'<{target}>; rel="next"'


@dataclass(slots=True)
class _Fault:
    kind: str
    remaining: int
    path: re.Pattern[str] | None
    method: str | None
    options: dict[str, object] = field(default_factory=dict)

    def matches(self, request: web.Request) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        return self.path is None or self.path.search(request.path) is not None


class FaultFront(_Front):
    """A front that misbehaves as scripted for the next matching requests.

    Every ``*_next`` method takes ``n`` (how many requests), ``path`` (a regex searched in
    the request path, None for any) and ``method`` (None for any). Use ``bind`` (another
    127.x address) or ``advertise`` (a name such as ``localhost``) to make a second front
    a different host from the client's view, e.g. as a redirect target.
    """

    def __init__(
        self, upstream: RegistryProcess, *, bind: str = "127.0.0.1", advertise: str | None = None
    ) -> None:
        super().__init__(upstream, bind=bind, advertise=advertise)
        self._faults: list[_Fault] = []
        self.huge_bytes_sent = 0
        """Bytes of huge bodies written so far (shows a client stopped reading early)."""

    @property
    def pending(self) -> int:
        """How many scripted faulty answers are still to be given."""
        return sum(f.remaining for f in self._faults)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 429,
        retry_after: str | None = None,
        code: str | None = None,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer ``status`` with a registry error body (and ``Retry-After`` if given)."""
        default = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
        self._add(
            "fail", n, path, method, status=status, retry_after=retry_after, code=code or default
        )

    def heal(self) -> None:
        """Drop every scripted fault still pending: from now on the front only proxies."""
        self._faults.clear()

    def hang_next(self, n: int = 1, *, path: str | None = None, method: str | None = None) -> None:
        """Accept the request and never answer (until the front closes)."""
        self._add("hang", n, path, method)

    def truncate_next(
        self, n: int = 1, *, path: str | None = None, method: str | None = None
    ) -> None:
        """Proxy, but announce the full length, send half the body and drop the connection."""
        self._add("truncate", n, path, method)

    def garbage_next(
        self,
        n: int = 1,
        *,
        body: bytes = b"<html><body>upstream proxy error</body></html>",
        content_type: str = "application/json",
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer 200 with a body that is not JSON (labelled as ``content_type``)."""
        self._add("garbage", n, path, method, body=body, content_type=content_type)

    def huge_body_next(
        self,
        n: int = 1,
        *,
        size: int = 1 << 30,
        chunked: bool = False,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer 200 with a ``size``-byte JSON-looking body, streamed lazily.

        With ``chunked`` no Content-Length is sent, so only the reader can bound it.
        """
        self._add("huge", n, path, method, size=size, chunked=chunked)

    def redirect_next(
        self,
        n: int = 1,
        *,
        to: HasURL | str,
        status: int = 307,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Redirect to the same path and query on ``to`` (a server or a base URL)."""
        base = to if isinstance(to, str) else to.url
        self._add("redirect", n, path, method, base=base.rstrip("/"), status=status)

    def _add(
        self, kind: str, n: int, path: str | None, method: str | None, **options: object
    ) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        pattern = re.compile(path) if path is not None else None
        self._faults.append(_Fault(kind, n, pattern, method, dict(options)))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = next((f for f in self._faults if f.matches(request)), None)
        if fault is None:
            return await self._proxy(request)
        fault.remaining -= 1
        opts = fault.options
        if fault.kind == "fail":
            headers = {}
            if opts["retry_after"] is not None:
                headers["Retry-After"] = str(opts["retry_after"])
            return _registry_error(
                int(str(opts["status"])), str(opts["code"]), "scripted fault", headers=headers
            )
        if fault.kind == "hang":
            await self._closing.wait()
            raise web.HTTPServiceUnavailable
        if fault.kind == "truncate":
            return await self._truncated(request)
        if fault.kind == "garbage":
            body = opts["body"]
            assert isinstance(body, bytes)
            return web.Response(
                status=200, body=body, headers={"Content-Type": str(opts["content_type"])}
            )
        if fault.kind == "huge":
            size = opts["size"]
            assert isinstance(size, int)
            return await self._huge(request, size=size, chunked=bool(opts["chunked"]))
        if fault.kind == "redirect":
            return web.Response(
                status=int(str(opts["status"])),
                headers={"Location": f"{opts['base']}{request.path_qs}"},
            )
        raise AssertionError(f"unknown fault {fault.kind}")

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        up = await self._upstream(request, request.path_qs)
        body = up.body
        resp = web.StreamResponse(status=up.status, headers=up.headers)
        resp.content_length = len(body)
        # Closing after the handler makes the client see EOF before Content-Length.
        resp.force_close()
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        return resp

    async def _huge(self, request: web.Request, *, size: int, chunked: bool) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = size
        resp.force_close()
        await resp.prepare(request)
        head = b'{"name":"huge","tags":["'
        filler = b"a" * _CHUNK
        sent = 0
        try:
            await resp.write(head)
            sent = len(head)
            # Bounded by size / chunk; stops early when the client goes away or we close.
            while sent < size and not self._closing.is_set():
                piece = filler[: min(_CHUNK, size - sent)]
                await resp.write(piece)
                sent += len(piece)
                self.huge_bytes_sent += len(piece)
        except ConnectionError:
            return resp
        return resp


def _registry_error(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return web.json_response(body, status=status, headers=dict(headers or {}))
