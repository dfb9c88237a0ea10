"""Shared helpers of the reliability tests: a lossless status log, checks, processes.

``StatusLog`` registers a watcher directly on the fake API server's store (a public
method, the same code path HTTP watches use). Cutting watch connections, compacting
history or taking the server down does not end it: every stored version of every object
of one resource is kept, in resourceVersion order, so a test can check properties of the
whole history (monotonic scan times, no regressions) however hard the HTTP side is hit.

The process helpers run ``python -m imagereflector controller`` as an operator would, and
read its SQLite file with the standard ``sqlite3`` module, independently of the product.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from imagereflector.api import meta
from imagereflector.kube import conditions as cond
from tests.controllers.harness import Cluster, conditions_of, ready
from tests.fakes.kubeapi import FakeKubeAPI
from tests.fakes.registry import free_port

JSON = dict[str, Any]


class StatusLog:
    """Every ADDED/MODIFIED version of one resource's objects, from registration on."""

    def __init__(self, api: FakeKubeAPI, resource: str) -> None:
        self._api = api
        self._watcher = api.store.watch(api.store.resolve(resource), None)
        self._seen: list[JSON] = []

    def drain(self) -> list[JSON]:
        """Every version stored so far (the watcher's queue is filled synchronously)."""
        while not self._watcher.queue.empty():
            item = self._watcher.queue.get_nowait()
            if item is not None and item["type"] in ("ADDED", "MODIFIED"):
                self._seen.append(item["object"])
        return list(self._seen)

    def history(self, name: str, namespace: str = "default") -> list[JSON]:
        """The versions of one object, oldest first."""
        return [o for o in self.drain() if o["metadata"]["name"] == name
                and o["metadata"].get("namespace") == namespace]

    def close(self) -> None:
        self._api.store.unwatch(self._watcher)


def status_of(obj: JSON) -> JSON:
    status: JSON = obj.get("status") or {}
    return status


def scan_times(history: list[JSON]) -> list[str]:
    """``lastScanResult.scanTime`` of each version that has one, in order."""
    return [str(status_of(o)["lastScanResult"]["scanTime"]) for o in history
            if (status_of(o).get("lastScanResult") or {}).get("scanTime")]


def is_non_decreasing(values: list[str]) -> bool:
    """RFC 3339 UTC timestamps of one format compare as strings."""
    return all(a <= b for a, b in itertools.pairwise(values))


def ready_message(obj: JSON) -> str | None:
    found = ready(obj)
    return found.message if found is not None else None


def settled_with(tag_count: int, handled: str | None = None) -> Callable[[JSON], bool]:
    """Ready=True and settled, ``found N tags``, and the reconcile request handled."""
    def check(obj: JSON) -> bool:
        status = status_of(obj)
        result = status.get("lastScanResult") or {}
        return (cond.is_ready(conditions_of(obj))
                and ready_message(obj) == f"successful scan: found {tag_count} tags"
                and result.get("tagCount") == tag_count
                and (handled is None or status.get("lastHandledReconcileAt") == handled))
    return check


def ready_flipped(history: list[JSON]) -> bool:
    """Whether Ready was ever stored as anything but True after it first became True."""
    seen_true = False
    for obj in history:
        found = ready(obj)
        if found is None:
            continue
        if found.status == "True":
            seen_true = True
        elif seen_true or found.status == "False":
            return True
    return False


def events_of(api: FakeKubeAPI, name: str, namespace: str = "default") -> list[JSON]:
    return [e for e in api.list("events", namespace) if e["involvedObject"]["name"] == name]


class Patches(Protocol):
    """What ``annotate`` needs: the fake's ``patch`` or the real server's admin one."""

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any) -> Any:
        """Merge-patch one object."""


def annotate(api: Patches, resource: str, name: str, value: str,
             namespace: str = "default") -> None:
    api.patch(resource, namespace, name, {"metadata": {"annotations": {
        meta.RECONCILE_REQUEST_ANNOTATION: value}}})


async def wait_all(cluster: Cluster, resource: str, names: list[str],
                   check: Callable[[str, JSON], bool], *, within: float) -> dict[str, JSON]:
    """Wait until ``check(name, obj)`` holds for every name; one shared deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    found: dict[str, JSON] = {}
    pending = list(names)
    while pending:
        if cluster.task.done():
            cluster.task.result()
        for name in list(pending):
            obj = cluster.api.get(resource, "default", name)
            if obj is not None and check(name, obj):
                found[name] = obj
                pending.remove(name)
        if not pending:
            break
        if loop.time() > deadline:
            states = {n: status_of(cluster.api.get(resource, "default", n) or {})
                      for n in pending[:3]}
            raise AssertionError(f"{len(pending)} objects never settled, e.g. {states}")
        await asyncio.sleep(0.05)
    return found


def clean_env() -> dict[str, str]:
    """The environment without proxy variables (the fakes are on loopback)."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


async def start_controller(kubeconfig: Path, storage: Path, log_file: Path,
                           *extra: str) -> asyncio.subprocess.Process:
    """``python -m imagereflector controller`` with JSON logs appended to ``log_file``."""
    with log_file.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imagereflector", "controller", "--kubeconfig",
            str(kubeconfig), f"--storage-path={storage}",
            f"--metrics-addr=127.0.0.1:{free_port()}", f"--health-addr=127.0.0.1:{free_port()}",
            "--log-encoding=json", "--min-retry-delay=50ms", "--max-retry-delay=1s", *extra,
            env=clean_env(), stdout=asyncio.subprocess.DEVNULL, stderr=sink)


async def wait_object(api: FakeKubeAPI, resource: str, namespace: str, name: str,
                      check: Callable[[JSON], bool], *,
                      process: asyncio.subprocess.Process | None = None,
                      within: float = 30.0) -> JSON:
    """Poll the fake's state until ``check`` holds (failing early if ``process`` exits)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: JSON | None = None
    while loop.time() < deadline:
        if process is not None and process.returncode is not None:
            raise AssertionError(f"controller exited with {process.returncode}")
        last = api.get(resource, namespace, name)
        if last is not None and check(last):
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting on {namespace}/{name}: {last}")


async def reap(process: asyncio.subprocess.Process) -> None:
    """Kill a controller a test left running (teardown only)."""
    if process.returncode is None:
        process.kill()
        await process.wait()


def integrity(database: Path) -> str:
    with sqlite3.connect(database) as db:
        row = db.execute("PRAGMA integrity_check").fetchone()
    db.close()
    return str(row[0])


def stored_rows(database: Path) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """Every stored object's (revision, tags), read with sqlite3 straight from the file.

    Decodes the stored list (U+0000-joined, or JSON for format 1) and checks it against
    its stored count, so a half-written row would show up here.
    """
    rows: dict[tuple[str, str], tuple[str, list[str]]] = {}
    with sqlite3.connect(database) as db:
        found = db.execute(
            "SELECT namespace, name, revision, tag_count, tags_format, tags FROM objects")
        for namespace, name, revision, count, tags_format, blob in found:
            if tags_format == 0:
                tags = blob.decode("utf-8").split("\x00") if count else []
            else:
                tags = json.loads(blob)
            assert len(tags) == count, (namespace, name)
            rows[(namespace, name)] = (revision, tags)
    db.close()
    return rows
