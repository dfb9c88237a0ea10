"""A recording, fault-injecting HTTP proxy in front of the real kube-apiserver.

Role: the controller under test talks plain http to this proxy on 127.0.0.1 with its
ServiceAccount's bearer token; the proxy forwards every request to the real API server
over https and answers with what the API server said. On the way it records each call
as the API server's RequestInfo sees it (verb, resource, namespace, name, subresource)
and, when a test asks, injects the faults a real server cannot produce on cue: error
statuses with a ``Status`` body, watch streams cut between events or inside one, a 410
``Expired`` ERROR event on a watch, held requests, and the whole endpoint going away.

Invariants:

* Listens on 127.0.0.1 only. Upstream is reached over TLS that trusts only the test
  cluster's CA; the client's ``Authorization`` header is passed through untouched and
  the proxy adds no credential of its own (no client certificate), so who the caller
  is and what RBAC allows it is the real API server's verdict, never the proxy's.
* Every request is recorded on arrival, before holds and faults, so a test can count
  calls and derive the RBAC verbs used; the HTTP status it was answered with is filled
  in when known (``None`` while a request is held or in flight).
* Watch responses are streamed event by event: a line is written to the client only once
  it has fully arrived from upstream, so a cut between events never splits one. Only
  :meth:`KubeProxy.cut_watches_mid_event` sends half a line.
* Faults are consumed in registration order, each by the first request it matches;
  nothing is injected unless a test asked for it.
* No proxy environment variable is honoured (``trust_env=False``): the upstream is on
  loopback and must be reached directly.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import aiohttp
import yaml
from aiohttp import web
from yarl import URL

JSON = dict[str, Any]

# Never forwarded in either direction: they describe one hop, not the message.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    # Asked of upstream without compression, so watch lines can be split as they arrive.
    "accept-encoding", "content-encoding",
})
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
# Path segments after /namespaces/NAME that are subresources of the Namespace itself.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}
_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted",
}

CutMode = Literal["between", "mid-event", "graceful"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request addresses, derived as the API server's RequestInfoFactory does."""

    verb: str
    """get, list, watch, create, update, patch, delete, deletecollection; for paths that
    name no resource (discovery, ``/livez``) the lower-cased method."""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Parse ``path`` like the API server: ``/api/v1/...`` or ``/apis/G/V/...``."""
    parts = [unquote(p) for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(method.lower())
    if not rest:  # a discovery document
        return RequestInfo(method.lower(), group, version)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if method == "GET":
        watch = query.get("watch", "").lower() in ("1", "true")
        verb = "watch" if watch else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _METHOD_VERBS.get(method, method.lower())
    return RequestInfo(verb, group, version, resource, subresource, namespace, name)


@dataclass(slots=True)
class Call:
    """One request the proxy received."""

    method: str
    path: str
    query: dict[str, str]
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    group: str = ""
    authorization: bool = False
    """Whether the request carried an Authorization header (its value is not kept)."""
    status: int | None = None
    """The HTTP status it was answered with; None while held or in flight, or when the
    connection was dropped instead of answered."""
    injected: bool = False
    """Whether the answer was a fault of this proxy rather than the API server's."""


@dataclass(slots=True)
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    count: int
    retry_after: int | None


@dataclass(slots=True)
class _Gone:
    pattern: re.Pattern[str]
    count: int


@dataclass(slots=True, eq=False)
class _Watch:
    request: web.Request
    response: web.StreamResponse
    upstream: aiohttp.ClientResponse
    cut: CutMode | None = None
    cutter: asyncio.Task[None] | None = None


def status_body(code: int, message: str, *, reason: str | None = None) -> JSON:
    """A ``Status`` object as the API server sends with a failure."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or _REASONS.get(code, "Unknown"),
            "code": code}


class KubeProxy:
    """The proxy: ``await start()``, hand :attr:`url` to clients, ``await close()``."""

    def __init__(self, upstream: str, ca_file: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._calls: builtins.list[Call] = []
        self._arrivals = asyncio.Condition()
        self._faults: builtins.list[_Fault] = []
        self._gone: builtins.list[_Gone] = []
        self._watches: set[_Watch] = set()
        self._running = asyncio.Event()
        self._running.set()
        self._down = False
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free 127.0.0.1 port."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
            auto_decompress=False, trust_env=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation ends a watch's handler (and its upstream stream) as soon
        # as the client goes away.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        # Binding ourselves learns the port chosen for 0, and come_up() reuses it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    async def close(self) -> None:
        """End every stream and connection and stop listening; idempotent."""
        self.resume()
        for watch in list(self._watches):
            _abort(watch.request)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def write_kubeconfig(self, path: Path, token: str, *, namespace: str = "default") -> Path:
        """A kubeconfig (mode 0600) for this proxy: plain http and ``token``."""
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {"token": token}}],
            "contexts": [{"name": "proxy", "context": {
                "cluster": "proxy", "user": "proxy", "namespace": namespace}}],
            "current-context": "proxy",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config))
        return path

    # --- records --------------------------------------------------------------------------

    def calls(self, *, verb: str | None = None, resource: str | None = None,
              subresource: str | None = None, namespace: str | None = None,
              name: str | None = None, status: int | None = None) -> builtins.list[Call]:
        """Recorded calls matching every filter given, in arrival order."""
        return [
            c for c in self._calls
            if (verb is None or c.verb == verb) and (resource is None or c.resource == resource)
            and (subresource is None or c.subresource == subresource)
            and (namespace is None or c.namespace == namespace)
            and (name is None or c.name == name) and (status is None or c.status == status)
        ]

    async def wait_for_calls(self, count: int = 1, *, verb: str | None = None,
                             resource: str | None = None, subresource: str | None = None,
                             namespace: str | None = None, name: str | None = None,
                             status: int | None = None) -> builtins.list[Call]:
        """Wait until at least ``count`` matching calls were recorded; return them all.

        With ``status`` a call counts once it was answered with that status. Callers
        bound the wait themselves.
        """
        filters: dict[str, Any] = {"verb": verb, "resource": resource,
                                   "subresource": subresource, "namespace": namespace,
                                   "name": name, "status": status}
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.calls(**filters)) >= count)
        return self.calls(**filters)

    async def _notify(self) -> None:
        async with self._arrivals:
            self._arrivals.notify_all()

    @property
    def open_watches(self) -> int:
        """Watch streams open right now (upstream answered, client still connected)."""
        return len(self._watches)

    async def wait_for_watches(self, count: int) -> None:
        """Wait until exactly ``count`` watch streams are open."""
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self._watches) == count)

    # --- faults ---------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int, count: int = 1,
                  retry_after: int | None = None) -> None:
        """Answer the next ``count`` matching requests with ``status`` and a Status body.

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched in the path
        plus query string (``/apis/...?watch=true``), so watches can be told from lists.
        A 409 says what the API server says for a stale resourceVersion.
        """
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, count,
                                   retry_after))

    def gone_next_watch(self, path_regex: str = "", count: int = 1) -> None:
        """Answer the next ``count`` watches matching ``path_regex`` (searched in path and
        query) as the API server does for a resourceVersion older than its history: a
        200 stream carrying one ERROR event with a 410 ``Expired`` Status, then its end."""
        self._gone.append(_Gone(re.compile(path_regex), count))

    def cut_watches(self, *, graceful: bool = False) -> int:
        """Drop every open watch connection between two events (or, ``graceful``, end
        the streams cleanly); returns how many."""
        loop = asyncio.get_running_loop()
        for watch in self._watches:
            watch.cut = "graceful" if graceful else "between"
            if watch.cutter is None:
                watch.cutter = loop.create_task(_cut(watch), name="kubeproxy-cut")
        return len(self._watches)

    def cut_watches_mid_event(self) -> int:
        """Drop every open watch halfway through the JSON line of its next event (a proxy
        or API server dying while writing); returns how many watches will be cut."""
        for watch in self._watches:
            watch.cut = "mid-event"
        return len(self._watches)

    def pause(self) -> None:
        """Hold new requests unanswered (recorded, not forwarded) until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        """Forward held and new requests again."""
        self._running.set()

    async def go_down(self) -> None:
        """Stop listening and drop every connection: clients get connection errors
        (refused) until :meth:`come_up`."""
        self._down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        for watch in list(self._watches):
            _abort(watch.request)
        assert self._runner is not None
        if self._runner.server is not None:
            for conn in self._runner.server.connections:
                if conn.transport is not None:
                    conn.transport.abort()

    async def come_up(self) -> None:
        """Listen again on the same port."""
        self._down = False
        if self._site is None:
            await self._listen()

    def _take_fault(self, request: web.Request) -> _Fault | None:
        for fault in self._faults:
            if fault.method in ("*", request.method) and fault.pattern.search(request.path_qs):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _take_gone(self, request: web.Request) -> bool:
        for gone in self._gone:
            if gone.pattern.search(request.path_qs):
                gone.count -= 1
                if gone.count <= 0:
                    self._gone.remove(gone)
                return True
        return False

    # --- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        info = request_info(request.method, request.path, query)
        call = Call(request.method, request.path, query, info.verb, info.resource,
                    info.subresource, info.namespace, info.name, info.group,
                    "Authorization" in request.headers)
        self._calls.append(call)
        await self._notify()
        await self._running.wait()
        if self._down:
            # A keep-alive connection that outlived go_down(): reset it like a dead server.
            _abort(request)
            return web.Response(status=503)
        fault = self._take_fault(request)
        if fault is not None:
            call.injected = True
            return await self._answered(call, self._fault_response(fault, info))
        if info.verb == "watch" and self._take_gone(request):
            call.injected = True
            return await self._answered(call, await self._gone_stream(request))
        assert self._session is not None
        url = URL(self.upstream + request.raw_path, encoded=True)
        headers = _forwarded(request.headers)
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self._session.request(request.method, url, headers=headers,
                                                   data=body)
        except aiohttp.ClientError as err:
            return await self._answered(call, web.json_response(
                status_body(503, f"proxy: upstream unreachable: {err}"), status=503))
        if info.verb == "watch" and upstream.status == 200:
            call.status = upstream.status
            await self._notify()
            try:
                return await self._stream(request, upstream)
            finally:
                upstream.close()  # a stream cut short cannot be reused
        try:
            data = await upstream.read()
        finally:
            upstream.release()
        return await self._answered(call, web.Response(
            status=upstream.status, body=data, headers=_forwarded(upstream.headers)))

    async def _answered(self, call: Call, response: web.StreamResponse) -> web.StreamResponse:
        call.status = response.status
        await self._notify()
        return response

    @staticmethod
    def _fault_response(fault: _Fault, info: RequestInfo) -> web.Response:
        message = _MESSAGES.get(fault.status, f"injected fault {fault.status}")
        if fault.status == 409:
            qualified = f"{info.resource}.{info.group}" if info.group else info.resource
            message = (f'Operation cannot be fulfilled on {qualified} "{info.name}": the '
                       "object has been modified; please apply your changes to the latest "
                       "version and try again")
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
        return web.json_response(status_body(fault.status, message), status=fault.status,
                                 headers=headers)

    async def _gone_stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        version = request.query.get("resourceVersion", "0")
        event = {"type": "ERROR", "object": status_body(
            410, f"too old resource version: {version} ({version}1)", reason="Expired")}
        await resp.write(_line(event))
        await resp.write_eof()
        return resp

    async def _stream(self, request: web.Request,
                      upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        resp = web.StreamResponse(status=upstream.status, headers=_forwarded(upstream.headers))
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        watch = _Watch(request, resp, upstream)
        self._watches.add(watch)
        await self._notify()
        try:
            if await self._pump(watch, upstream.content):
                await resp.write_eof()
        finally:
            self._watches.discard(watch)
            await self._notify()
        return resp

    async def _pump(self, watch: _Watch, content: aiohttp.StreamReader) -> bool:
        """Copy whole lines from upstream until it ends (True: end the stream cleanly)
        or a cut drops the connection (False). A cut of an idle stream is done by
        ``_cut`` (the abort cancels this handler); one that lands while lines are in
        flight is honoured here, before anything that arrived after it is written."""
        pending = b""
        while True:
            try:
                chunk = await content.readany()  # b"": upstream ended the watch
            except aiohttp.ClientError:
                if watch.cut == "graceful":
                    return True  # _cut closed upstream to end this stream cleanly
                _abort(watch.request)  # upstream broke the stream: break it downstream too
                return False
            if watch.cut in ("between", "graceful"):
                return await _cut_now(watch)
            if not chunk:
                return True
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                line += b"\n"
                if watch.cut == "mid-event":
                    await watch.response.write(line[: len(line) // 2])
                    await _flushed(watch.request)
                    _abort(watch.request)
                    return False
                await watch.response.write(line)
                if watch.cut in ("between", "graceful"):
                    return await _cut_now(watch)


async def _cut_now(watch: _Watch) -> bool:
    """Carry out a between-events or graceful cut from the pump (True: end cleanly)."""
    if watch.cut == "graceful":
        return True
    await _flushed(watch.request)
    _abort(watch.request)
    return False


async def _cut(watch: _Watch) -> None:
    """Carry out a cut of a stream that may be idle: its pump is blocked reading upstream."""
    if watch.cut == "graceful":
        watch.upstream.close()  # the pump's read fails and it ends the stream cleanly
        return
    await _flushed(watch.request)  # the last whole line leaves before the connection goes
    _abort(watch.request)


async def _flushed(request: web.Request) -> None:
    """Wait until the transport handed everything written to the kernel, so an abort
    cannot discard part of a line (the kernel still sends what it holds)."""
    transport = request.transport
    # An asyncio transport signals "buffer empty" to nobody (only resume_writing after a
    # pause); on loopback the buffer is empty at once or within a millisecond or two.
    while transport is not None and not transport.is_closing() \
            and transport.get_write_buffer_size() > 0:  # noqa: ASYNC110
        await asyncio.sleep(0.001)


def _forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}


def _line(event: JSON) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _abort(request: web.Request) -> None:
    """Drop the connection without the final chunk: the client sees a broken stream."""
    if request.transport is not None:
        request.transport.abort()


@contextlib.asynccontextmanager
async def running_proxy(upstream: str, ca_file: Path) -> AsyncIterator[KubeProxy]:
    """A started :class:`KubeProxy` in front of ``upstream``, closed afterwards."""
    proxy = KubeProxy(upstream, ca_file)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
