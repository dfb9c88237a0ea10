"""Informer against the real API server: list+watch, resume, 410 relist, backoff, stop.

The informer speaks to the session's kube-apiserver as the controller's ServiceAccount,
through the recording proxy (``tests/fakes/kubeproxy.py``), which also makes the faults:
watches cut between and inside events, a 410 on the watch, held requests, error statuses
and the server going away. Each informer sees only its test's objects (the test's label
selector). Only the bookmark test stays on the fake API server: a real one sends
bookmarks about once a minute, never on cue.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from imagereflector.kube.client import IMAGE_REPOSITORIES, NAMESPACES, JSONObject, KubeClient
from imagereflector.kube.informer import Informer, InformerOptions, WatchClient, object_key
from tests.controllers.realharness import REPOS, KubeTest
from tests.fakes.kubeapi import running_kubeapi

# A hang guard only: every wait below ends on an event, never on the clock.
GUARD = 20.0
FAST = InformerOptions(backoff_initial=0.01, backoff_max=0.05)
# A list, not a watch, of ImageRepositories (the informer puts labelSelector first).
LIST = r"/imagerepositories\?(?!.*watch=)"
WATCH = r"/imagerepositories\?watch=true"


def repo(name: str, namespace: str | None = None, **labels: str) -> JSONObject:
    metadata: JSONObject = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
        "kind": "ImageRepository",
        "metadata": metadata,
        "spec": {"image": f"ghcr.io/example/{name}", "interval": "1m"},
    }


@pytest.fixture
async def client(kube: KubeTest, tmp_path: Path) -> AsyncIterator[KubeClient]:
    kc = await KubeClient.connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                                  qps=0)
    yield kc
    await kc.close()


class Recorder:
    """Collects handler calls as (kind, key, resourceVersion) in an asyncio queue."""

    def __init__(self, informer: Informer) -> None:
        self.queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        informer.add_event_handler(
            on_add=lambda o: self._put("add", o),
            on_update=lambda _old, new: self._put("update", new),
            on_delete=lambda o: self._put("delete", o),
        )

    def _put(self, kind: str, obj: JSONObject) -> None:
        self.queue.put_nowait((kind, object_key(obj), obj["metadata"]["resourceVersion"]))

    async def next(self) -> tuple[str, str]:
        kind, key, _ = await asyncio.wait_for(self.queue.get(), GUARD)
        return kind, key

    async def take(self, n: int) -> list[tuple[str, str]]:
        return [await self.next() for _ in range(n)]


class Running:
    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.task = asyncio.create_task(informer.run(), name="test-informer")

    async def stop(self) -> None:
        self.informer.stop()
        await asyncio.wait_for(self.task, GUARD)


StartFn = Callable[..., Awaitable[tuple[Informer, Recorder]]]


@pytest.fixture
async def start(kube: KubeTest, client: KubeClient) -> AsyncIterator[StartFn]:
    """Start an informer on the test's ImageRepositories (its label selector; a
    ``label_selector`` given is added to it) and wait until it synced."""
    running: list[Running] = []

    async def _start(**options: Any) -> tuple[Informer, Recorder]:
        typed: WatchClient = client
        selector = ",".join(filter(None, (options.pop("label_selector", ""), kube.selector)))
        informer = Informer(typed, IMAGE_REPOSITORIES, options=dataclasses.replace(
            FAST, label_selector=selector, **options))
        recorder = Recorder(informer)
        running.append(Running(informer))
        await asyncio.wait_for(informer.wait_synced(), GUARD)
        return informer, recorder

    yield _start
    for r in running:
        await r.stop()


def key(kube: KubeTest, name: str) -> str:
    return f"{kube.ns}/{name}"


async def test_list_then_watch_delivers_add_update_delete(kube: KubeTest,
                                                          start: StartFn) -> None:
    kube.api.create(repo("a"))
    informer, rec = await start()
    assert informer.has_synced()
    assert await rec.next() == ("add", key(kube, "a"))
    kube.api.create(repo("b"))
    kube.api.patch(REPOS, kube.ns, "a", {"spec": {"interval": "5m"}})
    kube.api.delete(REPOS, kube.ns, "b")
    assert await rec.take(3) == [
        ("add", key(kube, "b")),
        ("update", key(kube, "a")),
        ("delete", key(kube, "b")),
    ]
    a = informer.get(key(kube, "a"))
    assert a is not None
    assert a["spec"]["interval"] == "5m"
    assert informer.get(key(kube, "b")) is None
    assert [object_key(o) for o in informer.list()] == [key(kube, "a")]
    assert len(kube.proxy.calls(verb="list", resource=REPOS)) == 1


async def test_has_synced_only_after_first_list(kube: KubeTest, client: KubeClient) -> None:
    kube.proxy.pause()
    informer = Informer(client, IMAGE_REPOSITORIES,
                        options=dataclasses.replace(FAST, label_selector=kube.selector))
    running = Running(informer)
    await asyncio.wait_for(kube.proxy.wait_for_calls(1, verb="list"), GUARD)
    assert not informer.has_synced()
    kube.proxy.resume()
    await asyncio.wait_for(informer.wait_synced(), GUARD)
    await running.stop()


async def test_resume_after_cut_watch_misses_nothing(kube: KubeTest, start: StartFn) -> None:
    kube.api.create(repo("a"))
    informer, rec = await start()
    assert await rec.next() == ("add", key(kube, "a"))
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    # Hold the reconnect while changes happen, so they can only arrive through the resume.
    kube.proxy.pause()
    # The last version seen: the list's, or a later one if the API server sent an event
    # or a bookmark on the first watch (it may, e.g. to carry another kind's progress).
    seen = informer.resource_version
    assert kube.proxy.cut_watches() == 1
    kube.api.create(repo("b"))
    kube.api.patch(REPOS, kube.ns, "a", {"spec": {"interval": "2m"}})
    kube.api.delete(REPOS, kube.ns, "a")
    kube.proxy.resume()
    assert await rec.take(3) == [
        ("add", key(kube, "b")),
        ("update", key(kube, "a")),
        ("delete", key(kube, "a")),
    ]
    watches = kube.proxy.calls(verb="watch", resource=REPOS)
    assert len(watches) == 2
    assert watches[1].query["resourceVersion"] == seen
    assert len(kube.proxy.calls(verb="list", resource=REPOS)) == 1


async def test_watch_cut_inside_an_event_resumes_and_delivers_it_once(
    kube: KubeTest, start: StartFn
) -> None:
    kube.api.create(repo("a"))
    informer, rec = await start()
    assert await rec.next() == ("add", key(kube, "a"))
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    # The next line the watch carries is cut, so nothing after this version arrives whole.
    seen = informer.resource_version
    assert kube.proxy.cut_watches_mid_event() == 1
    kube.api.patch(REPOS, kube.ns, "a", {"spec": {"interval": "7m"}})
    # Half of this event's line arrived before the connection dropped; the informer
    # re-watches from the last whole event and gets it whole.
    assert await rec.next() == ("update", key(kube, "a"))
    kube.api.create(repo("b"))
    assert await rec.next() == ("add", key(kube, "b"))
    assert rec.queue.empty()
    stored = informer.get(key(kube, "a"))
    assert stored is not None
    assert stored["spec"]["interval"] == "7m"
    watches = kube.proxy.calls(verb="watch", resource=REPOS)
    assert len(watches) >= 2
    assert watches[1].query["resourceVersion"] == seen
    assert len(kube.proxy.calls(verb="list", resource=REPOS)) == 1


async def test_gone_relists_and_delivers_missed_deletions(kube: KubeTest,
                                                          start: StartFn) -> None:
    for name in ("a", "b", "c"):
        kube.api.create(repo(name))
    informer, rec = await start()
    assert sorted(await rec.take(3)) == [("add", key(kube, n)) for n in "abc"]
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    kube.proxy.pause()
    kube.proxy.cut_watches()
    kube.api.delete(REPOS, kube.ns, "a")
    kube.api.patch(REPOS, kube.ns, "b", {"spec": {"interval": "9m"}})
    kube.api.create(repo("d"))
    # The resume point is now too old, as after an etcd compaction: the watch says 410.
    kube.proxy.gone_next_watch(WATCH)
    kube.proxy.resume()
    assert sorted(await rec.take(3)) == [
        ("add", key(kube, "d")),
        ("delete", key(kube, "a")),
        ("update", key(kube, "b")),
    ]
    assert sorted(informer.keys()) == [key(kube, n) for n in "bcd"]
    assert len(kube.proxy.calls(verb="list", resource=REPOS)) == 2
    # Unchanged "c" was not redelivered by the relist.
    assert rec.queue.empty()


async def test_gone_on_watch_request_relists(kube: KubeTest, start: StartFn) -> None:
    kube.api.create(repo("a"))
    _, rec = await start()
    assert await rec.next() == ("add", key(kube, "a"))
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    kube.proxy.fail_next("GET", WATCH, 410)
    kube.proxy.cut_watches(graceful=True)
    await asyncio.wait_for(kube.proxy.wait_for_calls(2, verb="list", resource=REPOS), GUARD)
    kube.api.create(repo("b"))
    assert await rec.next() == ("add", key(kube, "b"))


async def test_bookmarks_advance_resource_version(tmp_path: Path) -> None:
    # On the fake: it sends a BOOKMARK every 50 ms when asked, a real server about once
    # a minute, so only the fake can show this within a test.
    async with running_kubeapi(bookmark_interval=0.05) as api:
        kc = await KubeClient.connect(
            kubeconfig=str(api.write_kubeconfig(tmp_path / "kc-bookmarks")), qps=0
        )
        informer = Informer(kc, IMAGE_REPOSITORIES, options=FAST)
        running = Running(informer)
        await asyncio.wait_for(informer.wait_synced(), GUARD)
        listed = informer.resource_version
        # Changes to another resource move the global resourceVersion; only a bookmark
        # can tell this informer about it.
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})

        async def advanced() -> None:
            # The fake's state offers no event to wait on; a short poll is the honest way.
            while int(informer.resource_version) <= int(listed):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        await asyncio.wait_for(advanced(), GUARD)
        assert informer.list() == []
        await running.stop()
        await kc.close()


async def test_label_selector(kube: KubeTest, start: StartFn) -> None:
    kube.api.create(repo("in", shard="one"))
    kube.api.create(repo("out", shard="two"))
    informer, rec = await start(label_selector="shard=one")
    assert await rec.next() == ("add", key(kube, "in"))
    kube.api.create(repo("in2", shard="one"))
    kube.api.create(repo("out2"))
    kube.api.patch(REPOS, kube.ns, "in", {"metadata": {"labels": {"shard": "x"}}})
    assert await rec.take(2) == [("add", key(kube, "in2")), ("delete", key(kube, "in"))]
    assert informer.keys() == [key(kube, "in2")]
    assert all(c.query.get("labelSelector") == f"shard=one,{kube.selector}"
               for c in kube.proxy.calls(verb="watch"))


async def test_namespace_restriction(kube: KubeTest, start: StartFn) -> None:
    apps, other = kube.namespace("apps"), kube.namespace("other")
    kube.api.create(repo("mine", namespace=apps))
    kube.api.create(repo("theirs", namespace=other))
    informer, rec = await start(namespace=apps)
    assert await rec.next() == ("add", f"{apps}/mine")
    kube.api.create(repo("theirs2", namespace=other))
    kube.api.create(repo("mine2", namespace=apps))
    assert await rec.next() == ("add", f"{apps}/mine2")
    assert sorted(informer.keys()) == [f"{apps}/mine", f"{apps}/mine2"]
    assert {c.namespace for c in kube.proxy.calls(resource=REPOS)} == {apps}


async def test_backoff_on_server_errors_then_recovery(kube: KubeTest, start: StartFn) -> None:
    kube.api.create(repo("a"))
    kube.proxy.fail_next("GET", LIST, 500, count=3)
    informer, rec = await start()
    assert await rec.next() == ("add", key(kube, "a"))
    assert len(kube.proxy.calls(verb="list", resource=REPOS)) == 4
    # The watch fails too; the informer backs off and resumes from the same version.
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    kube.proxy.fail_next("GET", WATCH, 503, count=2)
    kube.proxy.cut_watches()
    kube.api.create(repo("b"))
    assert await rec.next() == ("add", key(kube, "b"))
    assert len(kube.proxy.calls(verb="list", resource=REPOS)) == 4
    assert [c.status for c in kube.proxy.calls(verb="watch", resource=REPOS)][1:3] == [503, 503]
    assert informer.has_synced()


async def test_server_down_then_up(kube: KubeTest, start: StartFn) -> None:
    _, rec = await start()
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    await kube.proxy.go_down()
    kube.api.create(repo("while-down"))
    await kube.proxy.come_up()
    assert await rec.next() == ("add", key(kube, "while-down"))


async def test_stop_interrupts_blocked_watch(kube: KubeTest, client: KubeClient) -> None:
    informer = Informer(
        client,
        IMAGE_REPOSITORIES,
        options=InformerOptions(watch_timeout_min=3600, watch_timeout_max=3600,
                                label_selector=kube.selector),
    )
    task = asyncio.create_task(informer.run(), name="test-informer-stop")
    await asyncio.wait_for(informer.wait_synced(), GUARD)
    await asyncio.wait_for(kube.proxy.wait_for_watches(1), GUARD)
    informer.stop()
    await asyncio.wait_for(task, GUARD)
    await asyncio.wait_for(kube.proxy.wait_for_watches(0), GUARD)


async def test_stop_event_ends_run(kube: KubeTest, client: KubeClient) -> None:
    informer = Informer(client, IMAGE_REPOSITORIES,
                        options=dataclasses.replace(FAST, label_selector=kube.selector))
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop), name="test-informer-stop-event")
    await asyncio.wait_for(informer.wait_synced(), GUARD)
    stop.set()
    await asyncio.wait_for(task, GUARD)


async def test_indexes_follow_changes(kube: KubeTest, start: StartFn) -> None:
    kube.api.create(repo("a", team="red"))
    informer, rec = await start()
    await rec.next()
    informer.add_index("team", lambda o: [o["metadata"].get("labels", {}).get("team", "")])
    assert [object_key(o) for o in informer.by_index("team", "red")] == [key(kube, "a")]
    kube.api.create(repo("b", team="red"))
    kube.api.patch(REPOS, kube.ns, "a", {"metadata": {"labels": {"team": "blue"}}})
    await rec.take(2)
    assert [object_key(o) for o in informer.by_index("team", "red")] == [key(kube, "b")]
    assert [object_key(o) for o in informer.by_index("team", "blue")] == [key(kube, "a")]
    kube.api.delete(REPOS, kube.ns, "a")
    await rec.next()
    assert informer.by_index("team", "blue") == []


async def test_failing_handler_does_not_stop_the_informer(kube: KubeTest,
                                                          start: StartFn) -> None:
    informer, rec = await start()

    def boom(obj: JSONObject) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(on_add=boom)
    kube.api.create(repo("a"))
    assert await rec.next() == ("add", key(kube, "a"))
    kube.api.create(repo("b"))
    assert await rec.next() == ("add", key(kube, "b"))


async def test_managed_fields_are_not_kept(kube: KubeTest, client: KubeClient) -> None:
    # The real API server records managedFields on every object it stores.
    stored = kube.api.get("namespaces", None, kube.ns)
    assert stored is not None
    assert stored["metadata"]["managedFields"]
    informer = Informer(client, NAMESPACES)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop), name="informer-under-test")
    try:
        await informer.wait_synced()
        kept = informer.get(kube.ns)
        assert kept is not None
        assert "managedFields" not in kept["metadata"]
    finally:
        stop.set()
        await task
