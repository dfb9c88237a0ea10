"""Workers that drain a workqueue into a reconcile function (controller-runtime's loop).

For each key: ``get`` → reconcile → decide the requeue → ``done`` in ``finally``:

* an error: ``add_rate_limited`` (per-item exponential backoff), except a
  ``WaitingError`` that names its own delay, which is re-added after that delay;
* ``requeue_after > 0``: ``forget`` the failures, then ``add_after``;
* ``requeue``: ``add_rate_limited``;
* otherwise: ``forget``.

Shutdown: once stopped, workers take no new keys; keys in flight get ``grace`` seconds to
finish, then their reconciles are cancelled. A crashing reconcile never kills a worker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from imagereflector.kube.reconcile import Result, WaitingError
from imagereflector.kube.workqueue import RateLimitingQueue, ShutDown
from imagereflector.log import log_context
from imagereflector.metrics import Metrics

Reconcile = Callable[[str], Awaitable[Result]]
DEFAULT_GRACE: Final = 10.0

log = logging.getLogger("imagereflector.controller")


class Controller:
    """``workers`` tasks reconciling keys from ``queue`` with ``reconcile``."""

    def __init__(self, *, name: str, kind: str, queue: RateLimitingQueue[str],
                 reconcile: Reconcile, workers: int, metrics: Metrics) -> None:
        self.name = name
        self.kind = kind
        self.queue = queue
        self._reconcile = reconcile
        self._workers = workers
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event, *, grace: float = DEFAULT_GRACE) -> None:
        """Run the workers until ``stop`` is set, then drain in-flight work within ``grace``."""
        self._metrics.max_concurrent_reconciles.labels(self.name).set(self._workers)
        self._metrics.active_workers.labels(self.name).set(0)
        # Export zero-valued error counters from the start, as controller-runtime does.
        self._metrics.reconcile_errors.labels(self.name)
        self._metrics.terminal_reconcile_errors.labels(self.name)
        async with asyncio.TaskGroup() as group:
            for index in range(self._workers):
                group.create_task(self._worker(), name=f"{self.name}-worker-{index}")
            await stop.wait()
            self._stopping.set()
            self.queue.shut_down()
            if self._in_flight:
                _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
                for task in pending:
                    log.info("cancelling reconcile still running after the grace period",
                             extra={"fields": {"controller": self.name}})
                    task.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if isinstance(key, ShutDown):
                return
            if self._stopping.is_set():
                self.queue.done(key)
                return
            task = asyncio.current_task()
            assert task is not None
            self._metrics.active_workers.labels(self.name).inc()
            reconcile_task = asyncio.create_task(self._process(key), name=f"{self.name}:{key}")
            self._in_flight.add(reconcile_task)
            try:
                await asyncio.shield(reconcile_task)
            except asyncio.CancelledError:
                if not reconcile_task.done():
                    raise
            finally:
                self._in_flight.discard(reconcile_task)
                self._metrics.active_workers.labels(self.name).dec()
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        namespace, _, name = key.rpartition("/")
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "success"
        with log_context(controller=self.name, controllerGroup="image.toolkit.fluxcd.io",
                         controllerKind=self.kind, name=name, namespace=namespace,
                         reconcileID=str(uuid.uuid4())):
            try:
                result = await self._reconcile(key)
            except asyncio.CancelledError:
                # Cancelled at shutdown: the next leader or start picks the key up again.
                outcome = "error"
                raise
            except WaitingError as err:
                outcome = "error"
                self._metrics.reconcile_errors.labels(self.name).inc()
                if err.requeue_after is not None:
                    self.queue.add_after(key, err.requeue_after)
                else:
                    self.queue.add_rate_limited(key)
            except Exception as err:  # every failure is retried with backoff
                outcome = "error"
                self._metrics.reconcile_errors.labels(self.name).inc()
                log.debug("reconcile failed, retrying with backoff",
                          extra={"fields": {"error": str(err)}})
                self.queue.add_rate_limited(key)
            else:
                if result.requeue_after > 0:
                    outcome = "requeue_after"
                    self.queue.forget(key)
                    self.queue.add_after(key, result.requeue_after)
                elif result.requeue:
                    outcome = "requeue"
                    self.queue.add_rate_limited(key)
                else:
                    self.queue.forget(key)
            finally:
                self._metrics.reconcile_total.labels(self.name, outcome).inc()
                self._metrics.reconcile_time.labels(self.name).observe(loop.time() - started)
