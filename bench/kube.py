"""The real Kubernetes API server for the fleet, idle, restart and soak benchmarks.

Role: ``fresh_cluster(work)`` starts a testbed cluster (etcd and kube-apiserver v1.37.2
built from ``tools/controlplane``, ``testbed.cluster``) in a directory of its own,
applies ``manifests/`` server-side (CRDs, namespace, RBAC), and mints two ServiceAccount
kubeconfigs: the manifests' ``image-reflector-controller`` (our controller's RBAC) and
``flux-bench`` bound to ``cluster-admin`` (Flux's controller; our ClusterRole is not
Flux's, and a 403 only Flux would meet is not a cost to compare). Then:

* ``Bed.create_repositories`` creates ImageRepositories with concurrent POSTs as the
  cluster admin and returns how long that took;
* ``ReadyWatch`` lists then watches ImageRepositories from a thread of the bench
  process and counts the objects Ready at their generation, noting the moment a target
  count is reached (no polling of lists, which would cost the API server and the
  controller's cores far more than one watch);
* ``Bed.counters`` reads the API server's own ``/metrics``: the requests it dispatched
  for the ``service-accounts`` flow schema (every request a controller makes, watches
  included, and nothing else: the bench and the API server's own loopback client are
  ``system:masters``, dispatched as ``exempt``), and ``apiserver_request_total`` by
  verb and resource for the breakdown.

Invariants:

* One cluster per context: etcd starts empty, and both processes are stopped by PID
  (``Cluster.down``) when the block ends, also on errors; they die with this process
  (``tie_to_parent``) if it is killed.
* Everything listens on 127.0.0.1; the bench speaks as the cluster admin (client
  certificate), controllers only with their ServiceAccount tokens.
* ``ReadyWatch.stop`` closes its connection and joins its thread; every wait has a
  deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import JSON, REPO_ROOT, BenchError, cpu_seconds
from testbed.build import ensure_built
from testbed.cluster import Cluster

GROUP = "image.toolkit.fluxcd.io"
VERSION = "v1beta2"
REPOS = "imagerepositories"
NAMESPACE = "image-reflector-system"
OURS_SA = "image-reflector-controller"
FLUX_SA = "flux-bench"
# What every controller request is dispatched as (APF): ServiceAccounts outside
# kube-system fall in the ``service-accounts`` flow schema of a stock API server.
CONTROLLER_FLOW = "service-accounts"
# Resources either controller reads or writes; the breakdown by verb keeps these.
CONTROLLER_RESOURCES = frozenset({REPOS, "imagepolicies", "events", "namespaces",
                                  "secrets", "serviceaccounts"})
# Tokens outlive the longest run (a 30-minute soak plus set-up) by far.
TOKEN_SECONDS = 6 * 3600
CREATE_CONCURRENCY = 16


def kubernetes_version(bin_dir: Path) -> str:
    """``kube-apiserver --version`` of the testbed build (``Kubernetes v1.37.2``)."""
    import subprocess

    out = subprocess.run([str(bin_dir / "kube-apiserver"), "--version"], capture_output=True,
                         text=True, check=False).stdout.strip()
    return out.split()[-1] if out else "unknown"


@dataclass(slots=True)
class Counters:
    """The API server's counters at one moment, and its CPU and the bench's own calls."""

    controller_requests: float
    by_verb: dict[str, float]
    apiserver_cpu: float
    etcd_cpu: float

    def since(self, before: Counters) -> Counters:
        """The difference ``self - before``."""
        verbs = {k: v - before.by_verb.get(k, 0.0) for k, v in self.by_verb.items()}
        return Counters(self.controller_requests - before.controller_requests,
                        {k: v for k, v in verbs.items() if v > 0},
                        self.apiserver_cpu - before.apiserver_cpu,
                        self.etcd_cpu - before.etcd_cpu)


@dataclass
class Bed:
    """A running cluster with the manifests applied and the controllers' kubeconfigs."""

    cluster: Cluster
    ours_kubeconfig: Path
    flux_kubeconfig: Path
    kubernetes: str
    _ssl: ssl.SSLContext = field(init=False, repr=False)
    bench_calls: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pki = self.cluster.pki_dir
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._ssl = context

    @property
    def server(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return self.cluster.server

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """TLS as the cluster admin (client certificate)."""
        return self._ssl

    def note(self, verb: str, amount: float = 1.0) -> None:
        """Record one of the bench's own requests (``VERB resource``) for ``Counters``."""
        self.bench_calls[verb] = self.bench_calls.get(verb, 0.0) + amount

    def get(self, path: str, timeout: float = 120.0) -> bytes:
        """GET as the admin; the raw body."""
        req = urllib.request.Request(f"{self.server}{path}",  # noqa: S310 - loopback
                                     headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as resp:  # noqa: S310
            body: bytes = resp.read()
            return body

    def list_repositories(self, page: int = 2000) -> tuple[list[JSON], str]:
        """Every ImageRepository, in pages (a kubectl-like ``GET`` of the collection),
        and the resourceVersion of the list (one snapshot across the pages)."""
        items: list[JSON] = []
        cont = ""
        for _ in range(10_000):  # bounded: far more pages than any fleet has
            path = f"/apis/{GROUP}/{VERSION}/{REPOS}?limit={page}"
            if cont:
                path += f"&continue={cont}"
            doc = json.loads(self.get(path))
            self.note(f"LIST {REPOS}")
            items += doc.get("items") or []
            meta = doc.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                return items, str(meta.get("resourceVersion") or "")
        raise BenchError("listing ImageRepositories did not end")

    def counters(self) -> Counters:
        """The API server's dispatched and per-verb request counts and its CPU now.

        The breakdown leaves out the bench's own requests so far (``note``): they are
        ``exempt``, so never in ``controller_requests``, but ``apiserver_request_total``
        has no user label. Watches are counted there when they end, so a watch still
        open is in ``controller_requests`` (dispatch) and not yet in the breakdown.
        """
        text = self.get("/metrics").decode()
        controller = 0.0
        by_verb: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
                labels, value = _labels(line)
                if labels.get("flow_schema") == CONTROLLER_FLOW:
                    controller += value
            elif line.startswith("apiserver_request_total{"):
                labels, value = _labels(line)
                resource = labels.get("resource", "")
                if resource not in CONTROLLER_RESOURCES:
                    continue
                sub = labels.get("subresource", "")
                key = f"{labels.get('verb', '')} {resource}" + (f"/{sub}" if sub else "")
                by_verb[key] = by_verb.get(key, 0.0) + value
        for key, own in self.bench_calls.items():
            by_verb[key] = by_verb.get(key, 0.0) - own
        pids = self.cluster.pids()
        return Counters(controller, by_verb, cpu_seconds(pids["kube-apiserver"]),
                        cpu_seconds(pids["etcd"]))

    def create_namespaces(self, names: Sequence[str]) -> None:
        """Create namespaces (no ServiceAccount: neither controller needs one there)."""
        for name in names:
            self.cluster.request("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            self.note("POST namespaces")

    def create_repositories(self, objects: Sequence[tuple[str, str, str, str]]) -> float:
        """Create ``(namespace, name, image, interval)`` ImageRepositories; seconds taken.

        Concurrent POSTs (``CREATE_CONCURRENCY`` at a time) on one keep-alive pool, as
        a GitOps tool applying a large kustomization would.
        """
        started = time.perf_counter()
        asyncio.run(self._create_all(objects))
        self.note(f"POST {REPOS}", len(objects))
        return time.perf_counter() - started

    async def _create_all(self, objects: Sequence[tuple[str, str, str, str]]) -> None:
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=CREATE_CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                         timeout=aiohttp.ClientTimeout(total=120)) as http:
            async def one(ns: str, name: str, image: str, interval: str) -> None:
                doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImageRepository",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"image": image, "interval": interval}}
                url = f"{self.server}/apis/{GROUP}/{VERSION}/namespaces/{ns}/{REPOS}"
                async with gate:
                    for attempt in range(5):  # 429 from APF under load: back off, retry
                        async with http.post(url, json=doc) as resp:
                            if resp.status == 201:
                                return
                            body = await resp.text()
                            if resp.status != 429 or attempt == 4:
                                raise BenchError(f"create {ns}/{name}: HTTP {resp.status}: "
                                                 f"{body[:300]}")
                        await asyncio.sleep(0.2 * (attempt + 1))

            await asyncio.gather(*(one(*o) for o in objects))


def _labels(line: str) -> tuple[dict[str, str], float]:
    head, value = line.rsplit(" ", 1)
    inner = head[head.index("{") + 1:head.rindex("}")]
    labels: dict[str, str] = {}
    for part in inner.split(","):
        if "=" in part:
            key, raw = part.split("=", 1)
            labels[key] = raw.strip('"')
    return labels, float(value)


@contextlib.contextmanager
def fresh_cluster(work: Path) -> Iterator[Bed]:
    """A new cluster in ``work/cluster`` with ``manifests/`` applied; stopped after."""
    bins = ensure_built("controlplane")
    cluster = Cluster(work / "cluster", bins, tie_to_parent=True)
    cluster.up()
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k",
                        str(REPO_ROOT / "manifests"), timeout=120)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        f"crd/{REPOS}.{GROUP}", f"crd/imagepolicies.{GROUP}", timeout=90)
        ours = cluster.service_account_kubeconfig(
            NAMESPACE, OURS_SA, work / "ours.kubeconfig", expiration_seconds=TOKEN_SECONDS)
        cluster.ensure_service_account(NAMESPACE, FLUX_SA)
        cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": FLUX_SA},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": FLUX_SA,
                          "namespace": NAMESPACE}]})
        flux = cluster.service_account_kubeconfig(
            NAMESPACE, FLUX_SA, work / "flux.kubeconfig", expiration_seconds=TOKEN_SECONDS)
        yield Bed(cluster, ours, flux, kubernetes_version(bins))
    finally:
        cluster.down()
        cluster.wipe()


def _ready(obj: JSON) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != (obj.get("metadata") or {}).get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


class ReadyWatch:
    """Counts ImageRepositories Ready at their generation, from a list and a watch.

    ``start`` lists (as the admin) and starts a thread that watches from the list's
    resourceVersion; a watch that ends is resumed from the last version seen, one that
    expired (410) is replaced by a new list. ``target`` set, the thread notes the moment
    the Ready count first reaches it (``reached_at``, ``time.perf_counter``).
    """

    def __init__(self, bed: Bed) -> None:
        self._bed = bed
        self._ready: dict[str, bool] = {}
        self._count = 0
        self._lock = threading.Condition()
        self._version = ""
        self._stop = threading.Event()
        self._conn: http.client.HTTPSConnection | None = None
        self._thread: threading.Thread | None = None
        self._target: int | None = None
        self.reached_at: float | None = None
        self.error: str | None = None
        self.events = 0

    # --- public ---------------------------------------------------------------------------

    def start(self) -> ReadyWatch:
        """List, then watch in a daemon thread."""
        self._relist()
        self._thread = threading.Thread(target=self._run, name="ready-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the stream and join the thread."""
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def ready(self) -> int:
        """Objects Ready at their generation now."""
        with self._lock:
            return self._count

    @property
    def total(self) -> int:
        """Objects seen (not deleted)."""
        with self._lock:
            return len(self._ready)

    def expect(self, target: int) -> None:
        """Note the moment the Ready count reaches ``target`` from now on."""
        with self._lock:
            self._target = target
            self.reached_at = time.perf_counter() if self._count >= target else None

    def wait(self, deadline: float, alive: Callable[[], bool] | None = None) -> float:
        """Block until the expected count is reached (``perf_counter`` deadline); return
        the moment it was. ``alive()`` returning False (a controller that exited) or a
        watch error raise ``BenchError``."""
        with self._lock:
            while self.reached_at is None:
                if self.error is not None:
                    raise BenchError(f"watch failed: {self.error}")
                if alive is not None and not alive():
                    raise BenchError("the controller exited")
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise BenchError(f"{self._count}/{self._target} Ready by the deadline")
                self._lock.wait(timeout=min(left, 1.0))
            return self.reached_at

    # --- the thread -----------------------------------------------------------------------

    def _set(self, key: str, ready: bool | None) -> None:
        """Record one object's state (None: deleted); caller holds the lock."""
        old = self._ready.pop(key, False) if ready is None else self._ready.get(key, False)
        if ready is not None:
            self._ready[key] = ready
        self._count += int(bool(ready)) - int(old)
        if self._target is not None and self.reached_at is None \
                and self._count >= self._target:
            self.reached_at = time.perf_counter()
            self._lock.notify_all()

    def _relist(self) -> None:
        items, version = self._bed.list_repositories()
        with self._lock:
            self._ready.clear()
            self._count = 0
            for obj in items:
                meta = obj["metadata"]
                self._set(f"{meta['namespace']}/{meta['name']}", _ready(obj))
            self._version = version
            self._lock.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._watch_once() == "expired":
                    self._relist()
        except Exception as err:  # the waiter reports it
            if not self._stop.is_set():
                with self._lock:
                    self.error = repr(err)
                    self._lock.notify_all()

    def _watch_once(self) -> str:
        host = self._bed.server.removeprefix("https://")
        conn = http.client.HTTPSConnection(host, context=self._bed.ssl_context, timeout=None)
        self._conn = conn
        try:
            conn.request("GET", f"/apis/{GROUP}/{VERSION}/{REPOS}?watch=1&"
                                f"allowWatchBookmarks=true&resourceVersion={self._version}",
                         headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise BenchError(f"watch: HTTP {resp.status}: {resp.read()[:300]!r}")
            while not self._stop.is_set():
                line = resp.readline()
                if not line:
                    return "ended"
                event = json.loads(line)
                obj = event.get("object") or {}
                kind = event.get("type")
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return "expired"
                    raise BenchError(f"watch error: {obj.get('message')}")
                meta = obj.get("metadata") or {}
                with self._lock:
                    self._version = meta.get("resourceVersion") or self._version
                    if kind == "BOOKMARK":
                        continue
                    self.events += 1
                    key = f"{meta.get('namespace')}/{meta.get('name')}"
                    self._set(key, None if kind == "DELETED" else _ready(obj))
            return "stopped"
        except (OSError, http.client.HTTPException):
            if self._stop.is_set():
                return "stopped"
            return "ended"  # resumed from the last version seen
        finally:
            self._conn = None
            conn.close()
