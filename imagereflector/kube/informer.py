"""List+watch informer: a local store of raw object dicts kept in step with the API server.

Role: the client-go reflector + indexer + shared-informer handlers, for one resource.

Invariants:
- The first list is delivered (one ``on_add`` per object) before ``has_synced()`` is true.
- Watches resume from the last resourceVersion seen (objects and BOOKMARK events advance it),
  so a watch that ends (server timeout, cut connection) misses nothing.
- 410 Gone (an HTTP 410 or an ERROR event with code 410) means the version is too old: the
  informer relists; objects it held that the new list lacks are delivered as deletions and
  changed ones as updates.
- Any other API error backs off exponentially with jitter (capped), then retries; the store
  keeps serving the last known state meanwhile.
- Handlers are synchronous and cheap (compute a key, enqueue); a handler that raises is
  logged and does not stop the informer or the other handlers.
- ``stop()`` (or the ``stop_event`` given to ``run``) interrupts a blocked watch read: the
  list/watch loop runs in a child task that is cancelled, which closes the response.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, Protocol

from imagereflector.kube.client import (
    ApiError,
    GoneError,
    JSONObject,
    ObjectList,
    ResourceRef,
    WatchEvent,
    error_from_status,
)

_log = logging.getLogger(__name__)

IndexFunc = Callable[[JSONObject], list[str]]
"""Maps an object to the index values it is found under."""

_LIST_PAGE_SIZE: Final = 500
# A watch that ends this fast without delivering anything is treated as a failure, like
# client-go's "very short watch", so a server that closes at once cannot make us spin.
_SHORT_WATCH_SECONDS: Final = 1.0


class WatchClient(Protocol):
    """The part of :class:`~imagereflector.kube.client.KubeClient` an informer uses."""

    async def list(
        self,
        ref: ResourceRef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList:
        """List one page."""

    def watch(
        self,
        ref: ResourceRef,
        *,
        resource_version: str,
        timeout_seconds: int,
        namespace: str | None = None,
        label_selector: str | None = None,
        allow_bookmarks: bool = True,
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Open a watch stream."""


@dataclass(frozen=True, slots=True)
class InformerOptions:
    """Tuning of one informer; defaults follow client-go's reflector."""

    namespace: str | None = None
    """Restrict to one namespace (``--watch-all-namespaces=false``); None = all."""
    label_selector: str | None = None
    """``--watch-label-selector`` (sharding)."""
    watch_timeout_min: int = 300
    watch_timeout_max: int = 600
    backoff_initial: float = 0.8
    backoff_max: float = 30.0


def object_key(obj: JSONObject) -> str:
    """``namespace/name`` (just ``name`` for cluster-scoped objects)."""
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def _resource_version(obj: JSONObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass(frozen=True, slots=True)
class _Handler:
    on_add: Callable[[JSONObject], None] | None
    on_update: Callable[[JSONObject, JSONObject], None] | None
    on_delete: Callable[[JSONObject], None] | None


class _Relist(Exception):
    """Internal: the watch must be restarted from a fresh list."""


class Informer:
    """Keeps a store of one resource's objects and tells handlers about changes."""

    def __init__(
        self,
        client: WatchClient,
        ref: ResourceRef,
        *,
        options: InformerOptions | None = None,
    ) -> None:
        self._client = client
        self._ref = ref
        self._opts = options or InformerOptions()
        self._store: dict[str, JSONObject] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._stopping = asyncio.Event()
        self._resource_version = ""
        self._failures = 0

    @property
    def ref(self) -> ResourceRef:
        """The resource this informer follows."""
        return self._ref

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, object or bookmark); "" before the first list."""
        return self._resource_version

    # -- store -------------------------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the first list has been delivered to the handlers."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Wait until :meth:`has_synced` is true."""
        await self._synced.wait()

    def get(self, key: str) -> JSONObject | None:
        """The latest object stored under ``namespace/name``, or None."""
        return self._store.get(key)

    def list(self) -> list[JSONObject]:
        """All stored objects."""
        return list(self._store.values())

    def keys(self) -> builtins.list[str]:
        """All stored keys."""
        return list(self._store)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Register an index; objects already stored are indexed at once."""
        if name in self._index_funcs:
            raise ValueError(f"index {name!r} already registered")
        self._index_funcs[name] = fn
        self._indices[name] = {}
        for key, obj in self._store.items():
            self._index_one(name, key, obj)

    def by_index(self, name: str, value: str) -> builtins.list[JSONObject]:
        """Objects whose index function ``name`` returned ``value``."""
        keys = self._indices[name].get(value, set())
        return [self._store[k] for k in sorted(keys) if k in self._store]

    def add_event_handler(
        self,
        *,
        on_add: Callable[[JSONObject], None] | None = None,
        on_update: Callable[[JSONObject, JSONObject], None] | None = None,
        on_delete: Callable[[JSONObject], None] | None = None,
    ) -> None:
        """Register handlers; objects already stored are replayed to ``on_add``."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in list(self._store.values()):
                self._call(on_add, obj)

    def _index_one(self, name: str, key: str, obj: JSONObject) -> None:
        for value in self._index_funcs[name](obj):
            self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: JSONObject) -> None:
        for name, fn in self._index_funcs.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _put(self, obj: JSONObject) -> None:
        # managedFields can outweigh the rest of an object and nothing here reads them
        # (controller-runtime's caches drop them too).
        metadata = obj.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        key = object_key(obj)
        old = self._store.get(key)
        if old is not None:
            self._unindex(key, old)
        self._store[key] = obj
        for name in self._index_funcs:
            self._index_one(name, key, obj)
        for h in self._handlers:
            if old is None:
                if h.on_add is not None:
                    self._call(h.on_add, obj)
            elif h.on_update is not None:
                self._call(h.on_update, old, obj)

    def _remove(self, key: str, last: JSONObject) -> None:
        old = self._store.pop(key, None)
        if old is None:
            return
        self._unindex(key, old)
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, last)

    def _call(self, fn: Callable[..., None], *args: JSONObject) -> None:
        try:
            fn(*args)
        except Exception:
            _log.exception("informer handler failed", extra={"resource": self._ref.plural})

    # -- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return; interrupts a blocked watch."""
        self._stopping.set()

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """List and watch until ``stop_event`` is set or :meth:`stop` is called.

        Unexpected errors (bugs) propagate so the supervisor sees them; API errors never do.
        """
        worker = asyncio.create_task(self._list_and_watch(), name=f"informer:{self._ref.plural}")
        waiters = [asyncio.create_task(self._stopping.wait(), name="informer-stop")]
        if stop_event is not None:
            waiters.append(asyncio.create_task(stop_event.wait(), name="informer-stop-event"))
        try:
            await asyncio.wait([worker, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (worker, *waiters):
                task.cancel()
            results = await asyncio.gather(worker, *waiters, return_exceptions=True)
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
            raise error

    async def _list_and_watch(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    self._failures = 0
                await self._watch_once()
            except (GoneError, _Relist):
                _log.info("resourceVersion too old, relisting", extra=self._log_extra())
                need_list = True
            except ApiError as err:
                self._failures += 1
                delay = self._backoff()
                _log.warning(
                    "list/watch failed, retrying: %s",
                    err,
                    extra={**self._log_extra(), "retry_in": round(delay, 3)},
                )
                await asyncio.sleep(delay)

    def _backoff(self) -> float:
        base = min(
            self._opts.backoff_max,
            self._opts.backoff_initial * (2.0 ** max(0, self._failures - 1)),
        )
        # Full jitter in the upper half spreads informers restarting together.
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto

    async def _relist(self) -> None:
        # Each page is applied as it arrives instead of after the whole list: holding
        # 10,000 new objects beside the 10,000 stored ones doubled the store's memory for
        # the length of every relist. The end state is the same: objects the list no
        # longer has are removed once the last page is in.
        seen: set[str] = set()
        continue_token: str | None = None
        resource_version = ""
        while True:
            page = await self._client.list(
                self._ref,
                namespace=self._opts.namespace,
                label_selector=self._opts.label_selector,
                limit=_LIST_PAGE_SIZE,
                continue_token=continue_token,
            )
            self._apply_page(page.items, seen)
            if not resource_version:
                resource_version = page.resource_version
            continue_token = page.continue_token
            if not continue_token:
                resource_version = page.resource_version or resource_version
                break
        for key in [k for k in self._store if k not in seen]:
            self._remove(key, self._store[key])
        self._resource_version = resource_version
        self._synced.set()

    def _apply_page(self, items: Iterable[JSONObject], seen: set[str]) -> None:
        for obj in items:
            key = object_key(obj)
            seen.add(key)
            old = self._store.get(key)
            # Unchanged objects are not redelivered: a relist is not a change.
            if old is None or _resource_version(old) != _resource_version(obj):
                self._put(obj)

    async def _watch_once(self) -> None:
        timeout = random.randint(  # noqa: S311 - spreading timeouts, not crypto
            self._opts.watch_timeout_min, self._opts.watch_timeout_max
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        delivered = 0
        async with self._client.watch(
            self._ref,
            resource_version=self._resource_version,
            timeout_seconds=timeout,
            namespace=self._opts.namespace,
            label_selector=self._opts.label_selector,
            allow_bookmarks=True,
        ) as events:
            async for event in events:
                self._handle(event)
                delivered += 1
                self._failures = 0
        if delivered == 0 and loop.time() - started < _SHORT_WATCH_SECONDS:
            raise ApiError(0, "ShortWatch", "watch closed at once without events")

    def _handle(self, event: WatchEvent) -> None:
        obj = event.object
        if event.type == "ERROR":
            err = error_from_status(obj)
            if isinstance(err, GoneError):
                raise _Relist from err
            raise err
        rv = _resource_version(obj)
        if event.type == "BOOKMARK":
            if rv:
                self._resource_version = rv
            return
        if event.type in ("ADDED", "MODIFIED"):
            self._put(obj)
        elif event.type == "DELETED":
            self._remove(object_key(obj), obj)
        else:
            _log.warning("unknown watch event type %r", event.type, extra=self._log_extra())
            return
        if rv:
            self._resource_version = rv

    def _log_extra(self) -> dict[str, str]:
        return {"resource": self._ref.plural, "resourceVersion": self._resource_version}
