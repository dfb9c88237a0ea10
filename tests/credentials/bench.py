"""One ImageRepository reconcile at a time, against the REAL kube-apiserver.

Role: the credential tests need the reconciler's verdict (Ready reason and message) for
many small configurations in both compatibility modes, quickly and without waiting on a
running controller. A :class:`Bench` shares one namespace of the session cluster
(``kube_installed``: ``manifests/`` applied) among a module's tests: the admin creates the
objects (Secrets, ServiceAccounts, ImageRepositories, each with a unique name), and the
reconciler runs in-process with a ``KubeClient`` that speaks as the manifests'
ServiceAccount, so every Secret GET and TokenRequest is judged by the real RBAC.

Invariants: a reconcile reads the object as stored, runs once, and the status is read
back from the API server; nothing sleeps; the namespace is deleted with everything in it
when the module ends.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from imagereflector.api.compat import Compatibility
from imagereflector.controllers.imagerepository import ImageRepositoryReconciler, RepositoryDeps
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.credentials.resolver import CredentialResolver
from imagereflector.credentials.workload import WorkloadIdentity
from imagereflector.kube.client import KubeClient
from imagereflector.metrics import Metrics
from imagereflector.registry.client import ClientSettings, RegistryClient
from imagereflector.registry.limiter import HostLimiter, SystemClock
from imagereflector.registry.transport import NullObserver
from imagereflector.store.sqlite import SqliteTagStore
from testbed.cluster import Cluster as Testbed

JSON = dict[str, Any]
REPOS = "/apis/image.toolkit.fluxcd.io/v1beta2/namespaces/{ns}/imagerepositories"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def docker_config(auths: Mapping[str, tuple[str, str]]) -> bytes:
    """A ``.dockerconfigjson`` document with ``auth`` entries."""
    doc = {"auths": {key: {"auth": b64(f"{user}:{password}")}
                     for key, (user, password) in auths.items()}}
    return json.dumps(doc).encode()


@dataclass
class Events:
    """What the reconciler recorded."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, obj: Mapping[str, Any], *, type: str, reason: str,
               message: str) -> None:
        self.seen.append((type, reason, message))


@dataclass(frozen=True, slots=True)
class Outcome:
    """The stored status after one reconcile, and what the reconcile raised."""

    status: JSON
    error: BaseException | None
    events: list[tuple[str, str, str]]

    def condition(self, kind: str) -> JSON | None:
        for found in self.status.get("conditions") or []:
            if found.get("type") == kind:
                return dict(found)
        return None

    @property
    def ready(self) -> tuple[str, str, str]:
        """Ready's status, reason and message."""
        found = self.condition("Ready") or {}
        return (found.get("status", ""), found.get("reason", ""), found.get("message", ""))


class Bench:
    """A namespace of the session cluster and a way to reconcile objects in it."""

    def __init__(self, testbed: Testbed, controller_kubeconfig: Path, tmp: Path,
                 namespace: str) -> None:
        self.testbed = testbed
        self.kubeconfig = controller_kubeconfig
        self.tmp = tmp
        self.ns = namespace

    @staticmethod
    def unique(stem: str) -> str:
        return f"{stem}-{secrets.token_hex(3)}"

    # --- objects (as the admin) ------------------------------------------------------------

    def create(self, path: str, obj: JSON) -> JSON:
        return self.testbed.request("POST", path.format(ns=self.ns), obj)

    def secret(self, name: str, data: Mapping[str, str | bytes], *,
               type: str = "Opaque") -> str:
        self.create("/api/v1/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": type,
            "metadata": {"name": name}, "data": {k: b64(v) for k, v in data.items()}})
        return name

    def pull_secret(self, name: str, auths: Mapping[str, tuple[str, str]], *,
                    type: str = "kubernetes.io/dockerconfigjson") -> str:
        key = ".dockercfg" if type == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        return self.secret(name, {key: docker_config(auths)}, type=type)

    def service_account(self, name: str, *, annotations: Mapping[str, str] | None = None,
                        pull_secrets: tuple[str, ...] = ()) -> str:
        self.create("/api/v1/namespaces/{ns}/serviceaccounts", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "annotations": dict(annotations or {})},
            "imagePullSecrets": [{"name": s} for s in pull_secrets]})
        return name

    def repository(self, name: str, image: str, **spec: Any) -> JSON:
        return self.create(REPOS, {
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
            "metadata": {"name": name}, "spec": {"image": image, "interval": "1h", **spec}})

    def get_repository(self, name: str) -> JSON:
        return self.testbed.request("GET", REPOS.format(ns=self.ns) + f"/{name}")

    def forget_status(self, name: str) -> None:
        """Drop the stored status, so the next reconcile starts over."""
        self.testbed.request("PATCH", REPOS.format(ns=self.ns) + f"/{name}/status",
                             {"status": None}, content_type="application/merge-patch+json")

    async def both(self, name: str, **options: Any) -> tuple[Outcome, Outcome]:
        """The outcome in v0.31 mode, then (the status starting over) in v1.2 mode."""
        first = await self.reconcile(name, mode=Compatibility.V0_31, **options)
        self.forget_status(name)
        second = await self.reconcile(name, mode=Compatibility.V1_2, **options)
        return first, second

    # --- one reconcile (as the controller) -------------------------------------------------

    async def reconcile(
        self, name: str, *, mode: Compatibility = Compatibility.V0_31,
        gate: bool = False, default_service_account: str = "",
        clouds: Callable[[KubeClient], ProviderRegistry] | None = None,
        metrics: Metrics | None = None,
    ) -> Outcome:
        """Reconcile ImageRepository ``name`` once, as the controller would in ``mode``;
        ``clouds`` builds the cloud logins on the controller's Kubernetes client."""
        kube = await KubeClient.connect(kubeconfig=str(self.kubeconfig))
        store = await SqliteTagStore.open(self.tmp / f"store-{secrets.token_hex(3)}")
        lister = RegistryClient(
            limiter=HostLimiter(qps=0, burst=0, clock=SystemClock()), observer=NullObserver(),
            settings=ClientSettings(attempts=1, dot_local_plain_http=not mode.latest))
        workload = WorkloadIdentity(enabled=gate, default_service_account=default_service_account)
        resolver = CredentialResolver(reader=kube, clouds=clouds(kube) if clouds else None,
                                      compatibility=mode, workload_identity=workload)
        events = Events()
        deps = RepositoryDeps(client=kube, store=store, lister=lister, resolver=resolver,
                              events=events, metrics=metrics or Metrics(CollectorRegistry()),
                              now=lambda: datetime.now(UTC), compatibility=mode)
        error: BaseException | None = None
        try:
            await ImageRepositoryReconciler(deps).reconcile(self.get_repository(name))
        except Exception as err:  # the reconciler hands errors to the workqueue
            error = err
        finally:
            await lister.close()
            await store.close()
            await kube.close()
        return Outcome(status=self.get_repository(name).get("status") or {}, error=error,
                       events=events.seen)
