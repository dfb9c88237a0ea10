"""Several controller processes at once: leader election and sharding, as deployed.

Real ``imagereflector controller`` processes against the fake API server and the real
registry. Which process did the work is read from each process's own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.app.test_controller_process import clean_env, wait_http
from tests.controllers.harness import REPOS, is_ready_with, repository
from tests.fakes.kubeapi import FakeKubeAPI, running_kubeapi
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


def _kubeconfig(api: FakeKubeAPI, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return api.write_kubeconfig(directory / "kubeconfig")


@asynccontextmanager
async def controller(api: FakeKubeAPI, tmp: Path, *args: str) -> AsyncIterator[Controller]:
    metrics_port, health_port = free_port(), free_port()
    kubeconfig = _kubeconfig(api, tmp)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagereflector", "controller", "--kubeconfig", str(kubeconfig),
        f"--storage-path={tmp / 'data'}", f"--metrics-addr=127.0.0.1:{metrics_port}",
        f"--health-addr=127.0.0.1:{health_port}", "--min-retry-delay=50ms", *args,
        env=clean_env(RUNTIME_NAMESPACE="default"), stderr=asyncio.subprocess.DEVNULL)
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


async def wait_until(check: object, *, what: str) -> None:
    assert callable(check)
    for _ in range(1000):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def ready_with(api: FakeKubeAPI, name: str, tags: int) -> object:
    def check() -> bool:
        obj = api.get(REPOS, "default", name)
        return obj is not None and is_ready_with(f"found {tags} tags")(obj)
    return check


async def test_only_the_leader_reconciles_and_a_standby_takes_over(
        registry: RegistryProcess, tmp_path: Path) -> None:
    registry.write_tags("app", ["a", "b"])
    async with running_kubeapi() as api, \
            controller(api, tmp_path / "one", *FAST_ELECTION) as one, \
            controller(api, tmp_path / "two", *FAST_ELECTION) as two:
        for name in ("r1", "r2", "r3"):
            api.create(repository(name, f"{registry.host}/app"))
        for name in ("r1", "r2", "r3"):
            await wait_until(ready_with(api, name, 2), what=f"{name} ready")
        leader, standby = (one, two) if await one.leading() else (two, one)
        assert await leader.leading()
        assert not await standby.leading()
        lease = api.get("leases", "default", LEASE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"]
        for name in ("r1", "r2", "r3"):
            assert await leader.reconciled(name)
            assert not await standby.reconciled(name)
        leader.process.kill()
        await leader.process.wait()
        api.create(repository("r4", f"{registry.host}/app"))
        await wait_until(ready_with(api, "r4", 2), what="r4 ready after the takeover")
        assert await standby.leading()
        assert await standby.reconciled("r4")
        lease = api.get("leases", "default", LEASE)
        assert lease is not None
        assert lease["spec"]["leaseTransitions"] >= 1


async def test_two_shards_never_reconcile_the_same_object(registry: RegistryProcess,
                                                          tmp_path: Path) -> None:
    registry.write_tags("app", ["a"])
    shards = ("shard1", "shard2")
    async with running_kubeapi() as api, \
            controller(api, tmp_path / "s1", *FAST_ELECTION,
                       "--watch-label-selector=sharding.fluxcd.io/key=shard1") as first, \
            controller(api, tmp_path / "s2", *FAST_ELECTION,
                       "--watch-label-selector=sharding.fluxcd.io/key=shard2") as second:
        for index in range(6):
            obj = repository(f"r{index}", f"{registry.host}/app")
            obj["metadata"]["labels"] = {"sharding.fluxcd.io/key": shards[index % 2]}
            api.create(obj)
        for index in range(6):
            await wait_until(ready_with(api, f"r{index}", 1), what=f"r{index} ready")
        for index in range(6):
            mine, other = (first, second) if index % 2 == 0 else (second, first)
            assert await mine.reconciled(f"r{index}")
            assert not await other.reconciled(f"r{index}")
        for selector in ("sharding.fluxcd.io/key=shard1", "sharding.fluxcd.io/key=shard2"):
            suffix = hashlib.sha256(selector.encode()).hexdigest()[:8]
            assert api.get("leases", "default", f"{LEASE}-{suffix}") is not None
