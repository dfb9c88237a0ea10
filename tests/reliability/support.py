"""Shared helpers of the reliability tests: checks over status history, processes.

The history itself comes from ``tests.controllers.realharness.StatusLog`` (an admin
watch on the real API server, which the proxy's faults do not reach); the checks here
(monotonic scan times, no regressions, settled objects) read any list of versions.

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
from tests.controllers.harness import conditions_of, ready
from tests.fakes.registry import free_port

JSON = dict[str, Any]


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


class Patches(Protocol):
    """What ``annotate`` needs: the fake's ``patch`` or the real server's admin one."""

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any) -> Any:
        """Merge-patch one object."""


def annotate(api: Patches, resource: str, name: str, value: str,
             namespace: str = "default") -> None:
    api.patch(resource, namespace, name, {"metadata": {"annotations": {
        meta.RECONCILE_REQUEST_ANNOTATION: value}}})


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


class Gets(Protocol):
    """What ``wait_object`` reads with: the fake's ``get`` or the real server's admin one."""

    def get(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        """The object, or None when it does not exist."""


async def wait_object(api: Gets, resource: str, namespace: str, name: str,
                      check: Callable[[JSON], bool], *,
                      process: asyncio.subprocess.Process | None = None,
                      within: float = 30.0) -> JSON:
    """Poll ``api`` until ``check`` holds (failing early if ``process`` exits). The
    controller runs in another process, so a short blocking read here stalls nothing."""
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
