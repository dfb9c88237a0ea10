"""``imagereflector controller``: build every component and run them until SIGTERM.

Start order: logging → store → Kubernetes client → registry client → informers and
controllers → metrics, health and event delivery. Every long-running piece is a named
task in one ``TaskGroup``; a task that crashes stops the process (the Deployment restarts
it) rather than leaving a half-working controller.

Shutdown order on SIGTERM/SIGINT: stop taking work, give in-flight reconciles the grace
period (10 s, Flux's ``terminationGracePeriodSeconds``), stop informers and event delivery,
then close the registry sessions, the Kubernetes client and the store (cleanly, so the
SQLite WAL is checkpointed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagereflector.api import meta
from imagereflector.app.registry import build_registry_client
from imagereflector.config import Settings
from imagereflector.controllers.digest import RepositoryDigestResolver
from imagereflector.controllers.imagepolicy import CONTROLLER as POLICY_CONTROLLER
from imagereflector.controllers.imagepolicy import (
    REPOSITORY_INDEX,
    ImagePolicyReconciler,
    PolicyDeps,
    repository_index,
)
from imagereflector.controllers.imagerepository import (
    CONTROLLER as REPOSITORY_CONTROLLER,
)
from imagereflector.controllers.imagerepository import (
    ImageRepositoryReconciler,
    RepositoryDeps,
)
from imagereflector.credentials.providers.classify import AutologinFlags
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.credentials.resolver import CredentialResolver
from imagereflector.credentials.workload import WorkloadIdentity
from imagereflector.health import HttpEndpoint, serve_health, serve_metrics
from imagereflector.kube import predicates
from imagereflector.kube.client import (
    IMAGE_POLICIES,
    IMAGE_REPOSITORIES,
    NAMESPACES,
    ApiError,
    JSONObject,
    KubeClient,
)
from imagereflector.kube.controller import Controller
from imagereflector.kube.events import EventForwarder, EventRecorder
from imagereflector.kube.informer import Informer, InformerOptions, object_key
from imagereflector.kube.leader import LeaderElector, default_identity
from imagereflector.kube.ratelimit import ItemExponentialFailureRateLimiter
from imagereflector.kube.reconcile import Result
from imagereflector.kube.workqueue import RateLimitingQueue
from imagereflector.metrics import Metrics, WorkqueueMetrics
from imagereflector.store.base import ObjectKey
from imagereflector.store.sqlite import SqliteTagStore

log = logging.getLogger("imagereflector.manager")

# With the default 30 s check interval, the store's pages are verified every 5 minutes.
DEEP_CHECK_EVERY = 10
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RestObserver:
    """Counts Kubernetes API requests as ``rest_client_requests_total``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def observe_request(self, *, code: str, method: str, host: str) -> None:
        """Count one request."""
        self._metrics.rest_client_requests.labels(code, method, host).inc()


@dataclass(slots=True)
class Manager:
    """Everything one controller process runs; built by :func:`build`, run by :meth:`run`."""

    settings: Settings
    metrics: Metrics
    store: SqliteTagStore
    kube: KubeClient
    repositories: Informer
    policies: Informer
    namespaces: Informer
    controllers: list[Controller]
    events: EventRecorder
    forwarder: EventForwarder | None
    elector: LeaderElector | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)
    endpoints: list[HttpEndpoint] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def informers(self) -> list[Informer]:
        """Every informer the controllers read from."""
        return [self.repositories, self.policies, self.namespaces]

    def synced(self) -> bool:
        """Every informer has delivered its first list."""
        return all(informer.has_synced() for informer in self.informers())

    async def run(self) -> None:
        """Serve until :attr:`stop` is set; then shut down in order.

        Informers, probes and event delivery run from the start, so a standby has warm
        caches; workers (the only writers of status and of the tag store) start once this
        process leads. Raises ``LeadershipLostError`` when leadership is lost, so the
        process exits and its Pod restarts, as controller-runtime does.
        """
        self.endpoints.append(await serve_metrics(self.settings.metrics_addr,
                                                  self.metrics.exposition_chunks))
        self.endpoints.append(await serve_health(
            self.settings.health_addr,
            {"informers": self.synced, "store": lambda: self.store.is_open}))
        background_stop = asyncio.Event()
        election_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                for informer in self.informers():
                    group.create_task(informer.run(background_stop),
                                      name=f"informer:{informer.ref.plural}")
                group.create_task(self.events.run(background_stop), name="events")
                if self.forwarder is not None:
                    forwarder = group.create_task(self.forwarder.run(), name="event-forwarder")
                group.create_task(self._store_watch(), name="store-check")
                if self.elector is not None:
                    group.create_task(self.elector.run(election_stop), name="leader-election")
                if await self._until_stopped(self._ready_to_work()):
                    log.info("starting workers")
                    runs = [group.create_task(c.run(self.stop), name=f"controller:{c.name}")
                            for c in self.controllers]
                    await self.stop.wait()
                    await asyncio.gather(*runs)
                # Leadership is released only after the workers stopped writing.
                election_stop.set()
                background_stop.set()
                if self.forwarder is not None:
                    forwarder.cancel()
        finally:
            await self.close()

    async def _ready_to_work(self) -> bool:
        """Wait for synced informers and, with leader election, for leadership."""
        for informer in self.informers():
            await informer.wait_synced()
        log.info("informers synced")
        if self.elector is None:
            return True
        log.info("waiting for leadership", extra={"lease": self.elector.lease_name})
        return await self.elector.wait_leading()

    async def _until_stopped(self, waiting: Coroutine[Any, Any, bool]) -> bool:
        """``waiting``'s answer, or False when a stop is requested first."""
        work = asyncio.create_task(waiting, name="manager-wait")
        stopping = asyncio.create_task(self.stop.wait(), name="manager-stop-wait")
        done, _ = await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stopping):
            task.cancel()
        await asyncio.gather(work, stopping, return_exceptions=True)
        return work in done and not work.cancelled() and work.exception() is None \
            and work.result()

    async def _store_watch(self) -> None:
        """Notice a deleted, replaced or corrupted store file, recreate it and say so once.

        Every tick compares the file's identity and header (cheap); every
        ``DEEP_CHECK_EVERY``-th tick also reads the pages from disk (``quick_check``),
        because a running connection keeps serving garbled pages from its cache.
        """
        ticks = 0
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(),
                                       timeout=self.settings.store_check_interval)
            if self.stop.is_set():
                return
            ticks += 1
            if await self.store.check(quick_check=ticks % DEEP_CHECK_EVERY == 0):
                log.error("tag store was missing or corrupt and has been recreated; "
                          "repositories will be rescanned")
                for controller in self.controllers:
                    if controller.name == REPOSITORY_CONTROLLER:
                        for key in self.repositories.keys():  # noqa: SIM118 - not a dict
                            controller.queue.add(key)

    async def close(self) -> None:
        """Release every resource; safe to call more than once."""
        for endpoint in self.endpoints:
            await endpoint.close()
        self.endpoints.clear()
        for closer in reversed(self.closers):
            result = closer()
            if asyncio.iscoroutine(result):
                await result
        self.closers.clear()


def _utc_now() -> datetime:
    # Full precision: the no-op message shows the remaining time to the nanosecond as
    # Flux does; stored timestamps are truncated to seconds where they are written.
    return datetime.now(UTC)


async def build(settings: Settings, *, metrics: Metrics | None = None) -> Manager:
    """Construct every component from settings (nothing runs until :meth:`Manager.run`)."""
    metrics = metrics or Metrics()
    closers: list[Callable[[], Any]] = []
    # The kubeconfig first: a missing or broken one must fail before anything (the store's
    # worker thread above all) is open and would keep the process from exiting.
    kube = await KubeClient.connect(kubeconfig=settings.kubeconfig or None,
                                    qps=settings.kube_api_qps, burst=settings.kube_api_burst,
                                    observer=RestObserver(metrics))
    closers.append(kube.close)
    try:
        store = await SqliteTagStore.open(Path(settings.storage_path))
        closers.append(store.close)
        if await kube.detect_priority_and_fairness():
            log.info("the API server has Priority and Fairness: client-side rate limit is off")
    except BaseException:
        for closer in reversed(closers):
            await closer()
        raise
    if store.recreated_on_open:
        log.error("tag store was unusable and has been recreated; repositories will be "
                  "rescanned")
    registry = build_registry_client(qps=settings.registry_qps, burst=settings.registry_burst,
                                     max_pages=settings.max_tag_pages,
                                     max_tags=settings.max_tags_per_scan,
                                     max_bytes=settings.max_tag_bytes_per_scan,
                                     max_retry_after=settings.registry_max_retry_after,
                                     observer=metrics,
                                     dot_local_plain_http=not settings.flux_compatibility.latest,
                                     strict_realms=settings.flux_compatibility.latest)
    closers.append(registry.close)
    forwarder = EventForwarder(settings.events_addr) if settings.events_addr else None
    events = EventRecorder(kube.sibling(), forwarder=forwarder)
    options = InformerOptions(namespace=settings.watch_namespace(),
                              label_selector=settings.watch_label_selector or None)
    kube.use_versions(await image_api_versions(kube))
    repositories = Informer(kube, IMAGE_REPOSITORIES, options=options)
    policies = Informer(kube, IMAGE_POLICIES, options=options)
    # Namespace labels decide cross-namespace access, so they are watched cluster-wide.
    namespaces = Informer(kube, NAMESPACES, options=InformerOptions())
    policies.add_index(REPOSITORY_INDEX, repository_index)
    clouds = ProviderRegistry.default(
        autologin=AutologinFlags(aws=settings.aws_autologin_for_ecr,
                                 azure=settings.azure_autologin_for_acr,
                                 gcp=settings.gcp_autologin_for_gcr),
        observer=metrics, metrics=metrics, accounts=kube,
        max_size=settings.token_cache_max_size,
        max_duration=settings.token_cache_max_duration)
    resolver = CredentialResolver(
        reader=kube, clouds=clouds, compatibility=settings.flux_compatibility,
        workload_identity=WorkloadIdentity(
            enabled=settings.object_level_workload_identity,
            default_service_account=settings.default_service_account))
    reconciler = ImageRepositoryReconciler(RepositoryDeps(
        client=kube, store=store, lister=registry,
        resolver=resolver, events=events, metrics=metrics, now=_utc_now,
        compatibility=settings.flux_compatibility))
    repo_queue = _queue(settings, metrics, REPOSITORY_CONTROLLER)
    policy_queue = _queue(settings, metrics, POLICY_CONTROLLER)
    policy_reconciler = ImagePolicyReconciler(PolicyDeps(
        client=kube, store=store, repositories=_Lookup(repositories, namespaces),
        digests=RepositoryDigestResolver(resolver=resolver, registry=registry),
        events=events, metrics=metrics, now=_utc_now,
        no_cross_namespace_refs=settings.no_cross_namespace_refs,
        compatibility=settings.flux_compatibility,
        requeue_dependency=settings.requeue_dependency,
        workload_identity=resolver.workload_identity))

    async def reconcile_repository(key: str) -> Result:
        obj = repositories.get(key)
        if obj is None:
            # Gone (deleted without our finalizer, or filtered out): drop its tags.
            await store.delete(ObjectKey.parse(key))
            return Result()
        return await reconciler.reconcile(obj)

    async def reconcile_policy(key: str) -> Result:
        obj = policies.get(key)
        if obj is None:
            namespace, _, name = key.rpartition("/")
            metrics.delete_object(kind=meta.IMAGE_POLICY_KIND, name=name, namespace=namespace)
            return Result()
        return await policy_reconciler.reconcile(obj)

    def policies_of(repo: JSONObject) -> None:
        for policy in policies.by_index(REPOSITORY_INDEX, object_key(repo)):
            policy_queue.add(object_key(policy))

    def repository_updated(old: JSONObject, new: JSONObject) -> None:
        if predicates.image_repository_update(old, new):
            repo_queue.add(object_key(new))
        if repository_changed_for_policies(old, new):
            policies_of(new)

    def namespace_updated(old: JSONObject, new: JSONObject) -> None:
        if (old.get("metadata") or {}).get("labels") == (new.get("metadata") or {}).get("labels"):
            return
        name = str((new.get("metadata") or {}).get("name", ""))
        for policy in policies.list():
            if (policy.get("metadata") or {}).get("namespace") == name:
                policy_queue.add(object_key(policy))

    def repository_added_or_deleted(obj: JSONObject) -> None:
        repo_queue.add(object_key(obj))
        policies_of(obj)

    repositories.add_event_handler(on_add=repository_added_or_deleted,
                                   on_update=repository_updated,
                                   on_delete=repository_added_or_deleted)
    policies.add_event_handler(
        on_add=lambda obj: policy_queue.add(object_key(obj)),
        on_update=lambda old, new: (policy_queue.add(object_key(new))
                                    if predicates.image_policy_update(old, new) else None),
        on_delete=lambda obj: policy_queue.add(object_key(obj)),
    )
    namespaces.add_event_handler(on_update=namespace_updated)
    elector = _elector(settings, kube, metrics) if settings.enable_leader_election else None
    controllers = [
        Controller(name=REPOSITORY_CONTROLLER, kind=meta.IMAGE_REPOSITORY_KIND,
                   queue=repo_queue, reconcile=reconcile_repository,
                   workers=settings.concurrent, metrics=metrics),
        Controller(name=POLICY_CONTROLLER, kind=meta.IMAGE_POLICY_KIND, queue=policy_queue,
                   reconcile=reconcile_policy, workers=settings.concurrent, metrics=metrics),
    ]
    return Manager(settings=settings, metrics=metrics, store=store, kube=kube,
                   repositories=repositories, policies=policies, namespaces=namespaces,
                   controllers=controllers, events=events, forwarder=forwarder,
                   elector=elector, closers=closers)


# Discovery at startup: a few quick tries, then the storage version of our own CRDs.
_DISCOVERY_ATTEMPTS = 5
_DISCOVERY_BACKOFF = 0.5


async def image_api_versions(kube: KubeClient) -> dict[str, str]:
    """Which API version the controller reads and writes each image kind through
    (``plural.group`` -> version, for :meth:`KubeClient.use_versions`).

    Per kind, the first of ``meta.CONTROLLER_VERSIONS`` the API server serves: v1 with
    this project's CRDs (storage v1) and with Flux 2.7+'s, v1beta2 with Flux 2.2's or
    2.6's CRDs left in place (``install-crds`` never replaces a CRD). Either way it is the
    storage version, so a status written through it loses nothing the schema keeps.
    When discovery cannot answer (the group is not served yet, or the API server keeps
    failing), v1 is assumed: it is what ``manifests/`` installs.
    """
    served: dict[str, list[str]] = {}
    for attempt in range(_DISCOVERY_ATTEMPTS):
        try:
            served = await kube.served_resources(meta.GROUP, meta.CONTROLLER_VERSIONS)
            break
        except ApiError as err:
            if attempt == _DISCOVERY_ATTEMPTS - 1:
                log.error("API discovery failed; assuming version v1 of the image kinds",
                          extra={"error": str(err)})
            else:
                await asyncio.sleep(_DISCOVERY_BACKOFF * 2 ** attempt)
    chosen: dict[str, str] = {}
    for plural in (IMAGE_REPOSITORIES.plural, IMAGE_POLICIES.plural):
        resource = f"{plural}.{meta.GROUP}"
        version = next((v for v in meta.CONTROLLER_VERSIONS if plural in served.get(v, ())),
                       None)
        if version is None:
            log.warning("the API server does not serve this kind yet; using version v1",
                        extra={"resource": resource})
            version = meta.V1
        log.info("using API version", extra={"resource": resource, "version": version})
        chosen[resource] = version
    return chosen


def _elector(settings: Settings, kube: KubeClient, metrics: Metrics) -> LeaderElector:
    """A Lease elector in the controller's own namespace (``RUNTIME_NAMESPACE``)."""
    namespace = settings.runtime_namespace or _pod_namespace()
    if not namespace:
        raise ValueError("leader election needs the controller's namespace: set "
                         "RUNTIME_NAMESPACE (the Deployment sets it from metadata.namespace)")

    def report(name: str, leading: bool) -> None:
        metrics.leader_election_master.labels(name).set(1 if leading else 0)

    return LeaderElector(
        kube, namespace=namespace, name=settings.leader_election_id(),
        identity=default_identity(), lease_duration=settings.leader_election_lease_duration,
        renew_deadline=settings.leader_election_renew_deadline,
        retry_period=settings.leader_election_retry_period,
        release_on_cancel=settings.leader_election_release_on_cancel, report_status=report)


def _pod_namespace() -> str:
    """The namespace of the service account in a Pod, "" outside one."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return ""


def _queue(settings: Settings, metrics: Metrics, name: str) -> RateLimitingQueue[str]:
    return RateLimitingQueue(
        rate_limiter=ItemExponentialFailureRateLimiter(base=settings.min_retry_delay,
                                                       cap=settings.max_retry_delay),
        metrics=WorkqueueMetrics(metrics, name))


def repository_changed_for_policies(old: JSONObject, new: JSONObject) -> bool:
    """Whether dependent policies must be re-evaluated (contract A2): a new scan revision,
    a spec change (image, ACL), or deletion — not every status patch."""
    def revision(obj: JSONObject) -> object:
        result = (obj.get("status") or {}).get("lastScanResult") or {}
        # Flux 2.2's CRDs have no revision field and the API server prunes it: then
        # every new scan (a new scan time) counts as a change.
        return result.get("revision", result)

    def generation(obj: JSONObject) -> object:
        return (obj.get("metadata") or {}).get("generation")

    return (revision(old) != revision(new) or generation(old) != generation(new)
            or predicates.deletion_started(old, new))


class _Lookup:
    """Repositories and namespace labels from the informer caches (no API calls)."""

    def __init__(self, repositories: Informer, namespaces: Informer) -> None:
        self._repositories = repositories
        self._namespaces = namespaces

    def get_repository(self, namespace: str, name: str) -> JSONObject | None:
        return self._repositories.get(f"{namespace}/{name}")

    async def get_namespace_labels(self, name: str) -> dict[str, str]:
        found = self._namespaces.get(name)
        if found is None:
            raise LookupError(f'namespaces "{name}" not found')
        labels = (found.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


async def run_controller(settings: Settings) -> None:
    """Build and run the manager until SIGTERM or SIGINT."""
    manager = await build(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, manager.stop.set)
    log.info("starting imagereflector controller")
    await manager.run()
    log.info("stopped")
