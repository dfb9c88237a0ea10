"""The recording, fault-injecting proxy in front of the real API server, on its own.

Proven against the session's real kube-apiserver, speaking as the controller's
ServiceAccount: answers (and RBAC verdicts) pass through unchanged, every call is
recorded with the API server's verb, each fault happens exactly when asked and only
then, watch events stream as they happen and a cut between events never splits one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.controllers.realharness import REPOS, KubeTest
from tests.fakes.kubeproxy import request_info

GUARD = 20.0
JSON = dict[str, Any]


def repo(name: str) -> JSON:
    return {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
            "metadata": {"name": name}, "spec": {"image": f"ghcr.io/x/{name}"}}


@pytest.fixture
async def session(kube: KubeTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
            base_url=kube.proxy.url, trust_env=False,
            headers={"Authorization": f"Bearer {kube.token}"}) as found:
        yield found


def repos_path(kube: KubeTest) -> str:
    return f"/apis/image.toolkit.fluxcd.io/v1beta2/namespaces/{kube.ns}/imagerepositories"


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/api/v1/namespaces", {}, ("list", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/team", {}, ("get", "namespaces", "team", "team", "")),
    ("PUT", "/api/v1/namespaces/team/finalize", {},
     ("update", "namespaces", "team", "team", "finalize")),
    ("GET", "/api/v1/namespaces/team/secrets/creds", {}, ("get", "secrets", "team", "creds", "")),
    ("GET", "/apis/image.toolkit.fluxcd.io/v1beta2/imagerepositories", {"watch": "1"},
     ("watch", "imagerepositories", "", "", "")),
    ("PATCH", "/apis/image.toolkit.fluxcd.io/v1beta2/namespaces/a/imagerepositories/r/status",
     {}, ("patch", "imagerepositories", "a", "r", "status")),
    ("DELETE", "/api/v1/namespaces/a/events", {}, ("deletecollection", "events", "a", "", "")),
    ("POST", "/api/v1/namespaces/a/events", {}, ("create", "events", "a", "", "")),
    ("GET", "/livez/ping", {}, ("get", "", "", "", "")),
])
def test_request_info_is_the_api_servers(method: str, path: str, query: dict[str, str],
                                        expected: tuple[str, ...]) -> None:
    info = request_info(method, path, query)
    assert (info.verb, info.resource, info.namespace, info.name, info.subresource) == expected


async def test_answers_and_rbac_verdicts_pass_through_and_are_recorded(
        kube: KubeTest, session: aiohttp.ClientSession) -> None:
    kube.api.create(repo("one"))
    async with session.get(f"{repos_path(kube)}/one") as resp:
        assert resp.status == 200
        assert (await resp.json())["metadata"]["labels"]  # what the server stored
        assert "X-Kubernetes-PF-FlowSchema-UID" in resp.headers
    # The ServiceAccount may not delete; the API server says so, not the proxy.
    async with session.delete(f"{repos_path(kube)}/one") as resp:
        assert resp.status == 403
        body = await resp.json()
        assert body["reason"] == "Forbidden"
        assert "system:serviceaccount:image-reflector-system" in body["message"]
    # Without the token the caller is nobody.
    async with aiohttp.ClientSession(trust_env=False) as anonymous, \
            anonymous.get(f"{kube.proxy.url}{repos_path(kube)}") as resp:
        assert resp.status == 401
    calls = kube.proxy.calls(resource=REPOS)
    assert [(c.verb, c.name, c.status, c.authorization) for c in calls] == [
        ("get", "one", 200, True), ("delete", "one", 403, True), ("list", "", 401, False)]
    assert not any(c.injected for c in calls)


async def test_fail_next_answers_with_a_status_then_forwards_again(
        kube: KubeTest, session: aiohttp.ClientSession) -> None:
    kube.proxy.fail_next("GET", r"/imagerepositories$", 429, count=2, retry_after=3)
    for _ in range(2):
        async with session.get(repos_path(kube)) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            body = await resp.json()
            assert (body["kind"], body["code"], body["reason"]) == ("Status", 429,
                                                                    "TooManyRequests")
    async with session.get(repos_path(kube)) as resp:
        assert resp.status == 200
    kube.proxy.fail_next("PATCH", r"/status", 409)
    async with session.patch(f"{repos_path(kube)}/x/status", data="{}", headers={
            "Content-Type": "application/merge-patch+json"}) as resp:
        assert resp.status == 409
        assert "the object has been modified" in (await resp.json())["message"]
    assert [c.injected for c in kube.proxy.calls(resource=REPOS)] == [True, True, False, True]


class Watch:
    """A raw watch through the proxy: events as they arrive, or the error that ended it."""

    def __init__(self, session: aiohttp.ClientSession, path: str) -> None:
        self.events: asyncio.Queue[JSON | BaseException | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(session, path))

    async def _run(self, session: aiohttp.ClientSession, path: str) -> None:
        try:
            async with session.get(path, params={"watch": "true", "resourceVersion": "0"},
                                   timeout=aiohttp.ClientTimeout(total=None)) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    self.events.put_nowait(json.loads(line))
            self.events.put_nowait(None)
        except aiohttp.ClientError as err:
            self.events.put_nowait(err)

    async def next(self) -> JSON | BaseException | None:
        return await asyncio.wait_for(self.events.get(), GUARD)

    async def next_event(self) -> JSON:
        found = await self.next()
        assert isinstance(found, dict), found
        return found


async def test_watches_stream_events_and_are_cut_between_events(
        kube: KubeTest, session: aiohttp.ClientSession) -> None:
    watch = Watch(session, repos_path(kube))
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    kube.api.create(repo("a"))
    event = await watch.next_event()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "a")
    assert kube.proxy.cut_watches() == 1
    ended = await watch.next()
    assert isinstance(ended, aiohttp.ClientError), ended
    assert watch.events.empty()
    await asyncio.wait_for(kube.proxy.wait_for_watches(0), GUARD)
    # A graceful cut ends the stream as the server's own timeout would.
    graceful = Watch(session, repos_path(kube))
    assert (await graceful.next_event())["type"] == "ADDED"  # "a", from version 0
    kube.proxy.cut_watches(graceful=True)
    assert await graceful.next() is None


async def test_a_watch_cut_mid_event_delivers_half_a_line(
        kube: KubeTest, session: aiohttp.ClientSession) -> None:
    received: list[bytes] = []
    ended: list[BaseException] = []

    async def raw() -> None:
        try:
            async with session.get(repos_path(kube), params={"watch": "true"}) as resp:
                async for chunk in resp.content.iter_any():
                    received.append(chunk)
        except aiohttp.ClientError as err:
            ended.append(err)

    task = asyncio.create_task(raw())
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    assert kube.proxy.cut_watches_mid_event() == 1
    kube.api.create(repo("half"))
    await asyncio.wait_for(task, GUARD)
    data = b"".join(received)
    assert ended
    assert data
    assert b"\n" not in data
    assert data.startswith(b'{"type":"ADDED"')


async def test_gone_next_watch_is_a_410_error_event(
        kube: KubeTest, session: aiohttp.ClientSession) -> None:
    kube.proxy.gone_next_watch(r"/imagerepositories\?")
    watch = Watch(session, repos_path(kube))
    event = await watch.next_event()
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert await watch.next() is None
    # Only the next one: the watch after it is the API server's.
    again = Watch(session, repos_path(kube))
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    kube.api.create(repo("b"))
    assert (await again.next_event())["type"] == "ADDED"
    again.task.cancel()


async def test_down_refuses_connections_until_up_and_pause_holds(
        kube: KubeTest, session: aiohttp.ClientSession) -> None:
    await kube.proxy.go_down()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with aiohttp.ClientSession(trust_env=False) as fresh:
            await fresh.get(f"{kube.proxy.url}/livez")
    await kube.proxy.come_up()
    async with session.get("/livez") as resp:
        assert resp.status == 200
    kube.proxy.pause()
    held = asyncio.create_task(session.get(repos_path(kube)))
    calls = await asyncio.wait_for(kube.proxy.wait_for_calls(1, verb="list"), GUARD)
    assert calls[-1].status is None
    assert not held.done()
    kube.proxy.resume()
    resp = await asyncio.wait_for(held, GUARD)
    assert resp.status == 200
    resp.release()
