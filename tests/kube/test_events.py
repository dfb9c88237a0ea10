"""Event recording: quiet events (A6), dedupe by count, and ``--events-addr`` forwarding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from imagereflector.kube.client import JSONObject, KubeClient, NotFoundError
from imagereflector.kube.events import (
    EventClient,
    EventForwarder,
    EventRecorder,
    ForwarderOptions,
)
from tests.controllers.realharness import KubeTest

REPO: JSONObject = {
    "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
    "kind": "ImageRepository",
    "metadata": {"name": "podinfo", "namespace": "apps", "uid": "u-1", "resourceVersion": "7"},
}


class RecordingEvents:
    """Records event writes and answers like the API server would (pure dedupe logic)."""

    def __init__(self) -> None:
        self.created: list[tuple[str, JSONObject]] = []
        self.patched: list[tuple[str, str, JSONObject]] = []
        self.missing: set[str] = set()

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> JSONObject:
        self.created.append((namespace, dict(event)))
        return dict(event)

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JSONObject:
        if name in self.missing:
            raise NotFoundError(404, "NotFound", f'events "{name}" not found')
        self.patched.append((namespace, name, dict(patch)))
        return dict(patch)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def recorder_and_client() -> AsyncIterator[tuple[EventRecorder, RecordingEvents]]:
    client = RecordingEvents()
    _typed: EventClient = client
    recorder = EventRecorder(client, instance="pod-1", now=Clock(), cache_size=2)
    task = asyncio.create_task(recorder.run(), name="test-events")
    yield recorder, client
    recorder.stop()
    await task


async def test_normal_event_body(
    recorder_and_client: tuple[EventRecorder, RecordingEvents],
) -> None:
    recorder, client = recorder_and_client
    recorder.record(
        REPO, type="Normal", reason="Succeeded", message="successful scan: found 3 tags"
    )
    await recorder.flush()
    [(namespace, event)] = client.created
    assert namespace == "apps"
    assert event["type"] == "Normal"
    assert event["reason"] == "Succeeded"
    assert event["message"] == "successful scan: found 3 tags"
    assert event["involvedObject"] == {
        "kind": "ImageRepository",
        "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
        "name": "podinfo",
        "namespace": "apps",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert event["source"] == {"component": "image-reflector-controller", "host": "pod-1"}
    assert event["reportingComponent"] == "image-reflector-controller"
    assert event["reportingInstance"] == "pod-1"
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2024-05-01T12:00:01Z"
    name, _, hex_ts = event["metadata"]["name"].partition(".")
    assert name == "podinfo"
    assert int(hex_ts, 16) == 1714564801123456000


async def test_trace_is_log_only(
    recorder_and_client: tuple[EventRecorder, RecordingEvents],
) -> None:
    recorder, client = recorder_and_client
    recorder.record(REPO, type="Trace", reason="Succeeded", message="no new tags found")
    await recorder.flush()
    assert client.created == []
    assert client.patched == []


async def test_repeated_warning_updates_count(
    recorder_and_client: tuple[EventRecorder, RecordingEvents],
) -> None:
    recorder, client = recorder_and_client
    for _ in range(3):
        recorder.record(REPO, type="Warning", reason="Failed", message="scan failed")
    recorder.record(REPO, type="Warning", reason="Failed", message="another failure")
    await recorder.flush()
    assert [e["message"] for _, e in client.created] == ["scan failed", "another failure"]
    first_name = client.created[0][1]["metadata"]["name"]
    assert [(n, p["count"]) for _, n, p in client.patched] == [(first_name, 2), (first_name, 3)]
    assert client.patched[1][2]["lastTimestamp"] == "2024-05-01T12:00:03Z"


async def test_patch_of_vanished_event_creates_anew(
    recorder_and_client: tuple[EventRecorder, RecordingEvents],
) -> None:
    recorder, client = recorder_and_client
    recorder.record(REPO, type="Warning", reason="Failed", message="scan failed")
    await recorder.flush()
    client.missing.add(client.created[0][1]["metadata"]["name"])
    recorder.record(REPO, type="Warning", reason="Failed", message="scan failed")
    await recorder.flush()
    assert len(client.created) == 2
    assert client.created[1][1]["count"] == 1
    assert client.created[1][1]["metadata"]["name"] != client.created[0][1]["metadata"]["name"]


async def test_dedupe_memory_is_bounded(
    recorder_and_client: tuple[EventRecorder, RecordingEvents],
) -> None:
    recorder, client = recorder_and_client
    for message in ("a", "b", "c", "a"):  # cache_size=2: "a" was evicted by "c"
        recorder.record(REPO, type="Warning", reason="Failed", message=message)
    await recorder.flush()
    assert [e["message"] for _, e in client.created] == ["a", "b", "c", "a"]
    assert client.patched == []


class Receiver:
    """A local notification-controller stand-in that answers with scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[JSONObject] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        status = self.statuses.pop(0) if self.statuses else 202
        return web.Response(status=status)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


FAST = ForwarderOptions(backoff_min=0.001, backoff_max=0.002, retries=4)


async def _forward(url: str, types: list[str]) -> RecordingEvents:
    client = RecordingEvents()
    recorder = EventRecorder(
        client, instance="pod-1", now=Clock(), forwarder=EventForwarder(url, options=FAST)
    )
    task = asyncio.create_task(recorder.run(), name="test-events-forward")
    for t in types:
        recorder.record(
            REPO,
            type=t,  # type: ignore[arg-type]
            reason="Failed" if t == "Warning" else "Succeeded",
            message=f"{t} message",
            metadata={"revision": "abc"} if t == "Normal" else None,
        )
    await recorder.flush()
    recorder.stop()
    await task
    return client


async def test_forwarding_payload() -> None:
    async with Receiver([]) as receiver:
        client = await _forward(receiver.url, ["Normal", "Trace", "Warning"])
    assert len(client.created) == 2
    normal, warning = receiver.bodies
    assert normal == {
        "involvedObject": {
            "kind": "ImageRepository",
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "name": "podinfo",
            "namespace": "apps",
            "uid": "u-1",
            "resourceVersion": "7",
        },
        "severity": "info",
        "timestamp": "2024-05-01T12:00:01Z",
        "message": "Normal message",
        "reason": "Succeeded",
        "metadata": {"revision": "abc"},
        "reportingController": "image-reflector-controller",
        "reportingInstance": "pod-1",
    }
    assert warning["severity"] == "error"
    assert "metadata" not in warning


async def test_forwarding_retries_server_errors_then_gives_up() -> None:
    # First event: two 500s then accepted. Second: five 503s, i.e. 1 try + 4 retries, dropped.
    async with Receiver([500, 500, 202, 503, 503, 503, 503, 503, 202]) as receiver:
        client = await _forward(receiver.url, ["Warning", "Normal"])
    assert [b["severity"] for b in receiver.bodies] == ["error"] * 3 + ["info"] * 5
    assert len(client.created) == 2  # Kubernetes events are unaffected by forwarding failures


async def test_forwarding_does_not_retry_client_errors() -> None:
    async with Receiver([429, 400]) as receiver:
        await _forward(receiver.url, ["Warning", "Warning"])
    assert len(receiver.bodies) == 2


async def test_forwarding_to_unreachable_receiver_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Receiver([]) as receiver:
        url = receiver.url
    client = await _forward(url, ["Warning"])  # the receiver is closed now
    assert len(client.created) == 1
    assert any(r.getMessage().startswith("event forwarding failed") for r in caplog.records)


# -- against the real API server --------------------------------------------------------------
# The recorder writes as the controller's ServiceAccount, through the recording proxy.


@pytest.fixture
async def api_client(kube: KubeTest, tmp_path: Path) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                                      qps=0)
    yield client
    await client.close()


def repo_in(namespace: str) -> JSONObject:
    return {**REPO, "metadata": {**REPO["metadata"], "namespace": namespace}}


async def test_events_through_the_api(kube: KubeTest, api_client: KubeClient) -> None:
    repo = repo_in(kube.ns)
    recorder = EventRecorder(api_client, instance="pod-1", now=Clock())
    task = asyncio.create_task(recorder.run(), name="test-events-api")
    recorder.record(repo, type="Warning", reason="Failed", message="scan failed")
    recorder.record(repo, type="Warning", reason="Failed", message="scan failed")
    recorder.record(repo, type="Normal", reason="Succeeded", message="found 3 tags")
    await recorder.flush()
    events = sorted(kube.api.list("events", kube.ns), key=lambda e: e["reason"])
    assert [(e["reason"], e["count"]) for e in events] == [("Failed", 2), ("Succeeded", 1)]
    failed = events[0]
    assert failed["firstTimestamp"] == "2024-05-01T12:00:01Z"
    assert failed["lastTimestamp"] == "2024-05-01T12:00:02Z"
    assert failed["involvedObject"]["uid"] == "u-1"
    # The API server serves the same Event as events.k8s.io/v1 too.
    name = failed["metadata"]["name"]
    v1 = kube.testbed.request(
        "GET", f"/apis/events.k8s.io/v1/namespaces/{kube.ns}/events/{name}")
    assert (v1["reason"], v1["note"], v1["regarding"]["name"]) == (
        "Failed", "scan failed", "podinfo")
    # An Event that expired (deleted) is recreated on the next repeat.
    kube.api.delete("events", kube.ns, name)
    recorder.record(repo, type="Warning", reason="Failed", message="scan failed")
    await recorder.flush()
    again = [e for e in kube.api.list("events", kube.ns) if e["reason"] == "Failed"]
    assert [e["count"] for e in again] == [1]
    assert len(kube.proxy.calls(verb="create", resource="events")) == 3
    assert [c.status for c in kube.proxy.calls(verb="patch", resource="events")] == [200, 404]
    recorder.stop()
    await task


async def test_event_write_failures_are_only_logged(
    kube: KubeTest, api_client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    repo = repo_in(kube.ns)
    recorder = EventRecorder(api_client, instance="pod-1", now=Clock())
    task = asyncio.create_task(recorder.run(), name="test-events-fail")
    kube.proxy.fail_next("POST", r"/events", 500)
    recorder.record(repo, type="Warning", reason="Failed", message="lost")
    recorder.record(repo, type="Warning", reason="Failed", message="kept")
    await recorder.flush()
    assert [e["message"] for e in kube.api.list("events", kube.ns)] == ["kept"]
    assert any("unable to write Kubernetes event" in r.getMessage() for r in caplog.records)
    recorder.stop()
    await task
