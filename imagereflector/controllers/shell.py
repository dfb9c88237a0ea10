"""The parts of the reconcile shell both kinds share: finalizer, events, messages.

Flux gives every kind the same outer shell (deletion → finalizer → the kind's own steps)
and the same event rules; keeping them here means the two reconcilers cannot drift.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from imagereflector.api import meta
from imagereflector.kube import conditions as cond
from imagereflector.kube.client import ApiError
from imagereflector.kube.events import EventType
from imagereflector.kube.patch import SerialPatcher
from imagereflector.kube.reconcile import ReconcileError
from imagereflector.registry.redact import scrub
from imagereflector.registry.reference import InvalidReferenceError

# The two messages of parse_image_reference that Flux v1.2 words differently (R7, R8).
_SCHEME_PREFIX = ".spec.image value should not start with URL scheme; "
_TAG_PREFIX = ".spec.image value should not contain a tag; "


class EventSink(Protocol):
    """Where reconcile events go (``kube.events.EventRecorder`` in production)."""

    def record(self, obj: Mapping[str, Any], *, type: EventType,
               reason: str, message: str) -> None:
        """Record one event for ``obj``."""
        ...


def reconcile_request(obj: Mapping[str, Any]) -> str | None:
    """The ``reconcile.fluxcd.io/requestedAt`` value, None when absent."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(meta.RECONCILE_REQUEST_ANNOTATION)
    return value if isinstance(value, str) else None


def image_reference_error(image: str, err: InvalidReferenceError, *, latest: bool) -> str:
    """The ``ImageURLInvalid`` message of ``spec.image``: v0.31's words, or with
    ``latest`` Flux v1.2's, which quote the image (``image '<image>' should not include
    a tag; remove ':x'``). The quoted image passes the redaction step, so userinfo in
    a URL never reaches a condition (contract A11)."""
    message = str(err)
    if not latest:
        return message
    if message.startswith(_SCHEME_PREFIX):
        return scrub(f"image '{image}' should not include URL scheme; "
                     f"{message.removeprefix(_SCHEME_PREFIX)}")
    if message.startswith(_TAG_PREFIX):
        return scrub(f"image '{image}' should not include a tag; "
                     f"{message.removeprefix(_TAG_PREFIX)}")
    return message


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


class ReadyMemory:
    """The readiness and Ready message this process last wrote, per object uid.

    The informer's copy of an object can predate this process's own last status write
    (a watch that was cut, a retry that runs before the write's event arrives); judged
    from that copy, an object that stayed Ready would look as if it just became Ready and
    get a second Normal event. This process is the only writer of status (the leader),
    so what it wrote last is the truth to compare with.
    """

    def __init__(self, *, max_entries: int = 200_000) -> None:
        self._last: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        self._max = max_entries

    def previous(self, obj: Mapping[str, Any],
                 old: list[meta.Condition]) -> tuple[bool, str | None]:
        """(was ready, Ready message) before this reconcile."""
        remembered = self._last.get(_uid(obj))
        if remembered is not None:
            return remembered
        ready = cond.get(old, meta.READY)
        return cond.is_ready(old), ready.message if ready is not None else None

    def remember(self, obj: Mapping[str, Any], new: list[meta.Condition]) -> None:
        """Record what was just written."""
        uid = _uid(obj)
        ready = cond.get(new, meta.READY)
        if not uid or ready is None:
            return
        self._last[uid] = (cond.is_ready(new), ready.message)
        self._last.move_to_end(uid)
        while len(self._last) > self._max:
            self._last.popitem(last=False)

    def forget(self, obj: Mapping[str, Any]) -> None:
        """Drop a deleted object."""
        self._last.pop(_uid(obj), None)


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def notify(events: EventSink, obj: Mapping[str, Any], old: list[meta.Condition],
           new: list[meta.Condition], routine: str, memory: ReadyMemory) -> None:
    """Quiet events (contract A6): Normal when the object becomes Ready or its Ready
    message changes, Warning on failure, and the ``routine`` note to the log only.

    Call after the status was written: ``memory`` then records it.
    """
    ready = cond.get(new, meta.READY)
    if ready is None:
        return
    was_ready, old_message = memory.previous(obj, old)
    memory.remember(obj, new)
    if cond.is_ready(new) and (not was_ready or old_message != ready.message):
        events.record(obj, type="Normal", reason=ready.reason, message=ready.message)
    elif not cond.is_ready(new):
        events.record(obj, type="Warning", reason=ready.reason, message=ready.message)
    elif routine:
        events.record(obj, type="Trace", reason=meta.SUCCEEDED_REASON, message=routine)


def log_failure(log: logging.Logger, err: Exception) -> None:
    """Log a reconcile failure once: a typed failure is already in status, a transient API
    error is one line, anything else (a bug) gets its traceback. Call inside ``except``."""
    if isinstance(err, ApiError):
        log.error("reconcile failed: Kubernetes API: %s", err)
    elif not isinstance(err, ReconcileError):
        log.exception("reconcile failed")


def describe_validation_error(err: ValidationError) -> str:
    """The first problem pydantic found, as ``field.path: message``."""
    first = err.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    return f"{location}: {first.get('msg', 'invalid')}".lstrip(": ")
