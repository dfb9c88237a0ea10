"""Several controller processes at once: leader election and sharding, as deployed.

Real ``imagereflector controller`` processes against the real API server, straight over
https with the manifests' ServiceAccount token and CA (no proxy), in the manifests'
namespace (``RUNTIME_NAMESPACE=image-reflector-system``): their Leases are created and
renewed under the leader-election Role exactly as installed. Each process watches only
this test's objects (its label in ``--watch-label-selector``), which also gives its
Lease a name of its own on the shared cluster. Which process did the work is read from
each process's own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from testbed.pytest_plugin import CONTROLLER_NAMESPACE
from tests.app.test_controller_process import clean_env, wait_http
from tests.controllers.harness import is_ready_with, repository
from tests.controllers.realharness import REPOS, KubeTest
from tests.fakes.registry import RegistryProcess, free_port

LEASE = "image-reflector-controller-leader-election"
FAST_ELECTION = ("--enable-leader-election", "--leader-election-lease-duration=2s",
                 "--leader-election-renew-deadline=1.5s", "--leader-election-retry-period=0.2s")


@dataclass
class Controller:
    process: asyncio.subprocess.Process
    metrics_port: int

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{self.metrics_port}/metrics") as resp:
            return await resp.text()

    async def reconciled(self, name: str) -> bool:
        return f'kind="ImageRepository",name="{name}"' in await self.metrics()

    async def leading(self) -> bool:
        return re.search(r"leader_election_master_status\{[^}]*\} 1\.0",
                         await self.metrics()) is not None


def lease_name(selector: str) -> str:
    """The Lease of a controller with ``--watch-label-selector=selector``."""
    return f"{LEASE}-{hashlib.sha256(selector.encode()).hexdigest()[:8]}"


@asynccontextmanager
async def controller(kube: KubeTest, tmp: Path, selector: str,
                     *args: str) -> AsyncIterator[Controller]:
    metrics_port, health_port = free_port(), free_port()
    lease = lease_name(selector)
    kube.on_teardown(lambda: kube.api.delete("leases", CONTROLLER_NAMESPACE, lease))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagereflector", "controller",
        "--kubeconfig", str(kube.installed.controller_kubeconfig),
        f"--storage-path={tmp / 'data'}", f"--metrics-addr=127.0.0.1:{metrics_port}",
        f"--health-addr=127.0.0.1:{health_port}", "--min-retry-delay=50ms",
        f"--watch-label-selector={selector}", *args,
        env=clean_env(RUNTIME_NAMESPACE=CONTROLLER_NAMESPACE),
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_http(f"http://127.0.0.1:{health_port}/readyz")
        yield Controller(process, metrics_port)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_until(check: Callable[[], Awaitable[bool]], *, what: str,
                     within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def ready_with(kube: KubeTest, name: str, tags: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        obj = await kube.api.aget(REPOS, kube.ns, name)
        return obj is not None and is_ready_with(f"found {tags} tags")(obj)
    return check


async def test_only_the_leader_reconciles_and_a_standby_takes_over(
        registry: RegistryProcess, kube: KubeTest, tmp_path: Path) -> None:
    registry.write_tags("app", ["a", "b"])
    selector = kube.selector
    async with controller(kube, tmp_path / "one", selector, *FAST_ELECTION) as one, \
            controller(kube, tmp_path / "two", selector, *FAST_ELECTION) as two:
        for name in ("r1", "r2", "r3"):
            kube.api.create(repository(name, f"{registry.host}/app"))
        for name in ("r1", "r2", "r3"):
            await wait_until(ready_with(kube, name, 2), what=f"{name} ready")
        leader, standby = (one, two) if await one.leading() else (two, one)
        assert await leader.leading()
        assert not await standby.leading()
        lease = kube.api.get("leases", CONTROLLER_NAMESPACE, lease_name(selector))
        assert lease is not None
        holder = lease["spec"]["holderIdentity"]
        assert holder
        for name in ("r1", "r2", "r3"):
            assert await leader.reconciled(name)
            assert not await standby.reconciled(name)
        leader.process.kill()
        await leader.process.wait()
        kube.api.create(repository("r4", f"{registry.host}/app"))
        await wait_until(ready_with(kube, "r4", 2), what="r4 ready after the takeover")
        assert await standby.leading()
        assert await standby.reconciled("r4")
        lease = kube.api.get("leases", CONTROLLER_NAMESPACE, lease_name(selector))
        assert lease is not None
        assert lease["spec"]["leaseTransitions"] >= 1
        assert lease["spec"]["holderIdentity"] != holder


async def test_two_shards_never_reconcile_the_same_object(registry: RegistryProcess,
                                                          kube: KubeTest,
                                                          tmp_path: Path) -> None:
    registry.write_tags("app", ["a"])
    shards = ("shard1", "shard2")
    selectors = [f"sharding.fluxcd.io/key={shard},{kube.selector}" for shard in shards]
    async with controller(kube, tmp_path / "s1", selectors[0], *FAST_ELECTION) as first, \
            controller(kube, tmp_path / "s2", selectors[1], *FAST_ELECTION) as second:
        for index in range(6):
            obj = repository(f"r{index}", f"{registry.host}/app")
            obj["metadata"]["labels"] = {"sharding.fluxcd.io/key": shards[index % 2]}
            kube.api.create(obj)
        for index in range(6):
            await wait_until(ready_with(kube, f"r{index}", 1), what=f"r{index} ready")
        for index in range(6):
            mine, other = (first, second) if index % 2 == 0 else (second, first)
            assert await mine.reconciled(f"r{index}")
            assert not await other.reconciled(f"r{index}")
        for selector in selectors:
            assert kube.api.get("leases", CONTROLLER_NAMESPACE, lease_name(selector)) \
                is not None
