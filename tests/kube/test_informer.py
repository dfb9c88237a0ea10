"""Informer against the fake API server: list+watch, resume, 410 relist, backoff, stop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from imagereflector.kube.client import IMAGE_REPOSITORIES, NAMESPACES, JSONObject, KubeClient
from imagereflector.kube.informer import Informer, InformerOptions, WatchClient, object_key
from tests.fakes.kubeapi import FakeKubeAPI, running_kubeapi

# A hang guard only: every wait below ends on an event, never on the clock.
GUARD = 20.0
FAST = InformerOptions(backoff_initial=0.01, backoff_max=0.05)


def repo(name: str, namespace: str = "default", **labels: str) -> JSONObject:
    return {
        "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
        "kind": "ImageRepository",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"image": f"ghcr.io/example/{name}", "interval": "1m"},
    }


@pytest.fixture
async def kubeapi() -> AsyncIterator[FakeKubeAPI]:
    async with running_kubeapi(bookmark_interval=3600.0) as api:
        for ns in ("apps", "other"):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        yield api


@pytest.fixture
async def client(kubeapi: FakeKubeAPI, tmp_path: Path) -> AsyncIterator[KubeClient]:
    kc = await KubeClient.connect(
        kubeconfig=str(kubeapi.write_kubeconfig(tmp_path / "kubeconfig")), qps=0
    )
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


@pytest.fixture
async def start(
    client: KubeClient,
) -> AsyncIterator[Callable[..., Awaitable[tuple[Informer, Recorder]]]]:
    running: list[Running] = []

    async def _start(**options: Any) -> tuple[Informer, Recorder]:
        typed: WatchClient = client
        informer = Informer(typed, IMAGE_REPOSITORIES, options=dataclasses.replace(FAST, **options))
        recorder = Recorder(informer)
        running.append(Running(informer))
        await asyncio.wait_for(informer.wait_synced(), GUARD)
        return informer, recorder

    yield _start
    for r in running:
        await r.stop()


async def wait_for(predicate: Callable[[], bool]) -> None:
    async def poll() -> None:
        # The fake's state offers no event to wait on; a short poll is the honest way.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), GUARD)


StartFn = Callable[..., Awaitable[tuple[Informer, Recorder]]]


async def test_list_then_watch_delivers_add_update_delete(
    kubeapi: FakeKubeAPI, start: StartFn
) -> None:
    kubeapi.create(repo("a"))
    informer, rec = await start()
    assert informer.has_synced()
    assert await rec.next() == ("add", "default/a")
    kubeapi.create(repo("b"))
    kubeapi.patch("imagerepositories", "default", "a", {"spec": {"interval": "5m"}})
    kubeapi.delete("imagerepositories", "default", "b")
    assert await rec.take(3) == [
        ("add", "default/b"),
        ("update", "default/a"),
        ("delete", "default/b"),
    ]
    a = informer.get("default/a")
    assert a is not None
    assert a["spec"]["interval"] == "5m"
    assert informer.get("default/b") is None
    assert [object_key(o) for o in informer.list()] == ["default/a"]
    assert len(kubeapi.calls(verb="list", resource="imagerepositories")) == 1


async def test_has_synced_only_after_first_list(kubeapi: FakeKubeAPI, client: KubeClient) -> None:
    kubeapi.pause()
    informer = Informer(client, IMAGE_REPOSITORIES, options=FAST)
    running = Running(informer)
    await wait_for(lambda: len(kubeapi.calls(verb="list")) == 1)
    assert not informer.has_synced()
    kubeapi.resume()
    await asyncio.wait_for(informer.wait_synced(), GUARD)
    await running.stop()


async def test_resume_after_cut_watch_misses_nothing(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    kubeapi.create(repo("a"))
    _, rec = await start()
    assert await rec.next() == ("add", "default/a")
    await wait_for(lambda: kubeapi.open_watches == 1)
    # Hold the reconnect while changes happen, so they can only arrive through the resume.
    kubeapi.pause()
    assert kubeapi.cut_watches() == 1
    kubeapi.create(repo("b"))
    kubeapi.patch("imagerepositories", "default", "a", {"spec": {"interval": "2m"}})
    kubeapi.delete("imagerepositories", "default", "a")
    kubeapi.resume()
    assert await rec.take(3) == [
        ("add", "default/b"),
        ("update", "default/a"),
        ("delete", "default/a"),
    ]
    watches = kubeapi.calls(verb="watch", resource="imagerepositories")
    assert len(watches) >= 2
    assert watches[-1].query["resourceVersion"] == watches[0].query["resourceVersion"]
    assert len(kubeapi.calls(verb="list", resource="imagerepositories")) == 1


async def test_watch_cut_inside_an_event_resumes_and_delivers_it_once(
    kubeapi: FakeKubeAPI, start: StartFn
) -> None:
    kubeapi.create(repo("a"))
    informer, rec = await start()
    assert await rec.next() == ("add", "default/a")
    await wait_for(lambda: kubeapi.open_watches == 1)
    assert kubeapi.cut_watches_mid_event() == 1
    kubeapi.patch("imagerepositories", "default", "a", {"spec": {"interval": "7m"}})
    # Half of this event's line arrived before the connection dropped; the informer
    # re-watches from the last whole event and gets it whole.
    assert await rec.next() == ("update", "default/a")
    kubeapi.create(repo("b"))
    assert await rec.next() == ("add", "default/b")
    assert rec.queue.empty()
    stored = informer.get("default/a")
    assert stored is not None
    assert stored["spec"]["interval"] == "7m"
    watches = kubeapi.calls(verb="watch", resource="imagerepositories")
    assert len(watches) >= 2
    assert watches[1].query["resourceVersion"] == watches[0].query["resourceVersion"]
    assert len(kubeapi.calls(verb="list", resource="imagerepositories")) == 1


async def test_gone_relists_and_delivers_missed_deletions(
    kubeapi: FakeKubeAPI, start: StartFn
) -> None:
    for name in ("a", "b", "c"):
        kubeapi.create(repo(name))
    informer, rec = await start()
    assert sorted(await rec.take(3)) == [("add", f"default/{n}") for n in "abc"]
    await wait_for(lambda: kubeapi.open_watches == 1)
    kubeapi.pause()
    kubeapi.cut_watches()
    kubeapi.delete("imagerepositories", "default", "a")
    kubeapi.patch("imagerepositories", "default", "b", {"spec": {"interval": "9m"}})
    kubeapi.create(repo("d"))
    kubeapi.compact()  # the resume point is now too old: the watch answers 410
    kubeapi.resume()
    assert sorted(await rec.take(3)) == [
        ("add", "default/d"),
        ("delete", "default/a"),
        ("update", "default/b"),
    ]
    assert sorted(informer.keys()) == ["default/b", "default/c", "default/d"]
    assert len(kubeapi.calls(verb="list", resource="imagerepositories")) == 2
    # Unchanged "c" was not redelivered by the relist.
    assert rec.queue.empty()


async def test_gone_on_watch_request_relists(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    kubeapi.create(repo("a"))
    _, rec = await start()
    assert await rec.next() == ("add", "default/a")
    await wait_for(lambda: kubeapi.open_watches == 1)
    kubeapi.fail_next("GET", r"watch=true", 410)
    kubeapi.cut_watches(graceful=True)
    await wait_for(lambda: len(kubeapi.calls(verb="list", resource="imagerepositories")) == 2)
    kubeapi.create(repo("b"))
    assert await rec.next() == ("add", "default/b")


async def test_bookmarks_advance_resource_version(tmp_path: Path) -> None:
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
        await wait_for(lambda: int(informer.resource_version) > int(listed))
        assert informer.list() == []
        await running.stop()
        await kc.close()


async def test_label_selector(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    kubeapi.create(repo("in", shard="one"))
    kubeapi.create(repo("out", shard="two"))
    informer, rec = await start(label_selector="shard=one")
    assert await rec.next() == ("add", "default/in")
    kubeapi.create(repo("in2", shard="one"))
    kubeapi.create(repo("out2"))
    kubeapi.patch("imagerepositories", "default", "in", {"metadata": {"labels": {"shard": "x"}}})
    assert await rec.take(2) == [("add", "default/in2"), ("delete", "default/in")]
    assert informer.keys() == ["default/in2"]
    assert all(c.query.get("labelSelector") == "shard=one" for c in kubeapi.calls(verb="watch"))


async def test_namespace_restriction(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    kubeapi.create(repo("mine", namespace="apps"))
    kubeapi.create(repo("theirs", namespace="other"))
    informer, rec = await start(namespace="apps")
    assert await rec.next() == ("add", "apps/mine")
    kubeapi.create(repo("theirs2", namespace="other"))
    kubeapi.create(repo("mine2", namespace="apps"))
    assert await rec.next() == ("add", "apps/mine2")
    assert sorted(informer.keys()) == ["apps/mine", "apps/mine2"]
    assert {c.namespace for c in kubeapi.calls(resource="imagerepositories")} == {"apps"}


async def test_backoff_on_server_errors_then_recovery(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    kubeapi.create(repo("a"))
    kubeapi.fail_next("GET", r"imagerepositories\?limit", 500, count=3)
    informer, rec = await start()
    assert await rec.next() == ("add", "default/a")
    assert len(kubeapi.calls(verb="list", resource="imagerepositories")) == 4
    # The watch fails too; the informer backs off and resumes from the same version.
    await wait_for(lambda: kubeapi.open_watches == 1)
    kubeapi.fail_next("GET", r"watch=true", 503, count=2)
    kubeapi.cut_watches()
    kubeapi.create(repo("b"))
    assert await rec.next() == ("add", "default/b")
    assert len(kubeapi.calls(verb="list", resource="imagerepositories")) == 4
    assert informer.has_synced()


async def test_server_down_then_up(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    _, rec = await start()
    await wait_for(lambda: kubeapi.open_watches == 1)
    await kubeapi.go_down()
    kubeapi.create(repo("while-down"))
    await kubeapi.come_up()
    assert await rec.next() == ("add", "default/while-down")


async def test_stop_interrupts_blocked_watch(kubeapi: FakeKubeAPI, client: KubeClient) -> None:
    informer = Informer(
        client,
        IMAGE_REPOSITORIES,
        options=InformerOptions(watch_timeout_min=3600, watch_timeout_max=3600),
    )
    task = asyncio.create_task(informer.run(), name="test-informer-stop")
    await asyncio.wait_for(informer.wait_synced(), GUARD)
    await wait_for(lambda: kubeapi.open_watches == 1)
    informer.stop()
    await asyncio.wait_for(task, GUARD)
    await wait_for(lambda: kubeapi.open_watches == 0)


async def test_stop_event_ends_run(client: KubeClient) -> None:
    informer = Informer(client, IMAGE_REPOSITORIES, options=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop), name="test-informer-stop-event")
    await asyncio.wait_for(informer.wait_synced(), GUARD)
    stop.set()
    await asyncio.wait_for(task, GUARD)


async def test_indexes_follow_changes(kubeapi: FakeKubeAPI, start: StartFn) -> None:
    kubeapi.create(repo("a", team="red"))
    informer, rec = await start()
    await rec.next()
    informer.add_index("team", lambda o: [o["metadata"].get("labels", {}).get("team", "")])
    assert [object_key(o) for o in informer.by_index("team", "red")] == ["default/a"]
    kubeapi.create(repo("b", team="red"))
    kubeapi.patch("imagerepositories", "default", "a", {"metadata": {"labels": {"team": "blue"}}})
    await rec.take(2)
    assert [object_key(o) for o in informer.by_index("team", "red")] == ["default/b"]
    assert [object_key(o) for o in informer.by_index("team", "blue")] == ["default/a"]
    kubeapi.delete("imagerepositories", "default", "a")
    await rec.next()
    assert informer.by_index("team", "blue") == []


async def test_failing_handler_does_not_stop_the_informer(
    kubeapi: FakeKubeAPI, start: StartFn
) -> None:
    informer, rec = await start()

    def boom(obj: JSONObject) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(on_add=boom)
    kubeapi.create(repo("a"))
    assert await rec.next() == ("add", "default/a")
    kubeapi.create(repo("b"))
    assert await rec.next() == ("add", "default/b")


async def test_managed_fields_are_not_kept(kubeapi: FakeKubeAPI, client: KubeClient) -> None:
    kubeapi.create({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "mf", "managedFields": [{"manager": "kubectl"}]}})
    informer = Informer(client, NAMESPACES)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop), name="informer-under-test")
    try:
        await informer.wait_synced()
        stored = informer.get("mf")
        assert stored is not None
        assert "managedFields" not in stored["metadata"]
    finally:
        stop.set()
        await task
