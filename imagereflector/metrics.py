"""Every Prometheus metric of the controller, registered on an injectable registry.

Names and labels are public API shared with Flux (contract §4.3), so Flux's Grafana
dashboards and alerts work unchanged: ``gotk_*`` per object, ``controller_runtime_*`` per
controller, ``workqueue_*`` per queue, ``rest_client_requests_total`` for the Kubernetes
API, ``gotk_token_*`` for the cloud token cache (Flux v1.2's, in both modes). The
``imagereflector_*`` metrics are this project's additions (registry politeness, token
cache per provider). Label values never carry credentials: hosts are host[:port] only.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.utils import floatToGoString

# Flux's Go client exports no ``*_created`` series; they would only cost memory here.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream


def exponential_buckets_range(low: float, high: float, count: int) -> list[float]:
    """Prometheus Go client's ``ExponentialBucketsRange``: ``count`` buckets low..high."""
    factor = (high / low) ** (1 / (count - 1))
    return [low * factor**i for i in range(count)]


# controller-runtime v0.16 reconcile_time_seconds buckets.
RECONCILE_TIME_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7,
    0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20,
    25, 30, 40, 50, 60,
)
# client-go workqueue duration buckets: ExponentialBuckets(10e-9, 10, 10).
WORKQUEUE_BUCKETS: Final = tuple(1e-8 * 10**i for i in range(10))
CONDITION_STATUSES: Final = ("True", "False", "Unknown")


class InvolvedObject(Protocol):
    """Whom a token cache lookup was for (``credentials.providers.cache.InvolvedObject``)."""

    @property
    def kind(self) -> str:
        """``ImageRepository`` or ``ImagePolicy``."""
        ...

    @property
    def name(self) -> str:
        """The object's name."""
        ...

    @property
    def namespace(self) -> str:
        """The object's namespace."""
        ...

    @property
    def operation(self) -> str:
        """``reconcile``."""
        ...


class Metrics:
    """The controller's metrics; one instance per process (or per test registry)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 process_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        # Flux runtime (gotk_*): one series set per object, kept compactly (see ObjectSeries).
        self.objects = ObjectSeries()
        # controller-runtime.
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total", "Total number of reconciliations per "
            "controller", ["controller", "result"], registry=r)
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total", "Total number of reconciliation "
            "errors per controller", ["controller"], registry=r)
        self.terminal_reconcile_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total", "Total number of terminal "
            "reconciliation errors per controller", ["controller"], registry=r)
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds", "Length of time per reconciliation "
            "per controller", ["controller"], buckets=RECONCILE_TIME_BUCKETS, registry=r)
        self.max_concurrent_reconciles = Gauge(
            "controller_runtime_max_concurrent_reconciles", "Maximum number of concurrent "
            "reconciles per controller", ["controller"], registry=r)
        self.active_workers = Gauge(
            "controller_runtime_active_workers", "Number of currently used workers per "
            "controller", ["controller"], registry=r)
        # client-go workqueue.
        self.workqueue_depth = Gauge(
            "workqueue_depth", "Current depth of workqueue", ["name"], registry=r)
        self.workqueue_adds = Counter(
            "workqueue_adds_total", "Total number of adds handled by workqueue", ["name"],
            registry=r)
        self.workqueue_latency = Histogram(
            "workqueue_queue_duration_seconds", "How long in seconds an item stays in "
            "workqueue before being requested", ["name"], buckets=WORKQUEUE_BUCKETS,
            registry=r)
        self.workqueue_work_duration = Histogram(
            "workqueue_work_duration_seconds", "How long in seconds processing an item from "
            "workqueue takes.", ["name"], buckets=WORKQUEUE_BUCKETS, registry=r)
        self.workqueue_unfinished = Gauge(
            "workqueue_unfinished_work_seconds", "How many seconds of work has been done that "
            "is in progress and hasn't been observed by work_duration.", ["name"], registry=r)
        self.workqueue_longest = Gauge(
            "workqueue_longest_running_processor_seconds", "How many seconds has the longest "
            "running processor for workqueue been running.", ["name"], registry=r)
        self.workqueue_retries = Counter(
            "workqueue_retries_total", "Total number of retries handled by workqueue",
            ["name"], registry=r)
        # client-go REST client and leader election.
        self.rest_client_requests = Counter(
            "rest_client_requests_total", "Number of HTTP requests, partitioned by status "
            "code, method, and host.", ["code", "method", "host"], registry=r)
        self.leader_election_master = Gauge(
            "leader_election_master_status", "Gauge of if the reporting system is master of "
            "the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string "
            "used to identify the lease.", ["name"], registry=r)
        # This project's additions.
        self.registry_requests = Counter(
            "imagereflector_registry_requests_total", "Registry HTTP requests by host, method "
            "and status code ('error' when no response arrived).", ["host", "method", "code"],
            registry=r)
        self.registry_ratelimit_remaining = Gauge(
            "imagereflector_registry_ratelimit_remaining", "The last ratelimit-remaining "
            "value a registry reported (Docker Hub pulls left in its window).", ["host"],
            registry=r)
        self.registry_invalid_tags = Counter(
            "imagereflector_registry_invalid_tags_total", "Tags a registry listed that do not "
            "match the tag grammar and were skipped, by registry host.", ["host"], registry=r)

        self.token_cache_events = Counter(
            "imagereflector_token_cache_events_total", "Cloud registry token cache lookups "
            "by provider and event (hit or miss).", ["provider", "event"], registry=r)
        # fluxcd/pkg cache (prefix gotk_token_), Flux v1.2's names, help texts and labels.
        self.gotk_token_cache_events = Counter(
            "gotk_token_cache_events_total", "Total number of cache retrieval events for a "
            "Gitops Toolkit resource reconciliation.",
            ["event_type", "kind", "name", "namespace", "operation"], registry=r)
        self.gotk_token_cached_items = Gauge(
            "gotk_token_cached_items", "Total number of items in the cache.", registry=r)
        self.gotk_token_cache_requests = Counter(
            "gotk_token_cache_requests_total", "Total number of cache requests partioned by "
            "success or failure.", ["status"], registry=r)
        self.gotk_token_cache_evictions = Counter(
            "gotk_token_cache_evictions_total", "Total number of cache evictions.", registry=r)

    # Flux runtime helpers -------------------------------------------------------------

    def record_condition(self, *, kind: str, name: str, namespace: str, status: str) -> None:
        """Set the Ready condition gauges: 1 for ``status``, 0 for the other two."""
        self.objects.series(kind, name, namespace).condition = status

    def record_suspend(self, *, kind: str, name: str, namespace: str, suspended: bool) -> None:
        """Set ``gotk_suspend_status`` for one object."""
        self.objects.series(kind, name, namespace).suspended = suspended

    def record_duration(self, *, kind: str, name: str, namespace: str, seconds: float) -> None:
        """Observe one reconcile's duration for one object."""
        self.objects.series(kind, name, namespace).observe(seconds)

    def delete_object(self, *, kind: str, name: str, namespace: str) -> None:
        """Forget every per-object series of a deleted object (its token cache events
        too, as Flux's ``DeleteEventsForObject`` does)."""
        self.objects.delete(kind, name, namespace)
        for event_type in ("cache_miss", "cache_hit"):
            with contextlib.suppress(KeyError):
                self.gotk_token_cache_events.remove(event_type, kind, name, namespace,
                                                    "reconcile")

    def exposition(self) -> bytes:
        """The whole ``/metrics`` body: the registry's metrics and the per-object series."""
        return b"".join(self.exposition_chunks())

    def exposition_chunks(self) -> Iterator[bytes]:
        """The ``/metrics`` body in pieces, so a scrape never holds it all (see
        :meth:`ObjectSeries.render_chunks`)."""
        yield generate_latest(self.registry)
        yield from self.objects.render_chunks()

    def cache_event(self, provider: str, event: str) -> None:
        """Count one cloud token cache lookup (``TokenCacheObserver``)."""
        self.token_cache_events.labels(provider, event).inc()

    # Token cache (imagereflector.credentials.providers.cache.TokenCacheMetrics) ---------

    def token_cache_event(self, event_type: str, involved: InvolvedObject) -> None:
        """Count one lookup on behalf of an object (``cache_hit`` or ``cache_miss``)."""
        self.gotk_token_cache_events.labels(event_type, involved.kind, involved.name,
                                            involved.namespace, involved.operation).inc()

    def token_cache_request(self, status: str) -> None:
        """Count one finished lookup (``success`` or ``failure``)."""
        self.gotk_token_cache_requests.labels(status).inc()

    def token_cache_eviction(self) -> None:
        """Count one eviction."""
        self.gotk_token_cache_evictions.inc()

    def token_cache_items(self, count: int) -> None:
        """Set how many tokens the cache holds."""
        self.gotk_token_cached_items.set(count)

    # Registry observer (imagereflector.registry.client.RegistryObserver) ----------------

    def request_done(self, host: str, method: str, code: str) -> None:
        """Count one registry request."""
        self.registry_requests.labels(host, method, code).inc()

    def ratelimit_remaining(self, host: str, remaining: int) -> None:
        """Export a registry's reported remaining quota."""
        self.registry_ratelimit_remaining.labels(host).set(remaining)

    def invalid_tags(self, host: str, count: int) -> None:
        """Count tags a scan skipped for not matching the tag grammar."""
        self.registry_invalid_tags.labels(host).inc(count)


GOTK_DURATION_BUCKETS: Final = tuple(exponential_buckets_range(0.01, 1800, 10))
# A scrape piece: large enough that writing it costs one socket write, small enough
# that a scrape of any fleet holds well under a megabyte at a time (see render_chunks).
CHUNK_BYTES: Final = 64 * 1024
_CONDITION_HELP: Final = ("# HELP gotk_reconcile_condition The current condition status of a "
                          "GitOps Toolkit resource reconciliation.\n"
                          "# TYPE gotk_reconcile_condition gauge\n")
_SUSPEND_HELP: Final = ("# HELP gotk_suspend_status The current suspend status of a GitOps "
                        "Toolkit resource.\n# TYPE gotk_suspend_status gauge\n")
_DURATION_HELP: Final = ("# HELP gotk_reconcile_duration_seconds The duration in seconds of a "
                         "GitOps Toolkit resource reconciliation.\n"
                         "# TYPE gotk_reconcile_duration_seconds histogram\n")


def _go_float(value: float) -> str:
    """A float as the Prometheus text format writes it (Go's formatting)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]  # untyped upstream
    return text


_LE: Final = tuple(_go_float(b) for b in GOTK_DURATION_BUCKETS)


@dataclass(slots=True)
class _Series:
    """The gotk_* values of one object."""

    labels: str
    condition: str = "Unknown"
    suspended: bool | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * len(GOTK_DURATION_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        index = bisect.bisect_left(GOTK_DURATION_BUCKETS, seconds)
        if index < len(self.buckets):
            self.buckets[index] += 1


class ObjectSeries:
    """Flux's per-object series (``gotk_reconcile_condition``, ``gotk_suspend_status``,
    ``gotk_reconcile_duration_seconds``), stored compactly and rendered directly.

    prometheus_client keeps a child object per label set with a value object and lock
    per bucket, and formats every sample through Python objects: with 10,000 objects a
    scrape took ~2 s of CPU and grew RSS. Here an object costs one small record and a
    scrape is string joins. Names and namespaces are DNS labels (no quotes, backslashes
    or newlines), so label values need no escaping; the output is the same text format.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}

    def series(self, kind: str, name: str, namespace: str) -> _Series:
        """The record of one object, created on first use."""
        key = (kind, name, namespace)
        found = self._series.get(key)
        if found is None:
            labels = f'kind="{kind}",name="{name}",namespace="{namespace}"'
            found = self._series[key] = _Series(labels)
        return found

    def delete(self, kind: str, name: str, namespace: str) -> None:
        """Forget an object."""
        self._series.pop((kind, name, namespace), None)

    def render(self) -> str:
        """The three families in Prometheus text format, as one string."""
        return "".join(chunk.decode() for chunk in self.render_chunks())

    def render_chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The same text in pieces of about ``chunk_bytes``, family by family.

        A scrape of 10,000 objects is ~20 MB of text. Built whole, it briefly held
        ~50 MB of line strings and copies, and glibc kept part of that heap for tens
        of seconds afterwards (the soak saw RSS step up 32 MiB and back). In pieces,
        a scrape holds one piece at a time. The records are snapshotted once; values
        that change during the scrape show their newest state, as with any exporter.
        """
        records = list(self._series.values())
        pending: list[str] = []
        size = 0
        for header, lines in ((_CONDITION_HELP, _condition_lines),
                              (_SUSPEND_HELP, _suspend_lines),
                              (_DURATION_HELP, _duration_lines)):
            pending.append(header)
            for record in records:
                text = lines(record)
                pending.append(text)
                size += len(text)
                if size >= chunk_bytes:
                    yield "".join(pending).encode()
                    pending.clear()
                    size = 0
        if pending:
            yield "".join(pending).encode()


def _condition_lines(record: _Series) -> str:
    return "".join(
        f'gotk_reconcile_condition{{{record.labels},status="{status}",type="Ready"}} '
        f'{"1.0" if record.condition == status else "0.0"}\n'
        for status in CONDITION_STATUSES)


def _suspend_lines(record: _Series) -> str:
    if record.suspended is None:
        return ""
    return f'gotk_suspend_status{{{record.labels}}} {"1.0" if record.suspended else "0.0"}\n'


def _duration_lines(record: _Series) -> str:
    if not record.count:
        return ""
    name = "gotk_reconcile_duration_seconds"
    lines = []
    cumulative = 0
    for le, hits in zip(_LE, record.buckets, strict=True):
        cumulative += hits
        lines.append(f'{name}_bucket{{{record.labels},le="{le}"}} {cumulative}.0\n')
    lines.append(f'{name}_bucket{{{record.labels},le="+Inf"}} {record.count}.0\n'
                 f"{name}_count{{{record.labels}}} {record.count}.0\n"
                 f"{name}_sum{{{record.labels}}} {_go_float(record.total)}\n")
    return "".join(lines)


class WorkqueueMetrics:
    """Binds one workqueue's hooks (``kube.workqueue.QueueMetrics``) to client-go's names."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._depth = metrics.workqueue_depth.labels(name)
        self._adds = metrics.workqueue_adds.labels(name)
        self._latency = metrics.workqueue_latency.labels(name)
        self._work = metrics.workqueue_work_duration.labels(name)
        self._retries = metrics.workqueue_retries.labels(name)
        self._unfinished = metrics.workqueue_unfinished.labels(name)
        self._longest = metrics.workqueue_longest.labels(name)

    def add(self, *, depth: int) -> None:
        """An item was added."""
        self._adds.inc()
        self._depth.set(depth)

    def get(self, *, depth: int, queue_latency: float) -> None:
        """An item was handed to a worker."""
        self._depth.set(depth)
        self._latency.observe(queue_latency)

    def done(self, *, work_duration: float) -> None:
        """A worker finished an item."""
        self._work.observe(work_duration)

    def retry(self) -> None:
        """An item was scheduled for later."""
        self._retries.inc()

    def track_unfinished(self, probe: Callable[[], Any]) -> None:
        """Read unfinished work lazily, whenever Prometheus scrapes."""
        self._unfinished.set_function(lambda: float(probe().total_seconds))
        self._longest.set_function(lambda: float(probe().longest_seconds))
