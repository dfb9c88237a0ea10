"""A fake Kubernetes API server for tests: real REST over HTTP on 127.0.0.1.

An aiohttp server speaking the Kubernetes REST API well enough for kubernetes_asyncio
(typed APIs and ``watch.Watch``), this project's client and ``kubectl``. The controller's
tests run on the real kube-apiserver (``tests/controllers/realharness.py``); this fake
remains for what a real server cannot do on cue, such as storing objects its validation
would refuse or sending bookmarks every few milliseconds (the list, with reasons, is in
``docs/architecture.md``, "Tests"). Semantics live in
``kubeapi_store`` (the one code path for HTTP and the Python-side helpers); this module is
the HTTP front, fault injection and request recording.

Served: core v1 namespaces, secrets, serviceaccounts, configmaps, events;
events.k8s.io/v1 events (stored apart from core events, no conversion);
coordination.k8s.io/v1 leases; apiextensions.k8s.io/v1 customresourcedefinitions (a
created CRD serves its kinds at once and is Established); image.toolkit.fluxcd.io
v1beta2 (and v1beta1) imagerepositories and imagepolicies from the start, with ``/status``.
Namespaces default, kube-system, kube-public and kube-node-lease exist at start.

Where it knowingly differs from a real server:
* No schema validation, defaulting or pruning for custom resources; no admission, RBAC,
  managedFields, server-side apply, ``dryRun`` (400), ``deletecollection`` (405), or
  garbage collection (``propagationPolicy`` is ignored). Strategic merge patches on
  built-in kinds are applied as JSON merge patches (lists replaced, not merged by key);
  on custom resources they are rejected with 415, as the real server does.
* ``limit``/``continue`` page over the current state, not a snapshot.
* Deleting a CRD removes its instances at once, finalizers or not.
* ``pause`` holds new requests; open watch streams keep flowing.
* JSON (and YAML) bodies only: protobuf bodies get 415, so kubectl's typed generators
  (``kubectl create namespace X``, ``create secret ...``) fail; use ``create -f``.
* No OpenAPI documents (``/openapi/v2``, ``/openapi/v3`` are 404): ``kubectl get``,
  ``annotate``, ``label``, ``patch``, ``delete --wait=false`` and ``create``/``apply
  --validate=false -f`` work; without ``--validate=false`` they fail downloading OpenAPI.
  Use ``--cache-dir`` per test so kubectl's discovery cache cannot go stale across ports.

Invariants:
* Every request is recorded in :attr:`FakeKubeAPI.requests` on arrival, before faults,
  pauses or authentication, so tests can count calls and derive the RBAC verbs used.
  Python-side helpers are not requests and are not recorded.
* With ``token=...`` requests need ``Authorization: Bearer <token>`` (401 otherwise). The
  default is no authentication, because kubectl never sends a bearer token over plain
  http; whether a request carried an Authorization header is recorded either way.
* Binds only 127.0.0.1; :meth:`FakeKubeAPI.close` ends every stream and connection.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.fakes.kubeapi_match import parse_field_selector, parse_label_selector
from tests.fakes.kubeapi_routes import (
    FAKE_VERSION,
    RequestInfo,
    discovery,
    parse_request,
    truthy,
)
from tests.fakes.kubeapi_store import PATCH_TYPES, Store
from tests.fakes.kubeapi_types import (
    JSON,
    STALE_OBJECT,
    ApiStatusError,
    ResourceType,
    bad_request,
    no_such_resource,
    reason_for,
)
from tests.fakes.kubeapi_watch import Watcher

__all__ = ["ApiStatusError", "FakeKubeAPI", "RequestRecord", "running_kubeapi"]

FAKE_TOKEN = "fake-kube-token"
"""The bearer token the fake expects and :meth:`FakeKubeAPI.write_kubeconfig` writes."""

_FAULT_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted",
}
_INFO = web.RequestKey("info", RequestInfo)
_FLOW_SCHEMA_UID = "6a0f2c6e-8d1b-4f0e-9d4c-fake-flowschema"
_PRIORITY_LEVEL_UID = "0b9e3a41-5c7d-4e2a-8f61-fake-prioritylevel"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake received, as the apiserver's RequestInfo sees it."""

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


@dataclass(slots=True)
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    count: int
    retry_after: int | None


def _status_response(err: ApiStatusError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return web.json_response(err.status(), status=err.code, headers=headers)


class FakeKubeAPI:
    """The fake API server. ``await start()``, use :attr:`url`, ``await close()``."""

    def __init__(self, *, token: str | None = None, bookmark_interval: float = 60.0,
                 history_limit: int = 1000, flux_types: bool = True,
                 priority_and_fairness: bool = True) -> None:
        self.store = Store(history_limit=history_limit, flux_types=flux_types)
        """The state; its methods are the same code path HTTP requests take."""
        self.requests: builtins.list[RequestRecord] = []
        """Every request received, in arrival order."""
        self.bookmark_interval = bookmark_interval
        """Seconds between BOOKMARK events on watches that allow them."""
        self._token = token
        # Like a real API server (1.20+), answer with the Priority and Fairness headers.
        self.priority_and_fairness = priority_and_fairness
        self._faults: builtins.list[_Fault] = []
        self._arrivals = asyncio.Condition()
        self._running = asyncio.Event()
        self._running.set()
        self._resume_handle: asyncio.TimerHandle | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._port = 0
        self._down = False
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free 127.0.0.1 port."""
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation ends a watch handler as soon as its client goes away.
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
        """End every watch and connection and stop listening; idempotent."""
        self.resume()
        self.store.stop_watchers("end")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def set_token(self, token: str) -> None:
        """Accept only ``token`` from now on, as when an issued token has expired."""
        self._token = token

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (plain http, bearer token) and return its path."""
        user: JSON = {"token": self._token or FAKE_TOKEN}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                      "namespace": namespace}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- fault injection ------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int, count: int = 1,
                  retry_after: int | None = None) -> None:
        """Answer the next ``count`` matching requests with ``status`` and a Status body.

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched in the path
        plus query string (``/apis/...?watch=true``), so watches can be told from lists.
        """
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, count,
                                   retry_after))

    def cut_watches(self, *, graceful: bool = False) -> int:
        """Drop every open watch connection mid-stream (or end them cleanly); returns how many."""
        return self.store.stop_watchers("end" if graceful else "abort")

    def cut_watches_mid_event(self) -> int:
        """Drop every open watch halfway through the JSON line of its next event (a proxy
        or API server dying while writing); returns how many watches will be cut."""
        return self.store.stop_watchers("mid-event")

    def pause(self, seconds: float | None = None) -> None:
        """Hold new requests unanswered until :meth:`resume` (or ``seconds`` pass)."""
        self._running.clear()
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        if seconds is not None:
            self._resume_handle = asyncio.get_running_loop().call_later(seconds, self.resume)

    def resume(self) -> None:
        """Answer held and new requests again."""
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        self._running.set()

    async def go_down(self) -> None:
        """Stop listening and drop every connection: clients get connection errors."""
        self._down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self.store.stop_watchers("abort")
        assert self._runner is not None
        assert self._runner.server is not None
        for conn in self._runner.server.connections:
            if conn.transport is not None:
                conn.transport.abort()

    async def come_up(self) -> None:
        """Listen again on the same port."""
        self._down = False
        if self._site is None:
            await self._listen()

    # --- Python-side helpers --------------------------------------------------------------

    def compact(self) -> None:
        """Forget watch history: a watch from any earlier resourceVersion gets 410."""
        self.store.compact()

    @property
    def open_watches(self) -> int:
        """Watch streams open right now."""
        return self.store.watcher_count

    def create(self, obj: JSON) -> JSON:
        """Create ``obj`` (kind from its apiVersion/kind; namespace defaults to "default")."""
        rt = self.store.for_object(obj)
        namespace = obj.get("metadata", {}).get("namespace") or "default"
        return self.store.create(rt, namespace if rt.namespaced else None, obj)

    def get(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        """The object (``resource`` is a plural or ``plural.group``), or None."""
        rt = self.store.resolve(resource)
        try:
            return self.store.get(rt, namespace, name)
        except ApiStatusError as err:
            if err.code == 404:
                return None
            raise

    def list(self, resource: str, namespace: str | None = None, *,
             label_selector: str | None = None,
             field_selector: str | None = None) -> builtins.list[JSON]:
        """Matching objects, each with apiVersion and kind."""
        rt = self.store.resolve(resource)
        listed = self.store.list(
            rt, namespace, labels=parse_label_selector(label_selector),
            fields=parse_field_selector(field_selector, rt.field_labels()))
        return [{"apiVersion": rt.api_version, "kind": rt.kind, **item}
                for item in listed["items"]]

    def update(self, obj: JSON, *, subresource: str | None = None) -> JSON:
        """PUT ``obj`` (its resourceVersion, if any, is a precondition)."""
        rt = self.store.for_object(obj)
        meta = obj.get("metadata", {})
        return self.store.update(rt, meta.get("namespace"), meta["name"], obj,
                                 subresource=subresource)

    def patch(self, resource: str, namespace: str | None, name: str, patch: object, *,
              patch_type: str = "merge", subresource: str | None = None) -> JSON:
        """PATCH with ``patch_type`` ``merge``, ``json`` or ``strategic``."""
        content_type = next(c for c, t in PATCH_TYPES.items() if t == patch_type)
        return self.store.patch(self.store.resolve(resource), namespace, name, patch,
                                content_type, subresource=subresource)

    def patch_status(self, resource: str, namespace: str | None, name: str,
                     status: JSON) -> JSON:
        """Merge-patch ``status`` through the ``/status`` subresource."""
        return self.patch(resource, namespace, name, {"status": status}, subresource="status")

    def delete(self, resource: str, namespace: str | None, name: str) -> JSON:
        """DELETE; raises :class:`ApiStatusError` (404) when absent."""
        return self.store.delete(self.store.resolve(resource), namespace, name)

    def calls(self, *, verb: str | None = None, resource: str | None = None,
              subresource: str | None = None,
              namespace: str | None = None) -> builtins.list[RequestRecord]:
        """Recorded requests matching every filter given."""
        return [
            r for r in self.requests
            if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
            and (subresource is None or r.subresource == subresource)
            and (namespace is None or r.namespace == namespace)
        ]

    async def wait_for_calls(self, count: int = 1, *, verb: str | None = None,
                             resource: str | None = None, subresource: str | None = None,
                             namespace: str | None = None) -> builtins.list[RequestRecord]:
        """Wait until at least ``count`` matching requests have arrived; return them all.

        Arrival is recorded before pauses and faults apply, so this also tells a test that
        a held request is being held. Callers bound the wait themselves if they need to.
        """
        filters = {"verb": verb, "resource": resource, "subresource": subresource,
                   "namespace": namespace}
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.calls(**filters)) >= count)
        return self.calls(**filters)

    # --- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        query = dict(request.query)
        info = parse_request(request.method, request.path, query, self.store)
        request[_INFO] = info
        self.requests.append(RequestRecord(
            request.method, request.path, query, info.verb, info.resource, info.subresource,
            info.namespace, info.name, info.group, "Authorization" in request.headers))
        async with self._arrivals:
            self._arrivals.notify_all()
        await self._running.wait()
        if self._down:
            # A keep-alive connection that outlived go_down(): reset it like a dead server.
            _abort(request)
            return web.Response(status=503)
        fault = self._take_fault(request)
        if fault is not None:
            return _status_response(self._fault_error(fault, info))
        if self._token is not None and request.headers.get("Authorization") != (
                f"Bearer {self._token}"):
            return _status_response(ApiStatusError(401, "Unauthorized", "Unauthorized"))
        try:
            response = await handler(request)
        except ApiStatusError as err:
            response = _status_response(err)
        if self.priority_and_fairness and not response.prepared:
            response.headers["X-Kubernetes-PF-FlowSchema-UID"] = _FLOW_SCHEMA_UID
            response.headers["X-Kubernetes-PF-PriorityLevel-UID"] = _PRIORITY_LEVEL_UID
        return response

    def _take_fault(self, request: web.Request) -> _Fault | None:
        for fault in self._faults:
            if fault.method in ("*", request.method) and fault.pattern.search(request.path_qs):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_error(fault: _Fault, info: RequestInfo) -> ApiStatusError:
        message = _FAULT_MESSAGES.get(fault.status, f"injected fault {fault.status}")
        if fault.status == 409 and info.rt is not None:
            message = (f'Operation cannot be fulfilled on {info.rt.qualified} "{info.name}": '
                       f"{STALE_OBJECT}")
        return ApiStatusError(fault.status, reason_for(fault.status), message,
                              retry_after=fault.retry_after)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        info = request[_INFO]
        if not info.resource_request or not info.resource:
            return self._non_resource(request)
        rt = info.rt
        if rt is None or (info.subresource and not (
                info.subresource == "status" and rt.status_subresource)):
            raise no_such_resource()
        if truthy(request.query.get("dryRun")) or request.query.get("dryRun") == "All":
            raise bad_request("dryRun is not supported by this fake API server")
        namespace = info.namespace or None
        sub = info.subresource or None
        if info.verb == "watch":
            return await self._watch(request, rt, namespace)
        if info.verb == "list":
            return web.json_response(self._list(request, rt, namespace))
        if info.verb == "get":
            return web.json_response(self.store.get(rt, namespace, info.name))
        if info.verb == "create" and not info.name and (namespace or not rt.namespaced):
            return web.json_response(
                self.store.create(rt, namespace, await self._body(request)), status=201)
        if info.verb == "update" and info.name:
            return web.json_response(self.store.update(
                rt, namespace, info.name, await self._body(request), subresource=sub))
        if info.verb == "patch" and info.name:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            return web.json_response(self.store.patch(
                rt, namespace, info.name, await self._body(request), content_type,
                subresource=sub))
        if info.verb == "delete" and not sub:
            options = await self._body(request) if request.can_read_body else {}
            return web.json_response(self.store.delete(rt, namespace, info.name, options))
        raise ApiStatusError(405, "MethodNotAllowed",
                             f"the server does not allow this method on the requested resource "
                             f"({info.verb} {rt.qualified})")

    def _non_resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path in ("/healthz", "/livez", "/readyz", "/livez/ping"):
            return web.Response(text="ok")
        doc = FAKE_VERSION if path == "/version" else discovery(
            self.store, path, f"127.0.0.1:{self._port}")
        if doc is None:
            return web.Response(status=404, text="404 page not found\n")
        return web.json_response(doc)

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0]
        if content_type in ("application/yaml", "application/apply-patch+yaml"):
            loader: Callable[[bytes], Any] = yaml.safe_load
        elif content_type == "application/json" or content_type in PATCH_TYPES:
            loader = json.loads
        else:
            # Protobuf (what kubectl's typed create commands send) is not implemented.
            raise ApiStatusError(
                415, "UnsupportedMediaType", "the body of the request was in an unknown format "
                "- accepted media types include: application/json, application/yaml")
        try:
            return loader(raw)
        except (ValueError, yaml.YAMLError) as err:
            raise bad_request(f"the body of the request could not be decoded: {err}") from err

    def _list(self, request: web.Request, rt: ResourceType, namespace: str | None) -> JSON:
        limit = request.query.get("limit")
        if limit is not None and not limit.isdigit():
            raise bad_request(f"limit: invalid value {limit!r}")
        return self.store.list(
            rt, namespace, labels=parse_label_selector(request.query.get("labelSelector")),
            fields=parse_field_selector(request.query.get("fieldSelector"), rt.field_labels()),
            limit=int(limit) if limit else None,
            continue_token=request.query.get("continue"))

    async def _watch(self, request: web.Request, rt: ResourceType,
                     namespace: str | None) -> web.StreamResponse:
        timeout = request.query.get("timeoutSeconds")
        if timeout is not None and not timeout.isdigit():
            raise bad_request(f"timeoutSeconds: invalid value {timeout!r}")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            watcher = self.store.watch(
                rt, namespace,
                labels=parse_label_selector(request.query.get("labelSelector")),
                fields=parse_field_selector(request.query.get("fieldSelector"),
                                            rt.field_labels()),
                resource_version=request.query.get("resourceVersion"))
        except ApiStatusError as err:
            if err.code != 410:
                raise
            # Like the watch cache: the stream opens (200), carries one ERROR, and ends.
            await resp.prepare(request)
            await resp.write(_line({"type": "ERROR", "object": err.status()}))
            await resp.write_eof()
            return resp
        try:
            await resp.prepare(request)
            await self._pump(request, resp, watcher, int(timeout) if timeout else None,
                             truthy(request.query.get("allowWatchBookmarks")))
        finally:
            self.store.unwatch(watcher)
        return resp

    async def _pump(self, request: web.Request, resp: web.StreamResponse, watcher: Watcher,
                    timeout_seconds: int | None, bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds if timeout_seconds else None
        next_bookmark = loop.time() + self.bookmark_interval if bookmarks else None
        while True:
            wake = min((t for t in (deadline, next_bookmark) if t is not None), default=None)
            try:
                item = await asyncio.wait_for(
                    watcher.queue.get(), None if wake is None else max(0.0, wake - loop.time()))
            except TimeoutError:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                if next_bookmark is not None and now >= next_bookmark:
                    # Every event up to the current version is already queued (writes are
                    # synchronous) and the queue is empty, so this version is safe to resume.
                    await resp.write(_line({"type": "BOOKMARK", "object": {
                        "kind": watcher.rt.kind, "apiVersion": watcher.rt.api_version,
                        "metadata": {"resourceVersion": str(self.store.resource_version)}}}))
                    next_bookmark = now + self.bookmark_interval
                continue
            if watcher.cut == "abort":
                _abort(request)
                return
            if watcher.cut == "end":
                break
            if item is not None and watcher.cut == "mid-event":
                line = _line(item)
                await resp.write(line[:len(line) // 2])
                # Let the half line leave before the abort discards the send buffer.
                await asyncio.sleep(0.05)
                _abort(request)
                return
            if item is not None:
                await resp.write(_line(item))
        await resp.write_eof()


def _line(event: JSON) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _abort(request: web.Request) -> None:
    """Drop the connection without the final chunk: the client sees a broken stream."""
    if request.transport is not None:
        request.transport.abort()


@contextlib.asynccontextmanager
async def running_kubeapi(**kwargs: Any) -> AsyncIterator[FakeKubeAPI]:
    """A started :class:`FakeKubeAPI` (keyword arguments go to its constructor), closed after."""
    api = FakeKubeAPI(**kwargs)
    await api.start()
    try:
        yield api
    finally:
        await api.close()
