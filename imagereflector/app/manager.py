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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagereflector.api import meta
from imagereflector.app.registry import build_registry_client
from imagereflector.config import Settings
from imagereflector.controllers.imagerepository import (
    CONTROLLER as REPOSITORY_CONTROLLER,
)
from imagereflector.controllers.imagerepository import (
    ImageRepositoryReconciler,
    RepositoryDeps,
)
from imagereflector.credentials.resolver import CredentialResolver
from imagereflector.health import HttpEndpoint, serve_health, serve_metrics
from imagereflector.kube import predicates
from imagereflector.kube.client import IMAGE_REPOSITORIES, KubeClient
from imagereflector.kube.controller import Controller
from imagereflector.kube.events import EventForwarder, EventRecorder
from imagereflector.kube.informer import Informer, InformerOptions, object_key
from imagereflector.kube.ratelimit import ItemExponentialFailureRateLimiter
from imagereflector.kube.reconcile import Result
from imagereflector.kube.workqueue import RateLimitingQueue
from imagereflector.metrics import Metrics, WorkqueueMetrics
from imagereflector.store.base import ObjectKey
from imagereflector.store.sqlite import SqliteTagStore

log = logging.getLogger("imagereflector.manager")


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
    controllers: list[Controller]
    events: EventRecorder
    forwarder: EventForwarder | None
    closers: list[Callable[[], Any]] = field(default_factory=list)
    endpoints: list[HttpEndpoint] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def ready(self) -> bool:
        """Informers synced and the store open (``/readyz``)."""
        return self.repositories.has_synced() and self.store.is_open

    async def run(self) -> None:
        """Serve until :attr:`stop` is set; then shut down in order."""
        self.endpoints.append(await serve_metrics(self.settings.metrics_addr,
                                                  self.metrics.registry))
        self.endpoints.append(await serve_health(
            self.settings.health_addr,
            {"informers": lambda: self.repositories.has_synced(),
             "store": lambda: self.store.is_open}))
        informer_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.repositories.run(informer_stop), name="informer:repos")
                group.create_task(self.events.run(informer_stop), name="events")
                if self.forwarder is not None:
                    forwarder = group.create_task(self.forwarder.run(), name="event-forwarder")
                group.create_task(self._store_watch(), name="store-check")
                await self.repositories.wait_synced()
                log.info("informers synced, starting workers")
                runs = [group.create_task(c.run(self.stop), name=f"controller:{c.name}")
                        for c in self.controllers]
                await self.stop.wait()
                await asyncio.gather(*runs)
                informer_stop.set()
                if self.forwarder is not None:
                    forwarder.cancel()
        finally:
            await self.close()

    async def _store_watch(self) -> None:
        """Notice a deleted or replaced store file, recreate it and say so once."""
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(),
                                       timeout=self.settings.store_check_interval)
            if self.stop.is_set():
                return
            if await self.store.check():
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
    store = await SqliteTagStore.open(Path(settings.storage_path))
    closers.append(store.close)
    if store.recreated_on_open:
        log.error("tag store was unusable and has been recreated; repositories will be "
                  "rescanned")
    kube = await KubeClient.connect(kubeconfig=settings.kubeconfig or None,
                                    qps=settings.kube_api_qps, burst=settings.kube_api_burst,
                                    observer=RestObserver(metrics))
    closers.append(kube.close)
    registry = build_registry_client(qps=settings.registry_qps, burst=settings.registry_burst,
                                     max_pages=settings.max_tag_pages,
                                     max_retry_after=settings.registry_max_retry_after,
                                     observer=metrics)
    closers.append(registry.close)
    forwarder = EventForwarder(settings.events_addr) if settings.events_addr else None
    events = EventRecorder(kube, forwarder=forwarder)
    options = InformerOptions(namespace=settings.watch_namespace(),
                              label_selector=settings.watch_label_selector or None)
    repositories = Informer(kube, IMAGE_REPOSITORIES, options=options)
    reconciler = ImageRepositoryReconciler(RepositoryDeps(
        client=kube, store=store, lister=registry,
        resolver=CredentialResolver(reader=kube), events=events, metrics=metrics,
        now=_utc_now))
    repo_queue: RateLimitingQueue[str] = RateLimitingQueue(
        rate_limiter=ItemExponentialFailureRateLimiter(base=settings.min_retry_delay,
                                                       cap=settings.max_retry_delay),
        metrics=WorkqueueMetrics(metrics, REPOSITORY_CONTROLLER))

    async def reconcile_repository(key: str) -> Result:
        obj = repositories.get(key)
        if obj is None:
            # Gone (deleted without our finalizer, or filtered out): drop its tags.
            await store.delete(ObjectKey.parse(key))
            return Result()
        return await reconciler.reconcile(obj)

    repositories.add_event_handler(
        on_add=lambda obj: repo_queue.add(object_key(obj)),
        on_update=lambda old, new: (repo_queue.add(object_key(new))
                                    if predicates.image_repository_update(old, new) else None),
        on_delete=lambda obj: repo_queue.add(object_key(obj)),
    )
    controllers = [Controller(name=REPOSITORY_CONTROLLER, kind=meta.IMAGE_REPOSITORY_KIND,
                              queue=repo_queue, reconcile=reconcile_repository,
                              workers=settings.concurrent, metrics=metrics)]
    return Manager(settings=settings, metrics=metrics, store=store, kube=kube,
                   repositories=repositories, controllers=controllers, events=events,
                   forwarder=forwarder, closers=closers)


async def run_controller(settings: Settings) -> None:
    """Build and run the manager until SIGTERM or SIGINT."""
    manager = await build(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, manager.stop.set)
    log.info("starting imagereflector controller")
    await manager.run()
    log.info("stopped")
