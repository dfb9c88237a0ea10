"""The controller in-process against the REAL kube-apiserver, through a recording proxy.

Role: what ``tests/controllers/harness.py`` is for the fake API server, for the session's
real etcd + kube-apiserver (``kube_installed``: ``manifests/`` applied). A test gets a
:class:`KubeTest` (the ``kube`` fixture): its own namespace, its own label, a
:class:`~tests.fakes.kubeproxy.KubeProxy` in front of the API server and an admin
client. ``start_cluster(kube)`` builds the manager exactly as ``imagereflector
controller`` does, with short retry delays, talking to the proxy with the token of the
manifests' ServiceAccount: every request it makes is judged by the real RBAC of
``manifests/rbac/``.

Invariants:

* Isolation on the shared session cluster: every namespace a test uses is created for
  it (``kube.ns``, ``kube.namespace(stem)``: unique names) and deleted with everything
  in it afterwards. ImageRepositories and ImagePolicies created through ``kube.api``
  carry the test's label (``imagereflector.test/run=<id>``) unless the test set that
  label itself, and the controller runs with ``--watch-label-selector`` on it, so it
  never sees another test's objects. An object created without a namespace goes to
  ``kube.ns``, as kubectl puts it in its context's namespace.
* The admin side (``kube.api``) talks to the API server directly with the admin client
  certificate: creating test objects never goes through the proxy, is never recorded
  and is never hit by an injected fault. Its CRUD calls are synchronous (milliseconds on
  loopback); waiting (``wait_for``, ``StatusLog``) is asynchronous and never blocks the
  loop the controller runs on.
* Waits poll for a condition; nothing sleeps a fixed time. ``StatusLog`` records every
  stored version of the test's objects through its own admin watch, which cuts and
  outages at the proxy do not touch, and can tell when it has caught up with the
  server, so a test's view of history is complete when it looks.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import re
import secrets
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml
from prometheus_client import CollectorRegistry

from imagereflector.app.manager import Manager, build
from imagereflector.config import Settings
from imagereflector.metrics import Metrics
from testbed.cluster import ApiError
from testbed.cluster import Cluster as Testbed
from tests.fakes.kubeproxy import Call, KubeProxy, running_proxy

if TYPE_CHECKING:
    # Imported by pytest itself as a plugin; importing it earlier defeats its rewriting.
    from testbed.pytest_plugin import Installed

JSON = dict[str, Any]
REPOS = "imagerepositories"
POLICIES = "imagepolicies"
RUN_LABEL = "imagereflector.test/run"
"""The label that ties an object to the test that created it (and its controller)."""

__all__ = [
    "POLICIES",
    "REPOS",
    "RUN_LABEL",
    "AdminApi",
    "ApiError",
    "Cluster",
    "KubeTest",
    "StatusLog",
    "events_of",
    "kube_test",
    "reconciles",
    "recorded_statuses",
    "start_cluster",
]


@dataclasses.dataclass(frozen=True, slots=True)
class _Resource:
    prefix: str
    namespaced: bool
    kind: str

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("/api/").removeprefix("/apis/")


_RESOURCES: dict[str, _Resource] = {
    REPOS: _Resource("/apis/image.toolkit.fluxcd.io/v1beta2", True, "ImageRepository"),
    POLICIES: _Resource("/apis/image.toolkit.fluxcd.io/v1beta2", True, "ImagePolicy"),
    "secrets": _Resource("/api/v1", True, "Secret"),
    "serviceaccounts": _Resource("/api/v1", True, "ServiceAccount"),
    "configmaps": _Resource("/api/v1", True, "ConfigMap"),
    "events": _Resource("/api/v1", True, "Event"),
    "namespaces": _Resource("/api/v1", False, "Namespace"),
    "leases": _Resource("/apis/coordination.k8s.io/v1", True, "Lease"),
    "clusterroles": _Resource("/apis/rbac.authorization.k8s.io/v1", False, "ClusterRole"),
    "clusterrolebindings": _Resource("/apis/rbac.authorization.k8s.io/v1", False,
                                     "ClusterRoleBinding"),
}
_BY_KIND = {r.kind: plural for plural, r in _RESOURCES.items()}
_COLLECTIONS: dict[str, list[str]] = {}
"""Per API server: its namespaced collections, found by discovery once per session."""
_LABELLED = (REPOS, POLICIES)
_PATCH_TYPES = {"merge": "application/merge-patch+json",
                "json": "application/json-patch+json",
                "strategic": "application/strategic-merge-patch+json"}


def _path(resource: str, namespace: str | None, name: str | None = None,
          subresource: str | None = None) -> str:
    try:
        info = _RESOURCES[resource]
    except KeyError:
        raise ValueError(f"no REST mapping for {resource!r} in the test harness") from None
    parts = [info.prefix]
    if info.namespaced and namespace is not None:
        parts.append(f"namespaces/{urllib.parse.quote(namespace, safe='')}")
    parts.append(resource)
    if name is not None:
        parts.append(urllib.parse.quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
    return "/".join(parts)


class AdminApi:
    """The real API server as the cluster admin, scoped to one test's namespaces.

    Mirrors the fake's Python-side helpers (``create``, ``get``, ``list``, ``patch``,
    ``delete``) and the proxy's records (``calls``, ``wait_for_calls``).
    """

    def __init__(self, testbed: Testbed, proxy: KubeProxy, kube: KubeTest) -> None:
        self.testbed = testbed
        self.proxy = proxy
        self._kube = kube
        self._session: aiohttp.ClientSession | None = None

    def _request(self, method: str, path: str, body: Any = None, *,
                 content_type: str = "application/json") -> JSON:
        return self.testbed.request(method, path, body, content_type=content_type)

    def create(self, obj: JSON) -> JSON:
        """Create ``obj``: namespace defaults to the test's, image kinds get its label."""
        obj = json.loads(json.dumps(obj))  # never change the caller's manifest
        resource = _BY_KIND[obj["kind"]]
        metadata = obj.setdefault("metadata", {})
        if _RESOURCES[resource].namespaced and not metadata.get("namespace"):
            metadata["namespace"] = self._kube.ns
        if resource in _LABELLED:
            labels = metadata.get("labels") or {}
            labels.setdefault(RUN_LABEL, self._kube.run_id)
            metadata["labels"] = labels
        return self._request("POST", _path(resource, metadata.get("namespace")), obj)

    def get(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return self._request("GET", _path(resource, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, resource: str, namespace: str | None = None, *,
             label_selector: str | None = None) -> builtins.list[JSON]:
        """Objects of ``namespace``, or of every namespace of this test when None (all
        namespaces for cluster-scoped kinds); each with apiVersion and kind."""
        info = _RESOURCES[resource]
        if info.namespaced and namespace is None:
            return [o for ns in self._kube.namespaces
                    for o in self.list(resource, ns, label_selector=label_selector)]
        path = _path(resource, namespace)
        if label_selector:
            path += "?" + urllib.parse.urlencode({"labelSelector": label_selector})
        items = self._request("GET", path).get("items") or []
        return [{"apiVersion": info.api_version, "kind": info.kind, **item} for item in items]

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any, *,
              patch_type: str = "merge", subresource: str | None = None) -> JSON:
        """PATCH with ``patch_type`` ``merge``, ``json`` or ``strategic``."""
        return self._request("PATCH", _path(resource, namespace, name, subresource), patch,
                             content_type=_PATCH_TYPES[patch_type])

    def update(self, obj: JSON, *, subresource: str | None = None) -> JSON:
        """PUT ``obj`` (its resourceVersion, if any, is a precondition)."""
        meta = obj["metadata"]
        return self._request("PUT", _path(_BY_KIND[obj["kind"]], meta.get("namespace"),
                                          meta["name"], subresource), obj)

    def delete(self, resource: str, namespace: str | None, name: str) -> JSON:
        """DELETE; raises :class:`ApiError` (404) when absent."""
        return self._request("DELETE", _path(resource, namespace, name))

    def calls(self, **filters: Any) -> builtins.list[Call]:
        """What the controller sent through the proxy (see ``KubeProxy.calls``)."""
        return self.proxy.calls(**filters)

    async def wait_for_calls(self, count: int = 1, **filters: Any) -> builtins.list[Call]:
        """Wait until the proxy recorded ``count`` matching calls."""
        return await self.proxy.wait_for_calls(count, **filters)

    # asynchronous reads, for waits that must not block the controller's loop

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            pki = self.testbed.pki_dir
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            self._session = aiohttp.ClientSession(
                base_url=self.testbed.server, trust_env=False,
                connector=aiohttp.TCPConnector(ssl=context))
        return self._session

    async def aget(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        """``get`` without blocking the event loop."""
        async with self.session().get(_path(resource, namespace, name)) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise ApiError("GET", _path(resource, namespace, name), resp.status,
                               await resp.text())
            found: JSON = await resp.json()
            return found

    async def _arequest(self, method: str, path: str, body: Any = None, *,
                        content_type: str = "application/json") -> tuple[int, JSON]:
        data = json.dumps(body).encode() if body is not None else None
        async with self.session().request(method, path, data=data, headers={
                "Content-Type": content_type}) as resp:
            raw = await resp.read()
            decoded = json.loads(raw) if raw.strip().startswith(b"{") else {}
            return resp.status, decoded

    async def delete_namespace(self, namespace: str, *, within: float = 60.0) -> None:
        """Delete a namespace and all it holds, as ``Cluster.delete_namespace`` does (the
        namespace controller's job: delete every namespaced kind by collection, clear the
        finalizers of what is marked for deletion, then finalize the namespace), but
        over kept-alive connections, every kind at once and discovery read once per
        session: about half the time of the original, which opens a TLS connection
        per request and asks the kinds one after another."""
        quoted = urllib.parse.quote(namespace, safe="")
        status, _ = await self._arequest("DELETE", f"/api/v1/namespaces/{quoted}")
        if status == 404:
            return
        collections = [t.format(ns=quoted) for t in await self._collections()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        # The controller is stopped: nobody else removes its finalizer, so this does.
        while sum(await asyncio.gather(*(self._empty(c) for c in collections))):
            if loop.time() > deadline:
                raise AssertionError(f"namespace {namespace} still holds objects")
            await asyncio.sleep(0.05)
        status, found = await self._arequest("GET", f"/api/v1/namespaces/{quoted}")
        if status == 404:
            return
        found.setdefault("spec", {})["finalizers"] = []
        await self._arequest("PUT", f"/api/v1/namespaces/{quoted}/finalize", found)
        while (await self._arequest("GET", f"/api/v1/namespaces/{quoted}"))[0] != 404:
            if loop.time() > deadline:
                raise AssertionError(f"namespace {namespace} still present")
            await asyncio.sleep(0.05)

    async def _collections(self) -> builtins.list[str]:
        """Every namespaced collection path (with ``{ns}``), from discovery, once."""
        if self.testbed.server not in _COLLECTIONS:
            _COLLECTIONS[self.testbed.server] = await asyncio.to_thread(
                self.testbed.namespaced_resources)
        return _COLLECTIONS[self.testbed.server]

    async def _empty(self, collection: str) -> int:
        """Delete a collection; clear finalizers of what stays; how many objects stay."""
        await self._arequest("DELETE", collection)
        status, listed = await self._arequest("GET", collection)
        items: builtins.list[JSON] = listed.get("items") or [] if status == 200 else []
        for item in items:
            meta = item.get("metadata") or {}
            if meta.get("finalizers") and meta.get("deletionTimestamp"):
                name = urllib.parse.quote(meta["name"], safe="")
                await self._arequest("PATCH", f"{collection}/{name}",
                                     {"metadata": {"finalizers": None}},
                                     content_type=_PATCH_TYPES["merge"])
        return len(items)

    async def alist(self, resource: str, namespace: str) -> builtins.list[JSON]:
        """``list`` of one namespace without blocking the event loop."""
        path = _path(resource, namespace)
        async with self.session().get(path) as resp:
            if resp.status != 200:
                raise ApiError("GET", path, resp.status, await resp.text())
            items: builtins.list[JSON] = (await resp.json()).get("items") or []
            return items

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class KubeTest:
    """One test's share of the session cluster: namespaces, label, proxy, admin client."""

    def __init__(self, installed: Installed, proxy: KubeProxy, tmp_path: Path,
                 name_stem: str) -> None:
        self.installed = installed
        self.testbed = installed.cluster
        self.proxy = proxy
        self.tmp_path = tmp_path
        self.run_id = secrets.token_hex(4)
        self.selector = f"{RUN_LABEL}={self.run_id}"
        self.namespaces: list[str] = []
        self.api = AdminApi(self.testbed, proxy, self)
        self.token = _kubeconfig_token(installed.controller_kubeconfig)
        self._cleanups: list[Callable[[], object]] = []
        self.ns = self.namespace(name_stem)

    def namespace(self, stem: str, **labels: str) -> str:
        """Create a namespace ``<stem>-<random>`` for this test; deleted after it."""
        stem = re.sub(r"[^a-z0-9-]+", "-", stem.lower())[:40].strip("-") or "test"
        name = self.testbed.create_namespace(f"{stem}-{secrets.token_hex(4)}",
                                             labels={RUN_LABEL: self.run_id, **labels})
        self.namespaces.append(name)
        return name

    def on_teardown(self, cleanup: Callable[[], object]) -> None:
        """Run ``cleanup`` (a synchronous admin call) after the test, before the
        namespaces go; for cluster-scoped objects the test created."""
        self._cleanups.append(cleanup)

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """A kubeconfig for the proxy, as the manifests' ServiceAccount (or ``token``)."""
        return self.proxy.write_kubeconfig(path, token or self.token, namespace=self.ns)

    async def teardown(self) -> None:
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(ApiError):
                cleanup()
        try:
            # All at once: a test with a dozen namespaces should not wait for them in turn.
            await asyncio.gather(*(self.api.delete_namespace(ns) for ns in self.namespaces))
        finally:
            await self.api.close()


def _kubeconfig_token(path: Path) -> str:
    doc = yaml.safe_load(path.read_text())
    token = doc["users"][0]["user"]["token"]
    assert isinstance(token, str)
    return token


@dataclasses.dataclass
class Cluster:
    """One running manager against the real API server (through ``kube.proxy``)."""

    kube: KubeTest
    manager: Manager
    task: asyncio.Task[None]
    settings: Settings

    @property
    def api(self) -> AdminApi:
        return self.kube.api

    @property
    def proxy(self) -> KubeProxy:
        return self.kube.proxy

    @property
    def ns(self) -> str:
        """The test's own namespace (where objects without one are created)."""
        return self.kube.ns

    def namespace(self, stem: str, **labels: str) -> str:
        """Another namespace for this test (see :meth:`KubeTest.namespace`)."""
        return self.kube.namespace(stem, **labels)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.manager.endpoints[0].bound_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.manager.endpoints[1].bound_port}"

    async def wait_for(self, resource: str, namespace: str, name: str,
                       check: Callable[[JSON], bool], *, within: float = 30.0) -> JSON:
        """Poll the API server until ``check`` holds; fail with the last state."""
        last: JSON | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if self.task.done():
                self.task.result()
            last = await self.api.aget(resource, namespace, name)
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting on {namespace}/{name}: {last}")

    async def wait_all(self, resource: str, names: list[str],
                       check: Callable[[str, JSON], bool], *, within: float,
                       namespace: str | None = None) -> dict[str, JSON]:
        """Wait until ``check(name, obj)`` holds for every name (in ``namespace``, the
        test's by default); one list per poll, one shared deadline."""
        namespace = namespace or self.ns
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self.task.done():
                self.task.result()
            current = {o["metadata"]["name"]: o
                       for o in await self.api.alist(resource, namespace)}
            pending = [n for n in names if n not in current or not check(n, current[n])]
            if not pending:
                return {n: current[n] for n in names}
            if loop.time() > deadline:
                states = {n: (current.get(n) or {}).get("status") for n in pending[:3]}
                raise AssertionError(f"{len(pending)} objects never settled, e.g. {states}")
            await asyncio.sleep(0.05)

    async def wait_gone(self, resource: str, namespace: str, name: str,
                        *, within: float = 30.0) -> None:
        """Wait until the object no longer exists."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while await self.api.aget(resource, namespace, name) is not None:
            assert loop.time() < deadline, "object not removed"
            await asyncio.sleep(0.02)

    async def scrape(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as resp:
            assert resp.status == 200
            return await resp.text()

    async def wait_metrics(self, check: Callable[[str], bool], *,
                           within: float = 30.0) -> str:
        """Scrape until ``check`` holds for the exposition; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self.task.done():
                self.task.result()
            text = await self.scrape()
            if check(text):
                return text
            if loop.time() > deadline:
                raise AssertionError("timed out waiting for the metrics to show it")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.manager.stop.set()
        await asyncio.wait_for(self.task, timeout=20)


@contextlib.asynccontextmanager
async def start_cluster(kube: KubeTest, *, token: str | None = None,
                        storage: Path | None = None, **overrides: Any
                        ) -> AsyncIterator[Cluster]:
    """Start a manager against the real API server with test-friendly settings.

    It speaks as the manifests' ServiceAccount (or ``token``) through the proxy and
    watches only this test's objects (``watch_label_selector`` may be overridden).
    ``storage`` defaults to one directory per test, so a second start finds the
    first one's store.
    """
    kubeconfig = kube.kubeconfig(kube.tmp_path / f"kubeconfig-{secrets.token_hex(4)}", token)
    settings = Settings(**{
        "kubeconfig": str(kubeconfig),
        "storage_path": str(storage or kube.tmp_path / "data"),
        "metrics_addr": "127.0.0.1:0", "health_addr": "127.0.0.1:0",
        "min_retry_delay": 0.05, "max_retry_delay": 1.0, "registry_qps": 0.0,
        "store_check_interval": 0.2, "watch_label_selector": kube.selector, **overrides})
    manager = await build(settings, metrics=Metrics(CollectorRegistry()))
    task = asyncio.create_task(manager.run(), name="manager-under-test")
    while not manager.endpoints:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    cluster = Cluster(kube=kube, manager=manager, task=task, settings=settings)
    try:
        yield cluster
    finally:
        if not task.done():
            await cluster.stop()


class StatusLog:
    """Every ADDED/MODIFIED version of one kind of this test's objects, in order.

    A list, then a watch from the list's resourceVersion, as the admin and straight to
    the API server: lossless from the moment :meth:`start` returns. A watch the server
    ends is resumed from the last version seen (bookmarks included).
    """

    def __init__(self, kube: KubeTest, resource: str) -> None:
        self._kube = kube
        self._resource = resource
        self._seen: list[JSON] = []
        self._versions: set[tuple[str, str, str]] = set()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> StatusLog:
        listed = self._kube.api.testbed.request(
            "GET", _path(self._resource, None) + "?" + urllib.parse.urlencode(
                {"labelSelector": self._kube.selector}))
        for item in listed.get("items") or []:
            self._add(item)
        version = str(listed["metadata"]["resourceVersion"])
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._follow(version, ready),
                                         name=f"status-log:{self._resource}")
        waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait({self._task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self._task.done():
            self._task.result()
        return self

    def _add(self, obj: JSON) -> None:
        meta = obj["metadata"]
        self._seen.append(obj)
        self._versions.add((meta.get("namespace", ""), meta["name"], meta["resourceVersion"]))

    async def _follow(self, version: str, ready: asyncio.Event) -> None:
        session = self._kube.api.session()
        while True:
            query = urllib.parse.urlencode({
                "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                "timeoutSeconds": "1800", "labelSelector": self._kube.selector})
            async with session.get(f"{_path(self._resource, None)}?{query}",
                                   timeout=aiohttp.ClientTimeout(total=None)) as resp:
                assert resp.status == 200, await resp.text()
                ready.set()
                async for line in _lines(resp.content):
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise AssertionError(f"the status log lost its place: {obj}")
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._add(obj)
                        async with self._changed:
                            self._changed.notify_all()

    def versions(self) -> list[JSON]:
        """Every version recorded so far (call :meth:`sync` first for a complete view)."""
        return list(self._seen)

    async def sync(self, *, within: float = 30.0) -> list[JSON]:
        """Wait until every object's current version (from a fresh list) was recorded;
        return every version."""
        path = _path(self._resource, None) + "?" + urllib.parse.urlencode(
            {"labelSelector": self._kube.selector})
        async with self._kube.api.session().get(path) as resp:
            items = (await resp.json()).get("items") or []
        wanted = {(o["metadata"].get("namespace", ""), o["metadata"]["name"],
                   o["metadata"]["resourceVersion"]) for o in items}

        async def caught_up() -> None:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: wanted <= self._versions or (
                        self._task is not None and self._task.done()))
        await asyncio.wait_for(caught_up(), within)
        if self._task is not None and self._task.done():
            self._task.result()
        return self.versions()

    def history(self, name: str, namespace: str) -> list[JSON]:
        """The recorded versions of one object, oldest first."""
        return [o for o in self._seen if o["metadata"]["name"] == name
                and o["metadata"].get("namespace") == namespace]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Whole lines of a stream, however long (``readline`` caps their length)."""
    pending = b""
    async for chunk in content.iter_any():
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line


_SERVED: set[str] = set()


async def _custom_resources_served(testbed: Testbed, *, within: float = 60.0) -> None:
    """Wait (once per API server) until lists of the image kinds are answered.

    Right after a CRD is Established the API server still builds its watch cache and
    answers 429 ``storage is (re)initializing`` for a moment. The controller retries
    that on its own; the harness's admin reads are not meant to, so they start after it.
    """
    if testbed.server in _SERVED:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    for resource in _LABELLED:
        while True:
            try:
                testbed.request("GET", _path(resource, None) + "?limit=1")
                break
            except ApiError as err:
                if err.status != 429 or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
    _SERVED.add(testbed.server)


@contextlib.asynccontextmanager
async def kube_test(installed: Installed, tmp_path: Path, name: str
                    ) -> AsyncIterator[KubeTest]:
    """A :class:`KubeTest` with its proxy running; everything it made is gone after."""
    testbed = installed.cluster
    await _custom_resources_served(testbed)
    async with running_proxy(testbed.server, testbed.pki_dir / "ca.crt") as proxy:
        kube = KubeTest(installed, proxy, tmp_path, name)
        try:
            yield kube
        finally:
            await kube.teardown()


@contextlib.asynccontextmanager
async def recorded_statuses(kube: KubeTest, resource: str = REPOS
                            ) -> AsyncIterator[StatusLog]:
    """A started :class:`StatusLog` of ``resource``, closed afterwards."""
    log = await StatusLog(kube, resource).start()
    try:
        yield log
    finally:
        await log.close()


def events_of(kube: KubeTest, name: str, namespace: str | None = None) -> list[JSON]:
    """The core v1 Events whose involvedObject is ``name`` in ``namespace`` (the test's)."""
    return [e for e in kube.api.list("events", namespace or kube.ns)
            if e["involvedObject"]["name"] == name]


def reconciles(metrics_text: str, controller: str) -> float:
    """``controller_runtime_reconcile_total`` of ``controller``, all results summed."""
    total = 0.0
    for match in re.finditer(
            rf'controller_runtime_reconcile_total\{{controller="{controller}",result="[^"]+"\}}'
            r" ([0-9.e+]+)", metrics_text):
        total += float(match.group(1))
    return total
