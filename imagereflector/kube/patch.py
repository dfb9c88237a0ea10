"""Serial patcher: write a reconcile's changes back as small JSON merge-patches.

Role: the fluxcd/pkg ``runtime/patch`` serial patcher, reduced to what this controller
writes: finalizers (metadata) and status. A reconcile builds the patcher from the object it
started from, mutates a copy, and calls :meth:`SerialPatcher.patch` (possibly several
times: progress patches, then the final one). Each call diffs against the state of the
previous successful call, so unchanged fields are never sent.

Invariants:
- Finalizers go in a metadata merge-patch carrying ``resourceVersion``: a merge-patch
  replaces the whole list, so the lock stops us from dropping a finalizer someone else added
  meanwhile. On 409 the latest object is re-read and only our own additions/removals are
  reapplied to its list.
- Status goes in one merge-patch on ``/status``. Fields other than conditions are merged
  field by field and need no lock. ``conditions`` is a list, which a merge-patch replaces, so
  when conditions change the whole list is sent *with* ``resourceVersion`` (optimistic lock:
  without it a real API server never answers 409 to a merge-patch and would silently drop a
  condition another writer added). On 409 the latest object is re-read, the condition types
  this reconcile touched are laid over its list, and the patch is retried, at most
  ``conflict_retries`` times with a 100-200 ms pause.
- The resourceVersion used is the one of the last response, so a patcher's own patches
  never conflict with each other.
- NotFound is ignored when the object is being deleted (the finalizer patch may have let
  the API server remove it).
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from imagereflector.api import meta
from imagereflector.kube.client import (
    ConflictError,
    JSONObject,
    NotFoundError,
    PatchType,
    ResourceRef,
)


class PatchClient(Protocol):
    """The part of :class:`~imagereflector.kube.client.KubeClient` the patcher uses."""

    async def get(self, ref: ResourceRef, name: str, *, namespace: str | None = None) -> JSONObject:
        """GET one object."""

    async def patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: object,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
    ) -> JSONObject:
        """PATCH an object or subresource."""


def merge_patch_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> JSONObject:
    """The RFC 7386 merge-patch that turns ``before`` into ``after`` (lists replaced whole)."""
    diff: JSONObject = {}
    for key, value in after.items():
        if key not in before:
            diff[key] = copy.deepcopy(value)
        elif before[key] != value:
            old = before[key]
            if isinstance(old, Mapping) and isinstance(value, Mapping):
                diff[key] = merge_patch_diff(old, value)
            else:
                diff[key] = copy.deepcopy(value)
    for key in before:
        if key not in after:
            diff[key] = None
    return diff


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def _finalizers(obj: Mapping[str, Any]) -> list[str]:
    return [str(f) for f in _meta(obj).get("finalizers") or []]


def _status(obj: Mapping[str, Any]) -> JSONObject:
    value = obj.get("status")
    return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else {}


def _conditions(status: Mapping[str, Any]) -> list[JSONObject]:
    return [dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)]


def overlay_conditions(
    latest: Sequence[Mapping[str, Any]],
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
) -> list[JSONObject]:
    """Lay the condition changes ``before → after`` over the ``latest`` list.

    Types this reconcile touched (added, changed or removed) take our value (or go); every
    other type keeps the latest value, so conditions written by others survive. Order: ours
    as in ``after``, then the others' in their latest order.
    """
    by_type_before = {str(c.get("type")): c for c in before}
    by_type_after = {str(c.get("type")): c for c in after}
    touched = {
        t
        for t in by_type_before.keys() | by_type_after.keys()
        if by_type_before.get(t) != by_type_after.get(t)
    }
    latest_by_type = {str(c.get("type")): c for c in latest}
    result: list[JSONObject] = []
    for t, cond in by_type_after.items():
        chosen = cond if t in touched or t not in latest_by_type else latest_by_type[t]
        result.append(dict(chosen))
    for t, cond in latest_by_type.items():
        if t not in by_type_after and t not in touched:
            result.append(dict(cond))
    return result


class SerialPatcher:
    """Patches one object's finalizers and status, each call diffing against the last."""

    def __init__(
        self,
        client: PatchClient,
        ref: ResourceRef,
        obj: Mapping[str, Any],
        *,
        field_manager: str = meta.CONTROLLER_NAME,
        conflict_retries: int = 5,
        retry_delay: float = 0.1,
    ) -> None:
        self._client = client
        self._ref = ref
        self._name = str(_meta(obj).get("name"))
        self._namespace = str(_meta(obj).get("namespace") or "")
        self._field_manager = field_manager
        self._retries = conflict_retries
        self._retry_delay = retry_delay
        self._finalizers = _finalizers(obj)
        self._status_before = _status(obj)
        self._rv = str(_meta(obj).get("resourceVersion") or "")

    @property
    def resource_version(self) -> str:
        """The resourceVersion the next patch will be based on."""
        return self._rv

    async def patch(self, obj: Mapping[str, Any]) -> JSONObject | None:
        """Send what changed in ``obj`` since the last successful patch.

        Returns the object as the API server last answered, or None when nothing changed or
        the object was already gone while being deleted.
        """
        deleting = _meta(obj).get("deletionTimestamp") is not None
        latest: JSONObject | None = None
        try:
            wanted = _finalizers(obj)
            if wanted != self._finalizers:
                latest = await self._patch_finalizers(wanted)
            status = _status(obj)
            if status != self._status_before:
                latest = await self._patch_status(status) or latest
        except NotFoundError:
            if deleting:
                return None
            raise
        return latest

    async def _patch_finalizers(self, wanted: list[str]) -> JSONObject:
        added = [f for f in wanted if f not in self._finalizers]
        removed = set(self._finalizers) - set(wanted)
        target = wanted
        for attempt in range(self._retries + 1):
            body = {"finalizers": target, "resourceVersion": self._rv}
            try:
                latest = await self._client.patch(
                    self._ref,
                    self._name,
                    {"metadata": body},
                    namespace=self._namespace,
                    field_manager=self._field_manager,
                )
            except ConflictError:
                if attempt == self._retries:
                    raise
                await self._pause()
                fresh = await self._refresh()
                current = _finalizers(fresh)
                target = [f for f in current if f not in removed]
                target += [f for f in added if f not in target]
                if target == current:
                    self._finalizers = wanted
                    return fresh
                continue
            self._accept(latest)
            self._finalizers = wanted
            return latest
        raise AssertionError("unreachable: the loop returns or raises")

    async def _patch_status(self, status: JSONObject) -> JSONObject | None:
        before_conditions = _conditions(self._status_before)
        after_conditions = _conditions(status)
        rest_before = {k: v for k, v in self._status_before.items() if k != "conditions"}
        rest_after = {k: v for k, v in status.items() if k != "conditions"}
        body: JSONObject = {"status": merge_patch_diff(rest_before, rest_after)}
        if before_conditions == after_conditions:
            latest = await self._send_status(body)
            self._status_before = status
            return latest
        base = before_conditions
        for attempt in range(self._retries + 1):
            merged = overlay_conditions(base, before_conditions, after_conditions)
            body["status"]["conditions"] = merged
            body["metadata"] = {"resourceVersion": self._rv}
            try:
                latest = await self._send_status(body)
            except ConflictError:
                if attempt == self._retries:
                    raise
                await self._pause()
                base = _conditions(_status(await self._refresh()))
                continue
            self._status_before = {**status, "conditions": merged}
            return latest
        raise AssertionError("unreachable: the loop returns or raises")

    async def _send_status(self, body: JSONObject) -> JSONObject:
        latest = await self._client.patch(
            self._ref,
            self._name,
            body,
            namespace=self._namespace,
            subresource="status",
            patch_type="merge",
            field_manager=self._field_manager,
        )
        self._accept(latest)
        return latest

    async def _refresh(self) -> JSONObject:
        fresh = await self._client.get(self._ref, self._name, namespace=self._namespace)
        self._accept(fresh)
        return fresh

    def _accept(self, server_obj: Mapping[str, Any]) -> None:
        rv = _meta(server_obj).get("resourceVersion")
        if rv:
            self._rv = str(rv)

    async def _pause(self) -> None:
        await asyncio.sleep(self._retry_delay * (1.0 + random.random()))  # noqa: S311
