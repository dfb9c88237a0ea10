"""The controller process killed with SIGKILL mid-scan, and stopped with SIGTERM mid-scan.

Proves, running ``python -m imagereflector controller`` against the real API server
(through the recording proxy, which also holds the status patch, as the manifests'
ServiceAccount) and the real registry:

* SIGKILL at the worst moment for consistency (a rescan's new tag list already written to
  the store, its status patch held in flight by the API server, another object's scan
  hanging at the registry) leaves an intact SQLite file whose every row is whole; after a
  restart every object converges: its stored tags are exactly the ones its
  ``lastScanResult`` counts (same count, same revision), and the pending reconcile request
  is recorded as handled.
* SIGTERM while reconciles hang on the registry: the process still exits 0 (in-flight
  reconciles are cancelled after the grace period) and leaves a checkpointed, intact
  database.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from imagereflector.registry.tags import tags_revision
from tests.controllers.harness import is_ready_with, repository
from tests.controllers.realharness import REPOS, AdminApi, KubeTest
from tests.fakes.fronts import FaultFront, PaginatingFront
from tests.fakes.kubeproxy import KubeProxy
from tests.fakes.registry import RegistryProcess
from tests.reliability.support import (
    annotate,
    integrity,
    reap,
    start_controller,
    status_of,
    stored_rows,
    wait_object,
)

FIRST = [f"v{i:05d}" for i in range(3000)]
SECOND = [*FIRST, "v99999"]


def status_patches(proxy: KubeProxy, ns: str) -> int:
    return len(proxy.calls(verb="patch", resource=REPOS, subresource="status", namespace=ns))


def assert_status_matches_store(api: AdminApi, database: Path,
                                objects: list[tuple[str, str]]) -> None:
    rows = stored_rows(database)
    for ns, name in objects:
        obj = api.get(REPOS, ns, name)
        assert obj is not None
        result = status_of(obj)["lastScanResult"]
        revision, tags = rows[(ns, name)]
        assert result["tagCount"] == len(tags), name
        assert result["revision"] == revision == tags_revision(tags), name


async def test_sigkill_mid_scan_then_restart_converges(registry: RegistryProcess,
                                                       kube: KubeTest, tmp_path: Path) -> None:
    registry.write_tags("big", FIRST)
    registry.write_tags("hung", ["a", "b"])
    storage = tmp_path / "data"
    database = storage / "tags.db"
    log = tmp_path / "controller.log"
    api, proxy = kube.api, kube.proxy
    selector = f"--watch-label-selector={kube.selector}"
    async with PaginatingFront(registry, default_page_size=100) as pages, \
            FaultFront(registry) as faults:
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
        ahead, pending = kube.namespace("ahead"), kube.namespace("pending")
        api.create(repository("app", pages.ref("big"), namespace=ahead))
        process = await start_controller(kubeconfig, storage, log, selector)
        try:
            await wait_object(api, REPOS, ahead, "app", is_ready_with("found 3000 tags"),
                              process=process)
            # A scan that hangs at the registry: in flight when the process dies.
            faults.hang_next(1, path="/tags/list")
            api.create(repository("app", faults.ref("hung"), namespace=pending))
            while not any(r.path.endswith("/tags/list") for r in faults.requests):
                assert process.returncode is None
                await asyncio.sleep(0.02)
            # A rescan whose status patch is held: the store gets ahead of the status.
            registry.write_tags("big", SECOND)
            before = status_patches(proxy, ahead)
            annotate(api, REPOS, "app", "during-kill", namespace=ahead)
            # Progress for the request, then "scanning: reconcile requested".
            await asyncio.wait_for(proxy.wait_for_calls(
                before + 2, verb="patch", resource=REPOS, subresource="status",
                namespace=ahead), timeout=30)
            # The proxy holds every request from here: the final status patch arrives
            # and is never forwarded (the API server never sees it).
            proxy.pause()
            await asyncio.wait_for(proxy.wait_for_calls(
                before + 3, verb="patch", resource=REPOS, subresource="status",
                namespace=ahead), timeout=30)
            process.kill()
            assert await process.wait() == -signal.SIGKILL
        finally:
            proxy.resume()
            await reap(process)

        # The kill landed where meant: the store holds the rescan, the status does not.
        assert integrity(database) == "ok"
        rows = stored_rows(database)
        assert rows[(ahead, "app")][1] == SECOND
        assert (pending, "app") not in rows
        held = api.get(REPOS, ahead, "app")
        assert held is not None
        assert status_of(held)["lastScanResult"]["tagCount"] == len(FIRST)

        process = await start_controller(kubeconfig, storage, log, selector)
        try:
            await wait_object(api, REPOS, ahead, "app", lambda o: is_ready_with(
                f"found {len(SECOND)} tags")(o) and status_of(o).get(
                "lastHandledReconcileAt") == "during-kill", process=process)
            await wait_object(api, REPOS, pending, "app", is_ready_with("found 2 tags"),
                              process=process)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        finally:
            await reap(process)
    assert integrity(database) == "ok"
    assert_status_matches_store(api, database, [(ahead, "app"), (pending, "app")])


async def test_sigterm_with_reconciles_hanging_exits_cleanly(registry: RegistryProcess,
                                                             kube: KubeTest,
                                                             tmp_path: Path) -> None:
    registry.write_tags("app", ["1", "2", "3"])
    storage = tmp_path / "data"
    log = tmp_path / "controller.log"
    api = kube.api
    async with FaultFront(registry) as front:
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
        api.create(repository("done", f"{registry.host}/app"))
        for k in range(4):
            api.create(repository(f"hang-{k}", front.ref("app")))
        front.hang_next(4, path="/tags/list")
        process = await start_controller(kubeconfig, storage, log,
                                         f"--watch-label-selector={kube.selector}")
        try:
            await wait_object(api, REPOS, kube.ns, "done", is_ready_with("found 3 tags"),
                              process=process)
            while sum(r.path.endswith("/tags/list") for r in front.requests) < 4:
                assert process.returncode is None
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            # Bounded generously: the grace period is 10 s; the exit itself is the proof.
            assert await asyncio.wait_for(process.wait(), timeout=40) == 0
        finally:
            await reap(process)
    text = log.read_text()
    assert "cancelling reconcile still running after the grace period" in text
    assert '"msg":"stopped"' in text
    database = storage / "tags.db"
    assert integrity(database) == "ok"
    assert set(stored_rows(database)) == {(kube.ns, "done")}
    wal = database.with_name("tags.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
