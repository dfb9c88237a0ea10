"""The controller process killed with SIGKILL mid-scan, and stopped with SIGTERM mid-scan.

Proves, running ``python -m imagereflector controller`` against the fake API server and
the real registry:

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
from tests.controllers.harness import REPOS, is_ready_with, repository
from tests.fakes.fronts import FaultFront, PaginatingFront
from tests.fakes.kubeapi import FakeKubeAPI, running_kubeapi
from tests.fakes.registry import RegistryProcess
from tests.reliability.support import (
    JSON,
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


def namespace(name: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def status_patches(api: FakeKubeAPI, ns: str) -> int:
    return len(api.calls(verb="patch", resource=REPOS, subresource="status", namespace=ns))


def assert_status_matches_store(api: FakeKubeAPI, database: Path,
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
                                                       tmp_path: Path) -> None:
    registry.write_tags("big", FIRST)
    registry.write_tags("hung", ["a", "b"])
    storage = tmp_path / "data"
    database = storage / "tags.db"
    log = tmp_path / "controller.log"
    async with running_kubeapi(bookmark_interval=1.0) as api, \
            PaginatingFront(registry, default_page_size=100) as pages, \
            FaultFront(registry) as faults:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        for ns in ("ahead", "pending"):
            api.create(namespace(ns))
        api.create(repository("app", pages.ref("big"), namespace="ahead"))
        process = await start_controller(kubeconfig, storage, log)
        try:
            await wait_object(api, REPOS, "ahead", "app", is_ready_with("found 3000 tags"),
                              process=process)
            # A scan that hangs at the registry: in flight when the process dies.
            faults.hang_next(1, path="/tags/list")
            api.create(repository("app", faults.ref("hung"), namespace="pending"))
            while not any(r.path.endswith("/tags/list") for r in faults.requests):
                assert process.returncode is None
                await asyncio.sleep(0.02)
            # A rescan whose status patch is held: the store gets ahead of the status.
            registry.write_tags("big", SECOND)
            before = status_patches(api, "ahead")
            annotate(api, REPOS, "app", "during-kill", namespace="ahead")
            # Progress for the request, then "scanning: reconcile requested".
            await asyncio.wait_for(api.wait_for_calls(
                before + 2, verb="patch", resource=REPOS, subresource="status",
                namespace="ahead"), timeout=30)
            api.pause()
            await asyncio.wait_for(api.wait_for_calls(
                before + 3, verb="patch", resource=REPOS, subresource="status",
                namespace="ahead"), timeout=30)
            process.kill()
            assert await process.wait() == -signal.SIGKILL
        finally:
            api.resume()
            await reap(process)

        # The kill landed where meant: the store holds the rescan, the status does not.
        assert integrity(database) == "ok"
        rows = stored_rows(database)
        assert rows[("ahead", "app")][1] == SECOND
        assert ("pending", "app") not in rows
        held = api.get(REPOS, "ahead", "app")
        assert held is not None
        assert status_of(held)["lastScanResult"]["tagCount"] == len(FIRST)

        process = await start_controller(kubeconfig, storage, log)
        try:
            await wait_object(api, REPOS, "ahead", "app", lambda o: is_ready_with(
                f"found {len(SECOND)} tags")(o) and status_of(o).get(
                "lastHandledReconcileAt") == "during-kill", process=process)
            await wait_object(api, REPOS, "pending", "app", is_ready_with("found 2 tags"),
                              process=process)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        finally:
            await reap(process)
    assert integrity(database) == "ok"
    assert_status_matches_store(api, database, [("ahead", "app"), ("pending", "app")])


async def test_sigterm_with_reconciles_hanging_exits_cleanly(registry: RegistryProcess,
                                                             tmp_path: Path) -> None:
    registry.write_tags("app", ["1", "2", "3"])
    storage = tmp_path / "data"
    log = tmp_path / "controller.log"
    async with running_kubeapi(bookmark_interval=1.0) as api, FaultFront(registry) as front:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        api.create(repository("done", f"{registry.host}/app"))
        for k in range(4):
            api.create(repository(f"hang-{k}", front.ref("app")))
        front.hang_next(4, path="/tags/list")
        process = await start_controller(kubeconfig, storage, log)
        try:
            await wait_object(api, REPOS, "default", "done", is_ready_with("found 3 tags"),
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
    assert set(stored_rows(database)) == {("default", "done")}
    wal = database.with_name("tags.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
