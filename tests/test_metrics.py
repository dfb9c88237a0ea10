"""Metric names and labels are Flux's public API: Grafana dashboards depend on them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from imagereflector.metrics import Metrics, exponential_buckets_range


def exposition(metrics: Metrics) -> str:
    return metrics.exposition().decode()


def test_condition_gauges_one_hot_and_deleted_with_object() -> None:
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    metrics.record_condition(kind="ImageRepository", name="app", namespace="ns", status="False")
    text = exposition(metrics)
    prefix = 'gotk_reconcile_condition{kind="ImageRepository",name="app",namespace="ns",'
    assert prefix + 'status="False",type="Ready"} 1.0' in text
    assert prefix + 'status="True",type="Ready"} 0.0' in text
    assert prefix + 'status="Unknown",type="Ready"} 0.0' in text
    metrics.record_suspend(kind="ImageRepository", name="app", namespace="ns", suspended=True)
    metrics.record_duration(kind="ImageRepository", name="app", namespace="ns", seconds=0.2)
    metrics.delete_object(kind="ImageRepository", name="app", namespace="ns")
    metrics.delete_object(kind="ImageRepository", name="never", namespace="ns")
    assert 'name="app"' not in exposition(metrics)


def test_flux_and_controller_runtime_names_present() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.reconcile_total.labels("imagerepository", "success").inc()
    metrics.workqueue_depth.labels("imagerepository").set(0)
    metrics.request_done("ghcr.io", "GET", "200")
    metrics.ratelimit_remaining("index.docker.io", 76)
    metrics.invalid_tags("ghcr.io", 3)
    text = exposition(metrics)
    for name in ("controller_runtime_reconcile_total", "workqueue_depth",
                 "gotk_reconcile_duration_seconds", "rest_client_requests_total",
                 "leader_election_master_status", "process_resident_memory_bytes",
                 "imagereflector_registry_requests_total",
                 'imagereflector_registry_ratelimit_remaining{host="index.docker.io"} 76.0',
                 'imagereflector_registry_invalid_tags_total{host="ghcr.io"} 3.0'):
        assert name in text


def test_duration_buckets_match_flux() -> None:
    buckets = exponential_buckets_range(0.01, 1800, 10)
    assert [round(b, 3) for b in buckets[:4]] == [0.01, 0.038, 0.147, 0.565]
    assert round(buckets[-1]) == 1800


def test_per_object_series_render_like_prometheus_client() -> None:
    """The compact per-object series parse to exactly what prometheus_client would emit."""
    from prometheus_client import Gauge, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from imagereflector.metrics import GOTK_DURATION_BUCKETS

    reference = CollectorRegistry()
    condition = Gauge("gotk_reconcile_condition", "h",
                      ["kind", "name", "namespace", "type", "status"], registry=reference)
    suspend = Gauge("gotk_suspend_status", "h", ["kind", "name", "namespace"],
                    registry=reference)
    duration = Histogram("gotk_reconcile_duration_seconds", "h", ["kind", "name", "namespace"],
                         buckets=GOTK_DURATION_BUCKETS, registry=reference)
    ours = Metrics(CollectorRegistry(), process_collectors=False)
    for name, status, suspended, seconds in (("a", "True", False, (0.005, 0.2, 3000.0)),
                                             ("b", "False", True, (0.01, 0.0384))):
        labels = ("ImagePolicy", name, "ns")
        for value in ("True", "False", "Unknown"):
            condition.labels(*labels, "Ready", value).set(1 if value == status else 0)
        suspend.labels(*labels).set(1 if suspended else 0)
        ours.record_condition(kind="ImagePolicy", name=name, namespace="ns", status=status)
        ours.record_suspend(kind="ImagePolicy", name=name, namespace="ns", suspended=suspended)
        for second in seconds:
            duration.labels(*labels).observe(second)
            ours.record_duration(kind="ImagePolicy", name=name, namespace="ns", seconds=second)

    def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {(s.name, tuple(sorted(s.labels.items())), s.value)
                for family in text_string_to_metric_families(text)
                if family.name.startswith("gotk_") for s in family.samples
                if not s.name.endswith("_created")}

    assert samples(ours.objects.render()) == samples(generate_latest(reference).decode())
    ours.delete_object(kind="ImagePolicy", name="a", namespace="ns")
    assert 'name="a"' not in ours.objects.render()


def test_object_series_stream_in_bounded_pieces_that_add_up() -> None:
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    for i in range(600):
        labels = {"kind": "ImageRepository", "name": f"r{i:04d}", "namespace": f"ns{i % 7}"}
        metrics.record_condition(status="True", **labels)
        metrics.record_suspend(suspended=i % 2 == 0, **labels)
        metrics.record_duration(seconds=0.02 * i, **labels)
    chunk_bytes = 4096
    pieces = list(metrics.objects.render_chunks(chunk_bytes))
    # One record's lines (~2 KB for the histogram) may overshoot a piece, never more.
    assert len(pieces) > 50
    assert max(len(piece) for piece in pieces) < chunk_bytes + 2048
    whole = b"".join(pieces).decode()
    assert whole == metrics.objects.render()
    # Families stay contiguous: each TYPE line appears once, before its samples.
    for family in ("gotk_reconcile_condition", "gotk_suspend_status",
                   "gotk_reconcile_duration_seconds"):
        assert whole.count(f"# TYPE {family} ") == 1
    last_condition = whole.rindex("gotk_reconcile_condition{")
    assert last_condition < whole.index("# TYPE gotk_suspend_status")
    assert whole.rindex("gotk_suspend_status{") < whole.index(
        "# TYPE gotk_reconcile_duration_seconds")
    assert metrics.exposition() == b"".join(metrics.exposition_chunks())
