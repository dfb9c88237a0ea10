"""Watch plumbing of the fake Kubernetes API server: stored changes and open watchers.

Role: a :class:`Change` is one entry of the store's history (what etcd's watch would
deliver); a :class:`Watcher` is one open watch stream's queue of encoded events.

Invariants:
* A watcher sees only its resource's changes, through its namespace, label and field
  filters, presented in the API version it watches.
* An update that makes an object match is ADDED, one that makes it stop matching is
  DELETED carrying the previous object at the new resourceVersion (the watch cache's
  rule); DELETED events of matching objects carry the last state at the deletion's version.
* :meth:`Watcher.stop` is the only way a stream is told to end; it never blocks.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import dataclass

from tests.fakes.kubeapi_match import FieldRequirement, Requirement, fields_match, labels_match
from tests.fakes.kubeapi_types import JSON, ResourceType


@dataclass(frozen=True, slots=True)
class Change:
    """One stored write: its resourceVersion, event type, storage and object states."""

    rv: int
    type: str
    key: tuple[str, str]
    obj: JSON
    prev: JSON | None


def present(obj: JSON, rt: ResourceType) -> JSON:
    """A copy of a stored object as served in ``rt``'s version."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = rt.api_version
    out["kind"] = rt.kind
    return out



class Watcher:
    """One open watch: a queue of encoded events for the HTTP front to stream."""

    def __init__(self, rt: ResourceType, namespace: str | None,
                 labels: Sequence[Requirement], fields: Sequence[FieldRequirement]) -> None:
        self.rt = rt
        self._namespace = namespace
        self._labels = labels
        self._fields = fields
        self.queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        """Events in order; ``None`` only wakes the reader to look at :attr:`cut`."""
        self.cut: str | None = None
        """``"abort"`` (drop the connection), ``"end"`` (finish the stream) once cut, or
        ``"mid-event"`` (drop it halfway through the next event)."""

    def matches(self, obj: JSON) -> bool:
        """Whether ``obj`` passes this watch's namespace, label and field filters."""
        meta = obj.get("metadata", {})
        if self._namespace is not None and meta.get("namespace") != self._namespace:
            return False
        return labels_match(self._labels, obj) and fields_match(self._fields, obj)

    def put(self, type_: str, obj: JSON) -> None:
        """Queue one event whose object is presented in this watch's version."""
        self.queue.put_nowait({"type": type_, "object": present(obj, self.rt)})

    def offer(self, change: Change) -> None:
        """Queue what ``change`` looks like through this watch's filters, if anything."""
        if change.key != self.rt.storage_key:
            return
        now = self.matches(change.obj)
        before = change.prev is not None and self.matches(change.prev)
        if change.type == "MODIFIED" and before and not now:
            assert change.prev is not None
            gone = copy.deepcopy(change.prev)
            gone["metadata"]["resourceVersion"] = str(change.rv)
            self.put("DELETED", gone)
        elif change.type == "MODIFIED" and now and not before:
            self.put("ADDED", change.obj)
        elif now:
            self.put(change.type, change.obj)

    def stop(self, mode: str) -> None:
        """Ask the stream to end: ``"abort"`` mid-stream, or ``"end"`` cleanly."""
        self.cut = mode
        self.queue.put_nowait(None)

    def cut_inside_next_event(self) -> None:
        """Send only the first half of the next event's line, then drop the connection."""
        self.cut = "mid-event"
