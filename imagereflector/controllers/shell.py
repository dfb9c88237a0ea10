"""The parts of the reconcile shell both kinds share: finalizer, events, messages.

Flux gives every kind the same outer shell (deletion → finalizer → the kind's own steps)
and the same event rules; keeping them here means the two reconcilers cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from imagereflector.api import meta
from imagereflector.kube import conditions as cond
from imagereflector.kube.events import EventType
from imagereflector.kube.patch import SerialPatcher


class EventSink(Protocol):
    """Where reconcile events go (``kube.events.EventRecorder`` in production)."""

    def record(self, obj: Mapping[str, Any], *, type: EventType,
               reason: str, message: str) -> None:
        """Record one event for ``obj``."""
        ...


async def release_if_deleting(obj: dict[str, Any], patcher: SerialPatcher) -> bool:
    """Remove our finalizer from an object being deleted; True when it was deleting."""
    metadata = obj["metadata"]
    if not metadata.get("deletionTimestamp"):
        return False
    metadata["finalizers"] = [f for f in metadata.get("finalizers") or [] if f != meta.FINALIZER]
    await patcher.patch(obj)
    return True


async def ensure_finalizer(obj: dict[str, Any], patcher: SerialPatcher) -> None:
    """Add our finalizer when missing.

    The reconcile goes on in the same pass: Flux requeues here, which only delays the
    first result of every new object by the minimum backoff.
    """
    metadata = obj["metadata"]
    if meta.FINALIZER not in (metadata.get("finalizers") or []):
        metadata["finalizers"] = [*(metadata.get("finalizers") or []), meta.FINALIZER]
        await patcher.patch(obj)


def notify(events: EventSink, obj: Mapping[str, Any], old: list[meta.Condition],
           new: list[meta.Condition], routine: str) -> None:
    """Quiet events (contract A6): Normal when the object becomes Ready or its Ready
    message changes, Warning on failure, and the ``routine`` note to the log only."""
    ready = cond.get(new, meta.READY)
    if ready is None:
        return
    old_ready = cond.get(old, meta.READY)
    if cond.is_ready(new) and (not cond.is_ready(old) or old_ready is None
                               or old_ready.message != ready.message):
        events.record(obj, type="Normal", reason=ready.reason, message=ready.message)
    elif not cond.is_ready(new):
        events.record(obj, type="Warning", reason=ready.reason, message=ready.message)
    elif routine:
        events.record(obj, type="Trace", reason=meta.SUCCEEDED_REASON, message=routine)


def describe_validation_error(err: ValidationError) -> str:
    """The first problem pydantic found, as ``field.path: message``."""
    first = err.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    return f"{location}: {first.get('msg', 'invalid')}".lstrip(": ")
