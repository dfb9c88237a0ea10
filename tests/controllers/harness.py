"""A running controller process in-process: the fake API server, the real manager.

``start_cluster`` builds the manager exactly as ``imagereflector controller`` does, but
against the fake API server's kubeconfig, a tmp store and ephemeral ports, with short
retry delays so failure paths finish quickly. Helpers wait for conditions by watching
the fake's state, never by sleeping a fixed time.

The controller tests run on the real API server (``realharness.py``); this fake-backed
``start_cluster`` is kept for the tests that need what only the fake can do on cue
(``docs/architecture.md``, "Tests"). The checks and builders below (conditions, kstatus,
``repository``) serve both harnesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from imagereflector.api.meta import Condition
from imagereflector.app.manager import Manager, build
from imagereflector.config import Settings
from imagereflector.kube import conditions as cond
from imagereflector.metrics import Metrics
from tests.fakes.kubeapi import FakeKubeAPI

JSON = dict[str, Any]
REPOS = "imagerepositories"
POLICIES = "imagepolicies"


@dataclasses.dataclass
class Cluster:
    """The fake API server plus one running manager."""

    api: FakeKubeAPI
    manager: Manager
    task: asyncio.Task[None]
    settings: Settings

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.manager.endpoints[0].bound_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.manager.endpoints[1].bound_port}"

    async def wait_for(self, resource: str, namespace: str, name: str,
                       check: Callable[[JSON], bool], *, within: float = 20.0) -> JSON:
        """Poll the fake's state (no HTTP) until ``check`` holds; fail with the last state."""
        last: JSON | None = None
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if self.task.done():
                self.task.result()
            last = self.api.get(resource, namespace, name)
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting on {namespace}/{name}: {last}")

    async def wait_gone(self, resource: str, namespace: str, name: str) -> None:
        """Wait until the object no longer exists."""
        deadline = asyncio.get_running_loop().time() + 20
        while self.api.get(resource, namespace, name) is not None:
            assert asyncio.get_running_loop().time() < deadline, "object not removed"
            await asyncio.sleep(0.02)

    async def scrape(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as resp:
            assert resp.status == 200
            return await resp.text()

    async def stop(self) -> None:
        self.manager.stop.set()
        await asyncio.wait_for(self.task, timeout=20)


@contextlib.asynccontextmanager
async def recorded_statuses(api: FakeKubeAPI, plural: str = REPOS) -> AsyncIterator[list[JSON]]:
    """Collect every version of every object of ``plural`` the API server stores."""
    seen: list[JSON] = []
    url = f"{api.url}/apis/image.toolkit.fluxcd.io/v1beta2/{plural}?watch=true"

    async def follow() -> None:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            async for line in resp.content:
                event = json.loads(line)
                if event["type"] in ("ADDED", "MODIFIED"):
                    seen.append(event["object"])

    task = asyncio.create_task(follow(), name="status-recorder")
    await api.wait_for_calls(1, verb="watch", resource=plural)
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def kstatus_problems(objects: list[JSON]) -> list[str]:
    """Every kstatus rule broken by any stored version (progress patches allowed)."""
    problems = []
    for obj in objects:
        status = obj.get("status") or {}
        if not status.get("conditions"):
            continue
        conditions = conditions_of(obj)
        found = cond.kstatus_violations(
            conditions, generation=int(obj["metadata"]["generation"]),
            observed_generation=int(status.get("observedGeneration", -1)),
            in_progress=cond.is_true(conditions, "Reconciling"))
        problems += [f"{obj['metadata']['name']}@{obj['metadata']['resourceVersion']}: {p}"
                     for p in found]
    return problems


def conditions_of(obj: JSON) -> list[Condition]:
    """The parsed ``status.conditions`` of an object."""
    return [Condition.model_validate(c) for c in (obj.get("status") or {}).get("conditions", [])]


def ready(obj: JSON) -> Condition | None:
    """The Ready condition, if any."""
    return cond.get(conditions_of(obj), "Ready")


def is_ready_with(message_part: str) -> Callable[[JSON], bool]:
    """A check: Ready=True and settled, with ``message_part`` in the message."""
    def check(obj: JSON) -> bool:
        found = ready(obj)
        return (found is not None and found.status == "True"
                and cond.is_ready(conditions_of(obj)) and message_part in found.message)
    return check


def has_ready_reason(reason: str, status: str = "False") -> Callable[[JSON], bool]:
    """A check: Ready has ``status`` with ``reason``."""
    def check(obj: JSON) -> bool:
        found = ready(obj)
        return found is not None and found.status == status and found.reason == reason
    return check


def failed_for_good(reason: str, message: str = "", *, stalled: bool = False,
                    retried: bool = True) -> Callable[[JSON], bool]:
    """A check: the final status of a failed reconcile, never a progress patch.

    Ready=False with ``reason`` (and ``message``) is also what an object shows while its
    next attempt runs: that attempt's progress patch sets Reconciling to ``Progressing``
    and keeps the old Ready. Waiting for Ready alone and then asserting Reconciling races
    with the retry; this waits for both at once: Reconciling=``ProgressingWithRetry``
    for a failure that is retried, Stalled=True for one that stalls, and no Reconciling
    at all for one that waits for a change elsewhere (``retried=False``).
    """
    def check(obj: JSON) -> bool:
        conditions = conditions_of(obj)
        found = cond.get(conditions, "Ready")
        if found is None or (found.status, found.reason) != ("False", reason):
            return False
        if message and found.message != message:
            return False
        if stalled:
            return cond.is_true(conditions, "Stalled")
        reconciling = cond.get(conditions, "Reconciling")
        if not retried:
            return reconciling is None
        return reconciling is not None and reconciling.reason == "ProgressingWithRetry"
    return check


def repository(name: str, image: str, *, namespace: str | None = None, interval: str = "1h",
               **spec: Any) -> JSON:
    """An ImageRepository manifest; without ``namespace`` the API helper's default
    namespace applies ("default" on the fake, the test's own on the real server)."""
    metadata: JSON = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
            "metadata": metadata, "spec": {"image": image, "interval": interval, **spec}}


@contextlib.asynccontextmanager
async def start_cluster(tmp_path: Path, api: FakeKubeAPI | None = None,
                        **overrides: Any) -> AsyncIterator[Cluster]:
    """Start a manager against ``api`` (or a new fake) with test-friendly settings."""
    owned = api is None
    if api is None:
        api = FakeKubeAPI(bookmark_interval=1.0)
        await api.start()
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    settings = Settings(**{
        "kubeconfig": str(kubeconfig), "storage_path": str(tmp_path / "data"),
        "metrics_addr": "127.0.0.1:0", "health_addr": "127.0.0.1:0",
        "min_retry_delay": 0.05, "max_retry_delay": 1.0, "registry_qps": 0.0,
        "store_check_interval": 0.2, **overrides})
    manager = await build(settings, metrics=Metrics(CollectorRegistry()))
    task = asyncio.create_task(manager.run(), name="manager-under-test")
    while not manager.endpoints:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    cluster = Cluster(api=api, manager=manager, task=task, settings=settings)
    try:
        yield cluster
    finally:
        if not task.done():
            await cluster.stop()
        if owned:
            await api.close()
