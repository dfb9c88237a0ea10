"""Tests of the fake Kubernetes API server, driven the way its users drive it.

kubernetes_asyncio (typed APIs, CustomObjectsApi and ``watch.Watch``), raw aiohttp for
watch streams, and kubectl as a subprocess check the semantics the controller depends on:
resourceVersion and generation rules, status subresource isolation, optimistic
concurrency, finalizers, watch resume/bookmarks/410, selectors, faults and recording.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.kubeapi import FAKE_TOKEN, ApiStatusError, FakeKubeAPI, running_kubeapi
from tests.fakes.kubeapi_match import json_patch, merge_patch, parse_label_selector

GROUP, VERSION, PLURAL = "image.toolkit.fluxcd.io", "v1beta2", "imagerepositories"
MERGE = "application/merge-patch+json"
JSONObj = dict[str, Any]


def repo(name: str, *, labels: dict[str, str] | None = None, **extra: Any) -> JSONObj:
    """An ImageRepository manifest in namespace default."""
    meta: JSONObj = {"name": name, "namespace": "default", **extra}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImageRepository", "metadata": meta,
            "spec": {"image": f"example.com/{name}", "interval": "5m"}}


@pytest.fixture
async def kube(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeKubeAPI]:
    # kubernetes_asyncio's session trusts proxy variables even for 127.0.0.1.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    async with running_kubeapi(bookmark_interval=0.05) as api:
        yield api


@pytest.fixture
async def k8s(kube: FakeKubeAPI, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio client from a kubeconfig; also the default for ``Watch()``."""
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    await config.load_kube_config(config_file=str(path))
    async with client.ApiClient() as api:
        yield api


@pytest.fixture
async def raw(kube: FakeKubeAPI) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=kube.url) as session:
        yield session


REPOS = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"


# A guard, not an assertion on timing: a fake that loses an event fails instead of hanging.
READ_GUARD = 10.0


async def read_line(resp: aiohttp.ClientResponse) -> bytes:
    """The next line of a stream, or a failure if none comes within the guard."""
    async with asyncio.timeout(READ_GUARD):
        return await resp.content.readline()


async def read_event(resp: aiohttp.ClientResponse) -> JSONObj:
    line = await read_line(resp)
    assert line, "watch stream ended"
    event: JSONObj = json.loads(line)
    return event


def status_of(err: ApiException) -> JSONObj:
    """The Status object an ApiException carries."""
    status: JSONObj = json.loads(err.body or b"{}")
    return status


# --- create / get / errors ---------------------------------------------------------------


async def test_create_is_201_with_server_fields_and_drops_status(
        k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    api = client.CustomObjectsApi(k8s)
    before = kube.store.resource_version
    created = await api.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, {**repo("a"), "status": {"x": 1}})
    meta = created["metadata"]
    assert meta["resourceVersion"] == str(before + 1)
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert "status" not in created
    assert await api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a") == created


async def test_not_found_already_exists_and_missing_namespace_match_the_real_server(
        raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    async with raw.get(f"{REPOS}/x") as resp:
        assert resp.status == 404
        assert await resp.json() == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": 'imagerepositories.image.toolkit.fluxcd.io "x" not found',
            "reason": "NotFound", "code": 404,
            "details": {"name": "x", "group": GROUP, "kind": PLURAL},
        }
    kube.create(repo("x"))
    async with raw.post(REPOS, json=repo("x")) as resp:
        assert resp.status == 409
        assert (await resp.json())["reason"] == "AlreadyExists"
    async with raw.post("/api/v1/namespaces/nope/secrets",
                        json={"metadata": {"name": "s"}}) as resp:
        assert resp.status == 404
        assert (await resp.json())["message"] == 'namespaces "nope" not found'


# --- resourceVersion, generation, status subresource ---------------------------------------


async def test_generation_bumps_only_on_spec_changes(k8s: client.ApiClient) -> None:
    api: Any = client.CustomObjectsApi(k8s)  # _content_type is a **kwargs option
    obj = await api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, repo("a"))

    async def patch(body: JSONObj, *, status: bool = False) -> JSONObj:
        fn = (api.patch_namespaced_custom_object_status if status
              else api.patch_namespaced_custom_object)
        out: JSONObj = await fn(GROUP, VERSION, "default", PLURAL, "a", body,
                                _content_type=MERGE)
        return out

    rv = int(obj["metadata"]["resourceVersion"])
    steps: list[tuple[JSONObj, bool, int]] = [
        ({"spec": {"interval": "1m"}}, False, 2),
        ({"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}}}, False, 2),
        ({"status": {"observedGeneration": 2}}, True, 2),
        ({"spec": {"suspend": True}}, False, 3),
    ]
    for body, status, generation in steps:
        obj = await patch(body, status=status)
        assert obj["metadata"]["generation"] == generation, body
        assert int(obj["metadata"]["resourceVersion"]) == rv + 1, body
        rv += 1
    # A write that changes nothing stores nothing: same resourceVersion, no event.
    obj = await patch({"spec": {"suspend": True}})
    assert int(obj["metadata"]["resourceVersion"]) == rv


async def test_status_subresource_isolation(k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    api: Any = client.CustomObjectsApi(k8s)  # _content_type is a **kwargs option
    await api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, repo("a"))
    # Status writes ignore spec and metadata...
    out = await api.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "a",
        {"spec": {"image": "evil"}, "metadata": {"labels": {"x": "y"}}, "status": {"n": 1}},
        _content_type=MERGE)
    assert out["spec"]["image"] == "example.com/a"
    assert "labels" not in out["metadata"]
    assert out["status"] == {"n": 1}
    # ...and main-resource writes ignore status.
    out = await api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "a", {"spec": {"image": "b"}, "status": {"n": 2}},
        _content_type=MERGE)
    assert out["status"] == {"n": 1}
    assert out["spec"]["image"] == "b"
    # PUT /status replaces status wholesale.
    out["status"] = {"m": 3}
    out = await api.replace_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "a", out)
    assert out["status"] == {"m": 3}
    assert kube.get(PLURAL, "default", "a") == out


async def test_stale_resource_version_conflicts(k8s: client.ApiClient) -> None:
    api: Any = client.CustomObjectsApi(k8s)  # _content_type is a **kwargs option
    old = await api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, repo("a"))
    await api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "a", {"spec": {"interval": "2m"}},
        _content_type=MERGE)
    with pytest.raises(ApiException) as put:
        await api.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a", old)
    body = status_of(put.value)
    assert (put.value.status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on imagerepositories.image.toolkit.fluxcd.io "a": the '
        "object has been modified; please apply your changes to the latest version and try "
        "again")
    stale = {"metadata": {"resourceVersion": old["metadata"]["resourceVersion"]},
             "status": {"n": 1}}
    with pytest.raises(ApiException) as patch:
        await api.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "a", stale, _content_type=MERGE)
    assert patch.value.status == 409
    # Custom resources refuse an unconditional PUT.
    del old["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as unconditional:
        await api.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a", old)
    assert unconditional.value.status == 422


async def test_patch_types(raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    kube.create(repo("a"))
    ops = [{"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
           {"op": "replace", "path": "/spec/interval", "value": "9m"}]
    async with raw.patch(f"{REPOS}/a", json=ops,
                         headers={"Content-Type": "application/json-patch+json"}) as resp:
        out = await resp.json()
        assert (out["metadata"]["finalizers"], out["spec"]["interval"]) == (["f"], "9m")
    # Custom resources do not take strategic merge patches; built-in kinds do (as merge).
    strategic = {"Content-Type": "application/strategic-merge-patch+json"}
    async with raw.patch(f"{REPOS}/a", json={"spec": {}}, headers=strategic) as resp:
        assert resp.status == 415
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                 "stringData": {"k": "v"}})
    async with raw.patch("/api/v1/namespaces/default/secrets/s",
                         json={"metadata": {"labels": {"l": "1"}}}, headers=strategic) as resp:
        out = await resp.json()
        assert (out["metadata"]["labels"], out["data"], out["type"]) == (
            {"l": "1"}, {"k": "dg=="}, "Opaque")


# --- deletion ------------------------------------------------------------------------------


async def test_finalizers_hold_deletion_until_removed(
        k8s: client.ApiClient, kube: FakeKubeAPI, raw: aiohttp.ClientSession) -> None:
    api = client.CustomObjectsApi(k8s)
    created = await api.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, repo("a", finalizers=["x/f"]))
    rv = created["metadata"]["resourceVersion"]
    async with raw.get(REPOS, params={"watch": "true", "resourceVersion": rv}) as stream:
        deleted = await api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                            "a")
        meta = deleted["metadata"]
        assert meta["deletionTimestamp"]
        assert meta["deletionGracePeriodSeconds"] == 0
        assert meta["generation"] == 2  # markAsDeleting bumps it, so predicates see it
        marked = await read_event(stream)
        assert marked["type"] == "MODIFIED"
        assert marked["object"]["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
        with pytest.raises(ApiStatusError) as added:
            kube.patch(PLURAL, "default", "a", {"metadata": {"finalizers": ["x/f", "y/g"]}})
        assert added.value.code == 422
        kube.patch(PLURAL, "default", "a", {"metadata": {"finalizers": None}})
        gone = await read_event(stream)
        assert gone["type"] == "DELETED"
        assert int(gone["object"]["metadata"]["resourceVersion"]) == kube.store.resource_version
    assert kube.get(PLURAL, "default", "a") is None


async def test_delete_without_finalizers_answers_object_or_status(
        k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    kube.create(repo("a"))
    out = await client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "a")
    assert out["metadata"]["name"] == "a"
    assert kube.get(PLURAL, "default", "a") is None
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    status = await client.CoreV1Api(k8s).delete_namespaced_secret("s", "default")
    assert (status.status, status.details.name) == ("Success", "s")


async def test_namespace_deletion_waits_for_finalized_content(kube: FakeKubeAPI) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    kube.create(repo("held", namespace="team", finalizers=["x/f"]))
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
                                                                     "namespace": "team"}})
    ns = kube.delete("namespaces", None, "team")
    assert ns["status"]["phase"] == "Terminating"
    assert kube.get("secrets", "team", "s") is None
    with pytest.raises(ApiStatusError) as forbidden:
        kube.create(repo("new", namespace="team"))
    assert forbidden.value.code == 403
    kube.patch(PLURAL, "team", "held", {"metadata": {"finalizers": []}})
    assert kube.get("namespaces", None, "team") is None


# --- lists and selectors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web,tier=fe", ["a"]),
        ("app!=web", ["c", "d"]),
        ("tier in (fe, be)", ["a", "b", "c"]),
        ("tier notin (fe)", ["b", "c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("", ["a", "b", "c", "d"]),
    ],
    ids=["eq", "double-eq-and", "neq-includes-unlabelled", "in", "notin-includes-unlabelled",
         "exists", "not-exists", "empty"],
)
async def test_list_label_selectors(
        k8s: client.ApiClient, kube: FakeKubeAPI, selector: str, expected: list[str]) -> None:
    for name, labels in [("a", {"app": "web", "tier": "fe"}), ("b", {"app": "web", "tier": "be"}),
                         ("c", {"app": "db", "tier": "be"}), ("d", {})]:
        kube.create(repo(name, labels=labels))
    out = await client.CustomObjectsApi(k8s).list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, label_selector=selector)
    assert [i["metadata"]["name"] for i in out["items"]] == expected
    assert out["metadata"]["resourceVersion"] == str(kube.store.resource_version)


async def test_field_selectors_pagination_and_typed_lists(
        k8s: client.ApiClient, kube: FakeKubeAPI, raw: aiohttp.ClientSession) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    for ns, name in [("default", "a"), ("default", "b"), ("other", "a")]:
        kube.create({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": name, "namespace": ns}})
    core = client.CoreV1Api(k8s)
    by_name = await core.list_secret_for_all_namespaces(field_selector="metadata.name=a")
    assert sorted(s.metadata.namespace for s in by_name.items) == ["default", "other"]
    page = await core.list_secret_for_all_namespaces(limit=2)
    assert (len(page.items), page.metadata.remaining_item_count) == (2, 1)
    rest = await core.list_secret_for_all_namespaces(limit=2, _continue=page.metadata._continue)
    assert [s.metadata.name for s in rest.items] == ["a"]
    async with raw.get("/api/v1/secrets", params={"fieldSelector": "spec.x=1"}) as resp:
        assert resp.status == 400
    async with raw.get("/api/v1/namespaces/default/secrets") as resp:
        item = (await resp.json())["items"][0]
        assert "kind" not in item  # typed lists carry no per-item TypeMeta
    namespaces = await core.list_namespace(label_selector="kubernetes.io/metadata.name=other")
    assert [n.metadata.name for n in namespaces.items] == ["other"]


# --- watch ------------------------------------------------------------------------------------


async def test_watch_from_resource_version_and_from_now(
        raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    kube.create(repo("a"))
    rv = kube.store.resource_version
    kube.create(repo("b"))
    kube.patch(PLURAL, "default", "a", {"spec": {"interval": "1m"}})
    async with raw.get(REPOS, params={"watch": "1", "resourceVersion": str(rv)}) as stream:
        events = [await read_event(stream) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("MODIFIED", "a")]
    async with raw.get(REPOS, params={"watch": "true"}) as stream:
        initial = [await read_event(stream) for _ in range(2)]
        kube.delete(PLURAL, "default", "b")
        last = await read_event(stream)
    assert [e["type"] for e in initial] == ["ADDED", "ADDED"]
    assert (last["type"], last["object"]["metadata"]["name"]) == ("DELETED", "b")


async def test_kubernetes_asyncio_watch_gets_bookmarks_and_server_timeout(
        k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    api = client.CustomObjectsApi(k8s)
    kube.create(repo("a"))
    rv = str(kube.store.resource_version)
    kube.patch(PLURAL, "default", "a", {"spec": {"interval": "1m"}})
    seen: list[str] = []
    async with watch.Watch() as w:
        async for event in w.stream(api.list_namespaced_custom_object, GROUP, VERSION,
                                    "default", PLURAL, resource_version=rv,
                                    allow_watch_bookmarks=True, timeout_seconds=1):
            seen.append(event["type"])
            if event["type"] == "BOOKMARK":
                break
        assert seen == ["MODIFIED", "BOOKMARK"]
        watcher: Any = w  # its resource_version attribute is typed as None
        assert watcher.resource_version == str(kube.store.resource_version)
    # timeoutSeconds ends the stream from the server side; the iterator then stops.
    async with watch.Watch() as w:
        rest = [e async for e in w.stream(api.list_namespaced_custom_object, GROUP, VERSION,
                                          "default", PLURAL, resource_version=rv,
                                          timeout_seconds=1)]
    assert [e["type"] for e in rest] == ["MODIFIED"]


async def test_watch_after_compact_is_410_but_list_is_fine(
        k8s: client.ApiClient, kube: FakeKubeAPI, raw: aiohttp.ClientSession) -> None:
    kube.create(repo("a"))
    old = kube.store.resource_version - 1
    kube.compact()
    floor = kube.store.resource_version
    async with raw.get(REPOS, params={"watch": "true", "resourceVersion": str(old)}) as stream:
        assert stream.status == 200
        error = await read_event(stream)
        assert await read_line(stream) == b""
    assert error["type"] == "ERROR"
    assert error["object"]["code"] == 410
    assert error["object"]["reason"] == "Expired"
    assert error["object"]["message"] == f"too old resource version: {old} ({floor})"
    api = client.CustomObjectsApi(k8s)
    listed = await api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                     resource_version=str(old))
    assert len(listed["items"]) == 1

    async def drain() -> None:
        async with watch.Watch() as w:
            async for _ in w.stream(api.list_namespaced_custom_object, GROUP, VERSION,
                                    "default", PLURAL, resource_version=str(old),
                                    timeout_seconds=5):
                pass

    with pytest.raises(ApiException) as gone:
        await drain()
    assert gone.value.status == 410


async def test_history_window_expires_old_versions() -> None:
    async with running_kubeapi(history_limit=3) as small, aiohttp.ClientSession() as session:
        start = small.store.resource_version
        for i in range(5):
            small.create(repo(f"r{i}"))
        async with session.get(small.url + REPOS, params={
                "watch": "true", "resourceVersion": str(start)}) as stream:
            assert (await read_event(stream))["object"]["code"] == 410
        recent = small.store.resource_version - 3
        async with session.get(small.url + REPOS, params={
                "watch": "true", "resourceVersion": str(recent)}) as stream:
            names = [(await read_event(stream))["object"]["metadata"]["name"] for _ in range(3)]
        assert names == ["r2", "r3", "r4"]


async def test_watch_label_selector_turns_relabels_into_added_and_deleted(
        raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    async with raw.get(REPOS, params={"watch": "true", "labelSelector": "shard=1"}) as stream:
        kube.create(repo("other", labels={"shard": "2"}))
        kube.create(repo("a", labels={"shard": "1"}))
        kube.patch(PLURAL, "default", "a", {"metadata": {"labels": {"shard": "2"}}})
        rv_out = kube.store.resource_version
        kube.patch(PLURAL, "default", "a", {"metadata": {"labels": {"shard": "1"}}})
        events = [await read_event(stream) for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a")]
    # The DELETED object is the last matching state, at the version that ended the match.
    assert events[1]["object"]["metadata"]["labels"] == {"shard": "1"}
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(rv_out)


# --- faults, recording, lifecycle -------------------------------------------------------------


async def test_fail_next_injects_status_errors(k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    api: Any = client.CustomObjectsApi(k8s)  # _content_type is a **kwargs option
    kube.fail_next("GET", rf"/{PLURAL}$", 429, count=2, retry_after=7)
    kube.fail_next("PATCH", r"/status", 500)
    kube.create(repo("a"))
    for _ in range(2):
        with pytest.raises(ApiException) as limited:
            await api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
        assert limited.value.status == 429
        assert limited.value.headers is not None
        assert limited.value.headers["Retry-After"] == "7"
        assert status_of(limited.value)["details"]["retryAfterSeconds"] == 7
    await api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    # Only the status subresource fails; the main resource is untouched by that rule.
    await api.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a",
                                             {"spec": {"interval": "1m"}}, _content_type=MERGE)
    with pytest.raises(ApiException) as internal:
        await api.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "a", {"status": {}}, _content_type=MERGE)
    assert (internal.value.status, status_of(internal.value)["reason"]) == (
        500, "InternalError")


async def test_cut_watches_breaks_streams_mid_stream(
        raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    kube.create(repo("a"))
    async with raw.get(REPOS, params={"watch": "true"}) as stream:
        await read_event(stream)
        assert kube.cut_watches() == 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_line(stream)
    async with raw.get(REPOS, params={"watch": "true"}) as stream:
        await read_event(stream)
        assert kube.cut_watches(graceful=True) == 1
        assert await read_line(stream) == b""


async def test_cut_mid_event_sends_half_a_line_then_drops(
        raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    kube.create(repo("a"))
    async with raw.get(REPOS, params={"watch": "true"}) as stream:
        await read_event(stream)
        assert kube.cut_watches_mid_event() == 1
        kube.create(repo("b"))
        chunks: list[bytes] = []

        async def read_to_the_break() -> None:
            async with asyncio.timeout(READ_GUARD):
                while chunk := await stream.content.readany():
                    chunks.append(chunk)

        with pytest.raises(aiohttp.ClientPayloadError):
            await read_to_the_break()
        received = b"".join(chunks)
        assert received.startswith(b'{"type":"ADDED"')
        assert b"\n" not in received
        with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
            json.loads(received)


async def test_go_down_refuses_then_come_up_serves_same_port(kube: FakeKubeAPI) -> None:
    url = kube.url + "/version"
    async with aiohttp.ClientSession() as session:
        async with session.get(kube.url + REPOS, params={"watch": "true"}) as stream:
            await kube.go_down()
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_line(stream)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url):
                pass
        await kube.come_up()
        async with session.get(url) as resp:
            assert resp.status == 200
    assert kube.url + "/version" == url


async def test_pause_holds_requests_until_resumed(
        raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    kube.pause()

    async def version() -> int:
        async with raw.get("/version") as resp:
            return resp.status

    task = asyncio.create_task(version())
    async with asyncio.timeout(READ_GUARD):
        await kube.wait_for_calls(1)
    await asyncio.sleep(0)
    assert not task.done()  # it arrived (recorded) and is held by the pause
    kube.resume()
    assert await task == 200


async def test_requests_are_recorded_with_rbac_terms(
        k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    api: Any = client.CustomObjectsApi(k8s)  # _content_type is a **kwargs option
    await api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, repo("a"))
    await api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a")
    await api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    await api.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "a", {"status": {}}, _content_type=MERGE)
    await api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a")
    assert [(r.verb, r.resource, r.subresource, r.namespace, r.name) for r in kube.requests] == [
        ("create", PLURAL, "", "default", ""),
        ("get", PLURAL, "", "default", "a"),
        ("list", PLURAL, "", "", ""),
        ("patch", PLURAL, "status", "default", "a"),
        ("delete", PLURAL, "", "default", "a"),
    ]
    assert all(r.group == GROUP and r.authorization for r in kube.requests)
    assert len(kube.calls(verb="patch", subresource="status")) == 1


async def test_bearer_token_is_enforced_when_configured(tmp_path: Path) -> None:
    async with running_kubeapi(token=FAKE_TOKEN) as api, aiohttp.ClientSession() as session:
        async with session.get(api.url + "/api/v1/namespaces") as resp:
            assert resp.status == 401
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(api.write_kubeconfig(tmp_path / "kc")),
                                      client_configuration=cfg)
        async with client.ApiClient(cfg) as k8s:
            names = await client.CoreV1Api(k8s).list_namespace()
        assert "default" in [n.metadata.name for n in names.items]


# --- other kinds --------------------------------------------------------------------------------


async def test_core_and_coordination_kinds(k8s: client.ApiClient, kube: FakeKubeAPI) -> None:
    core = client.CoreV1Api(k8s)
    ns = await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name="team", labels={"env": "test"})))
    assert ns.metadata.labels == {"env": "test", "kubernetes.io/metadata.name": "team"}
    secret = await core.create_namespaced_secret("team", client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"user": "u"}))
    assert (secret.data, secret.type) == ({"user": "dQ=="}, "Opaque")
    secret.data["user"] = "dg=="
    await core.replace_namespaced_secret("creds", "team", secret)
    with pytest.raises(ApiException) as stale:
        await core.replace_namespaced_secret("creds", "team", secret)
    assert stale.value.status == 409
    leases = client.CoordinationV1Api(k8s)
    lease = await leases.create_namespaced_lease("team", client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(holder_identity="me", lease_duration_seconds=15)))
    assert lease.metadata.resource_version == str(kube.store.resource_version)
    lease.spec.holder_identity = "you"
    renewed = await leases.replace_namespaced_lease("leader", "team", lease)
    assert renewed.spec.holder_identity == "you"
    event = await core.create_namespaced_event("team", client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="obj."), reason="Ready", message="m",
        involved_object=client.V1ObjectReference(kind="ImageRepository", name="a")))
    assert event.metadata.name.startswith("obj.")
    assert len(kube.list("events", "team", field_selector="involvedObject.name=a")) == 1


async def test_crd_creation_serves_its_kinds(
        k8s: client.ApiClient, raw: aiohttp.ClientSession, kube: FakeKubeAPI) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                           "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}},
                               "subresources": {"status": {}}}]},
    }
    extensions: Any = client.ApiextensionsV1Api(k8s)  # takes a dict body at runtime
    created = await extensions.create_custom_resource_definition(crd)
    established = {c.type: c.status for c in created.status.conditions}
    assert established == {"NamesAccepted": "True", "Established": "True"}
    async with raw.get("/apis/example.com/v1") as resp:
        resources = {r["name"]: r for r in (await resp.json())["resources"]}
    assert resources["widgets"]["kind"] == "Widget"
    assert resources["widgets/status"]["verbs"] == ["get", "patch", "update"]
    widget = await client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert widget["metadata"]["generation"] == 1
    kube.delete("customresourcedefinitions", None, "widgets.example.com")
    async with raw.get("/apis/example.com/v1/namespaces/default/widgets") as resp:
        assert resp.status == 404


# --- kubectl ------------------------------------------------------------------------------------


async def test_kubectl_get_and_annotate(kube: FakeKubeAPI, tmp_path: Path) -> None:
    kube.create(repo("podinfo"))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache")]

    def kubectl(*args: str) -> str:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = await asyncio.to_thread(kubectl, "get", "imagerepository", "podinfo", "-o",
                                  "jsonpath={.metadata.generation} {.spec.image}")
    assert out == "1 example.com/podinfo"
    await asyncio.to_thread(kubectl, "annotate", "imagerepository", "podinfo",
                            "reconcile.fluxcd.io/requestedAt=now")
    obj = kube.get(PLURAL, "default", "podinfo")
    assert obj is not None
    assert obj["metadata"]["annotations"] == {"reconcile.fluxcd.io/requestedAt": "now"}
    assert obj["metadata"]["generation"] == 1
    assert kube.calls(verb="patch", resource=PLURAL)


# --- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [("a=b,c in (d,e),!f,g", True), ("a>1", True), ("a in (b", False), ("=b", False),
     ("a>b", False)],
    ids=["mixed", "gt", "unclosed-set", "no-key", "gt-not-integer"],
)
def test_label_selector_grammar(text: str, ok: bool) -> None:
    if ok:
        assert parse_label_selector(text)
    else:
        with pytest.raises(ApiStatusError):
            parse_label_selector(text)


def test_merge_and_json_patch() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}, "e": 2}) == {
        "a": {"c": [3]}, "d": 1, "e": 2}
    assert json_patch(doc, [{"op": "add", "path": "/a/c/-", "value": 3},
                            {"op": "move", "from": "/d", "path": "/f"},
                            {"op": "copy", "from": "/f", "path": "/a~1b"}]) == {
        "a": {"b": 1, "c": [1, 2, 3]}, "f": 1, "a/b": 1}
    assert doc == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    with pytest.raises(ApiStatusError):
        json_patch(doc, [{"op": "test", "path": "/d", "value": 2}])
