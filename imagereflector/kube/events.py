"""Event recording: Kubernetes Events (quiet, deduplicated) and ``--events-addr`` forwarding.

Role: what a reconcile calls to tell users what happened (contract §2.11 and A6).

Invariants:
- ``record`` never blocks and never raises for delivery problems: it logs the event, then
  queues it for two background workers (bounded queues; a full queue drops the event with a
  log line). A slow API server or notification-controller never slows a reconcile.
- ``Trace`` events go to the log only. ``Normal`` and ``Warning`` become core v1 Events and,
  with ``--events-addr``, are POSTed to notification-controller.
- A repeated identical event (same object uid, type, reason and message) updates ``count``
  and ``lastTimestamp`` of the Event already written instead of creating another one; the
  memory of recent events is a bounded LRU. If that Event is gone (404), a new one is made.
- Event names are ``<object name>.<hex nanosecond timestamp>``, as client-go makes them.
- Messages are taken as given (they come from conditions, already free of secrets); nothing
  else (no request bodies, no URLs with userinfo) is added to them or to the log lines.
- Forwarding: a 5 s timeout per POST; 2xx ends it, 429 and other 4xx end it (logged),
  transport errors and 5xx are retried with exponential backoff (1 s doubling to 30 s, at most
  4 retries, like go-retryablehttp's defaults); failures are only logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp

from imagereflector.api import meta
from imagereflector.kube.client import ApiError, JSONObject, NotFoundError, is_loopback_host

_log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning", "Trace"]

_DEFAULT_CACHE_SIZE: Final = 4096
_DEFAULT_QUEUE_SIZE: Final = 1024


class EventClient(Protocol):
    """The part of :class:`~imagereflector.kube.client.KubeClient` the recorder uses."""

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> JSONObject:
        """Create a core v1 Event."""

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JSONObject:
        """Merge-patch a core v1 Event."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved_object(obj: Mapping[str, Any]) -> JSONObject:
    """The ``ObjectReference`` of ``obj`` (kind, apiVersion, name, namespace, uid, rv)."""
    metadata = obj.get("metadata") or {}
    ref: JSONObject = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "uid": metadata.get("uid", ""),
        "resourceVersion": metadata.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


def _display(involved: Mapping[str, Any]) -> str:
    namespace = involved.get("namespace")
    name = str(involved.get("name", ""))
    return f"{namespace}/{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class _Pending:
    involved: JSONObject
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    metadata: Mapping[str, str]
    timestamp: datetime
    timestamp_ns: int


@dataclass(slots=True)
class _Seen:
    namespace: str
    name: str
    count: int
    first_timestamp: str


@dataclass(frozen=True, slots=True)
class ForwarderOptions:
    """Retry policy of the ``--events-addr`` forwarder (defaults: go-retryablehttp)."""

    timeout: float = 5.0
    retries: int = 4
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    queue_size: int = _DEFAULT_QUEUE_SIZE


class EventForwarder:
    """POSTs Flux events to notification-controller from one background task."""

    def __init__(self, address: str, *, options: ForwarderOptions | None = None) -> None:
        self._address = address
        self._opts = options or ForwarderOptions()
        self._queue: asyncio.Queue[JSONObject] = asyncio.Queue(self._opts.queue_size)
        # Logged instead of the address: it could carry userinfo.
        self._host = urlsplit(address).hostname or ""

    def submit(self, payload: JSONObject) -> None:
        """Queue one event; drops it (logged) when the queue is full."""
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            _log.warning("event forwarding queue full, event dropped", extra={"host": self._host})

    async def join(self) -> None:
        """Wait until every queued event has been delivered or given up on."""
        await self._queue.join()

    async def run(self) -> None:
        """Drain the queue until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self._opts.timeout)
        async with aiohttp.ClientSession(
            timeout=timeout, trust_env=not is_loopback_host(self._host)
        ) as session:
            while True:
                payload = await self._queue.get()
                try:
                    await self._deliver(session, payload)
                finally:
                    self._queue.task_done()

    async def _deliver(self, session: aiohttp.ClientSession, payload: JSONObject) -> None:
        delay = self._opts.backoff_min
        for attempt in range(self._opts.retries + 1):
            problem: str
            try:
                async with session.post(self._address, json=payload) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                problem = type(err).__name__
            else:
                if 200 <= status <= 299:
                    return
                if status < 500:
                    # 429 and other client errors: retrying would not help (Flux stops too).
                    _log.warning(
                        "event forwarding rejected",
                        extra={"host": self._host, "status": status, "reason": payload["reason"]},
                    )
                    return
                problem = f"HTTP {status}"
            if attempt == self._opts.retries:
                _log.error(
                    "event forwarding failed: %s",
                    problem,
                    extra={"host": self._host, "attempts": attempt + 1},
                )
                return
            await asyncio.sleep(delay)
            delay = min(self._opts.backoff_max, delay * 2)


class EventRecorder:
    """Records events for objects; run :meth:`run` as a supervised task to deliver them."""

    def __init__(
        self,
        client: EventClient,
        *,
        component: str = meta.CONTROLLER_NAME,
        instance: str | None = None,
        forwarder: EventForwarder | None = None,
        cache_size: int = _DEFAULT_CACHE_SIZE,
        queue_size: int = _DEFAULT_QUEUE_SIZE,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._client = client
        self._component = component
        self._instance = instance or socket.gethostname()
        self._forwarder = forwarder
        self._cache_size = cache_size
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_size)
        self._now = now
        self._stopping = asyncio.Event()

    def record(
        self,
        obj: Mapping[str, Any],
        *,
        type: EventType,  # the Kubernetes field name
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Log the event and queue it for delivery (never blocks, never raises)."""
        involved = involved_object(obj)
        # "name" is a reserved LogRecord attribute, hence "object".
        extra = {
            "object": _display(involved),
            "reason": reason,
            "eventType": type,
        }
        if type == "Warning":
            _log.error(message, extra=extra)
        else:
            _log.info(message, extra=extra)
        if type == "Trace":
            return
        ts = self._now()
        pending = _Pending(
            involved=involved,
            type=type,
            reason=reason,
            message=message,
            metadata=dict(metadata or {}),
            timestamp=ts,
            timestamp_ns=int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000,
        )
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            _log.warning("event queue full, Kubernetes event dropped", extra=extra)
        if self._forwarder is not None:
            self._forwarder.submit(self._forward_payload(pending))

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stopping.set()

    async def flush(self) -> None:
        """Wait until everything recorded so far has been delivered or given up on."""
        await self._queue.join()
        if self._forwarder is not None:
            await self._forwarder.join()

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Deliver queued events until stopped; child tasks are named and awaited."""
        tasks = [asyncio.create_task(self._drain(), name="events:kubernetes")]
        if self._forwarder is not None:
            tasks.append(asyncio.create_task(self._forwarder.run(), name="events:forwarder"))
        waiters = [asyncio.create_task(self._stopping.wait(), name="events:stop")]
        if stop_event is not None:
            waiters.append(asyncio.create_task(stop_event.wait(), name="events:stop-event"))
        try:
            await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, *waiters):
                task.cancel()
            results = await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _drain(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            except ApiError as err:
                _log.warning(
                    "unable to write Kubernetes event: %s",
                    err,
                    extra={"object": _display(pending.involved), "reason": pending.reason},
                )
            finally:
                self._queue.task_done()

    async def _write(self, pending: _Pending) -> None:
        key = (
            str(pending.involved.get("uid", "")),
            pending.type,
            pending.reason,
            pending.message,
        )
        now = _rfc3339(pending.timestamp)
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            try:
                await self._client.patch_event(
                    seen.namespace, seen.name, {"count": seen.count + 1, "lastTimestamp": now}
                )
            except NotFoundError:
                del self._seen[key]
            else:
                seen.count += 1
                return
        event = self._event_body(pending, now)
        namespace = event["metadata"]["namespace"]
        await self._client.create_event(namespace, event)
        self._seen[key] = _Seen(namespace, event["metadata"]["name"], 1, now)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)

    def _event_body(self, pending: _Pending, now: str) -> JSONObject:
        involved = pending.involved
        metadata: JSONObject = {
            "name": f"{involved.get('name', '')}.{pending.timestamp_ns:x}",
            "namespace": involved.get("namespace") or "default",
        }
        if pending.metadata:
            metadata["annotations"] = dict(pending.metadata)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": metadata,
            "involvedObject": involved,
            "reason": pending.reason,
            "message": pending.message,
            "type": pending.type,
            "source": {"component": self._component, "host": self._instance},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }

    def _forward_payload(self, pending: _Pending) -> JSONObject:
        payload: JSONObject = {
            "involvedObject": pending.involved,
            "severity": "error" if pending.type == "Warning" else "info",
            "timestamp": _rfc3339(pending.timestamp),
            "message": pending.message,
            "reason": pending.reason,
            "reportingController": self._component,
            "reportingInstance": self._instance,
        }
        if pending.metadata:
            payload["metadata"] = dict(pending.metadata)
        return payload
