"""Metric names and labels are Flux's public API: Grafana dashboards depend on them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from imagereflector.metrics import Metrics, exponential_buckets_range


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


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
    text = exposition(metrics)
    for name in ("controller_runtime_reconcile_total", "workqueue_depth",
                 "gotk_reconcile_duration_seconds", "rest_client_requests_total",
                 "leader_election_master_status", "process_resident_memory_bytes",
                 "imagereflector_registry_requests_total",
                 'imagereflector_registry_ratelimit_remaining{host="index.docker.io"} 76.0'):
        assert name in text


def test_duration_buckets_match_flux() -> None:
    buckets = exponential_buckets_range(0.01, 1800, 10)
    assert [round(b, 3) for b in buckets[:4]] == [0.01, 0.038, 0.147, 0.565]
    assert round(buckets[-1]) == 1800
