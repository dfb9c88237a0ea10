"""Serial patcher: merge-patch diffs, condition overlay, conflicts and finalizers."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imagereflector.api import meta
from imagereflector.kube.client import (
    IMAGE_REPOSITORIES,
    ConflictError,
    JSONObject,
    KubeClient,
    NotFoundError,
)
from imagereflector.kube.patch import (
    PatchClient,
    SerialPatcher,
    merge_patch_diff,
    overlay_conditions,
)
from tests.fakes.kubeapi import FakeKubeAPI, running_kubeapi

DIFF_CASES = [
    ("equal", {"a": 1}, {"a": 1}, {}),
    ("changed-scalar", {"a": 1}, {"a": 2}, {"a": 2}),
    ("added", {}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ("removed", {"a": 1, "b": 2}, {"b": 2}, {"a": None}),
    ("nested", {"l": {"x": 1, "y": 2}}, {"l": {"x": 1, "y": 3}}, {"l": {"y": 3}}),
    ("list-replaced", {"t": [1, 2]}, {"t": [1]}, {"t": [1]}),
    ("dict-to-scalar", {"a": {"b": 1}}, {"a": 5}, {"a": 5}),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"), [c[1:] for c in DIFF_CASES], ids=[c[0] for c in DIFF_CASES]
)
def test_merge_patch_diff(
    before: dict[str, Any], after: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch_diff(before, after) == expected


def cond(t: str, status: str = "True", reason: str = "Succeeded") -> dict[str, Any]:
    return {"type": t, "status": status, "reason": reason, "message": "", "lastTransitionTime": "x"}


def test_overlay_keeps_foreign_conditions_and_applies_ours() -> None:
    before = [cond("Ready", "Unknown", "Progressing"), cond("Reconciling")]
    after = [cond("Ready")]  # Ready changed, Reconciling removed
    latest = [cond("Ready", "Unknown", "Progressing"), cond("Reconciling"), cond("Foreign")]
    assert overlay_conditions(latest, before, after) == [cond("Ready"), cond("Foreign")]


def test_overlay_untouched_type_takes_latest_value() -> None:
    before = [cond("Ready"), cond("Stalled", "False")]
    after = [cond("Ready", "False", "Failed"), cond("Stalled", "False")]
    latest = [cond("Ready"), cond("Stalled", "True")]  # someone else changed Stalled
    assert overlay_conditions(latest, before, after) == [
        cond("Ready", "False", "Failed"),
        cond("Stalled", "True"),
    ]


# -- against the fake API server ---------------------------------------------------------------

REPO_PLURAL = "imagerepositories"


def new_repo(name: str = "podinfo") -> JSONObject:
    return {
        "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
        "kind": "ImageRepository",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "ghcr.io/stefanprodan/podinfo", "interval": "1m"},
    }


@pytest.fixture
async def kubeapi() -> AsyncIterator[FakeKubeAPI]:
    async with running_kubeapi() as api:
        yield api


@pytest.fixture
async def client(kubeapi: FakeKubeAPI, tmp_path: Path) -> AsyncIterator[KubeClient]:
    kc = await KubeClient.connect(
        kubeconfig=str(kubeapi.write_kubeconfig(tmp_path / "kubeconfig")), qps=0
    )
    yield kc
    await kc.close()


def patcher(client: KubeClient, obj: JSONObject) -> SerialPatcher:
    typed: PatchClient = client
    return SerialPatcher(typed, IMAGE_REPOSITORIES, obj, retry_delay=0.001)


async def test_finalizer_then_status_in_small_patches(
    kubeapi: FakeKubeAPI, client: KubeClient
) -> None:
    obj = kubeapi.create(new_repo())
    p = patcher(client, obj)
    work = copy.deepcopy(obj)
    work["metadata"]["finalizers"] = [meta.FINALIZER]
    work["status"] = {"conditions": [cond("Ready", "Unknown", "Progressing")]}
    await p.patch(work)
    work["status"]["conditions"] = [cond("Ready")]
    work["status"]["canonicalImageName"] = "ghcr.io/stefanprodan/podinfo"
    result = await p.patch(work)
    assert result is not None
    assert await p.patch(work) is None  # nothing changed since: no request

    stored = kubeapi.get(REPO_PLURAL, "default", "podinfo")
    assert stored is not None
    assert stored["metadata"]["finalizers"] == [meta.FINALIZER]
    assert stored["status"] == work["status"]
    assert stored["metadata"]["generation"] == 1
    patches = kubeapi.calls(verb="patch", resource=REPO_PLURAL)
    assert [c.subresource for c in patches] == ["", "status", "status"]
    assert all(c.query.get("fieldManager") == "image-reflector-controller" for c in patches)


async def test_status_patch_sends_only_the_diff(kubeapi: FakeKubeAPI, client: KubeClient) -> None:
    obj = kubeapi.create(new_repo())
    obj = kubeapi.patch_status(
        REPO_PLURAL, "default", "podinfo", {"lastScanResult": {"tagCount": 1}, "other": "x"}
    )
    p = patcher(client, obj)
    work = copy.deepcopy(obj)
    work["status"]["lastScanResult"]["tagCount"] = 2
    # Someone else changes another status field meanwhile: a field-wise merge keeps it.
    kubeapi.patch_status(REPO_PLURAL, "default", "podinfo", {"other": "y"})
    await p.patch(work)
    stored = kubeapi.get(REPO_PLURAL, "default", "podinfo")
    assert stored is not None
    assert stored["status"] == {"lastScanResult": {"tagCount": 2}, "other": "y"}


async def test_conditions_conflict_rereads_and_retries(
    kubeapi: FakeKubeAPI, client: KubeClient
) -> None:
    obj = kubeapi.create(new_repo())
    p = patcher(client, obj)
    # Another writer adds a condition after our snapshot: our resourceVersion is stale.
    kubeapi.patch_status(REPO_PLURAL, "default", "podinfo", {"conditions": [cond("Foreign")]})
    work = copy.deepcopy(obj)
    work["status"] = {"conditions": [cond("Ready")], "observedGeneration": 1}
    await p.patch(work)
    stored = kubeapi.get(REPO_PLURAL, "default", "podinfo")
    assert stored is not None
    assert stored["status"]["conditions"] == [cond("Ready"), cond("Foreign")]
    assert stored["status"]["observedGeneration"] == 1
    assert len(kubeapi.calls(verb="patch", subresource="status")) == 2
    assert len(kubeapi.calls(verb="get", resource=REPO_PLURAL)) == 1


async def test_injected_conflicts_are_retried_then_surface(
    kubeapi: FakeKubeAPI, client: KubeClient
) -> None:
    obj = kubeapi.create(new_repo())
    p = patcher(client, obj)
    work = copy.deepcopy(obj)
    work["status"] = {"conditions": [cond("Ready")]}
    kubeapi.fail_next("PATCH", r"/status", 409, count=2)
    await p.patch(work)
    assert len(kubeapi.calls(verb="patch", subresource="status")) == 3

    work["status"] = {"conditions": [cond("Ready", "False", "Failed")]}
    kubeapi.fail_next("PATCH", r"/status", 409, count=6)
    with pytest.raises(ConflictError):
        await p.patch(work)
    assert len(kubeapi.calls(verb="patch", subresource="status")) == 3 + 6


async def test_finalizer_conflict_keeps_foreign_finalizers(
    kubeapi: FakeKubeAPI, client: KubeClient
) -> None:
    obj = kubeapi.create(new_repo())
    p = patcher(client, obj)
    kubeapi.patch(REPO_PLURAL, "default", "podinfo", {"metadata": {"finalizers": ["other/x"]}})
    work = copy.deepcopy(obj)
    work["metadata"]["finalizers"] = [meta.FINALIZER]
    await p.patch(work)
    stored = kubeapi.get(REPO_PLURAL, "default", "podinfo")
    assert stored is not None
    assert stored["metadata"]["finalizers"] == ["other/x", meta.FINALIZER]


async def test_removing_last_finalizer_while_deleting(
    kubeapi: FakeKubeAPI, client: KubeClient
) -> None:
    obj = new_repo()
    obj["metadata"]["finalizers"] = [meta.FINALIZER]
    kubeapi.create(obj)
    kubeapi.delete(REPO_PLURAL, "default", "podinfo")
    deleting = kubeapi.get(REPO_PLURAL, "default", "podinfo")
    assert deleting is not None
    assert deleting["metadata"]["deletionTimestamp"]
    p = patcher(client, deleting)
    work = copy.deepcopy(deleting)
    work["metadata"]["finalizers"] = []
    work["status"] = {"conditions": [cond("Ready")]}  # the final status patch then 404s
    assert await p.patch(work) is None
    assert kubeapi.get(REPO_PLURAL, "default", "podinfo") is None


async def test_not_found_surfaces_when_not_deleting(
    kubeapi: FakeKubeAPI, client: KubeClient
) -> None:
    obj = kubeapi.create(new_repo())
    kubeapi.delete(REPO_PLURAL, "default", "podinfo")
    work = copy.deepcopy(obj)
    work["status"] = {"conditions": [cond("Ready")]}
    with pytest.raises(NotFoundError):
        await patcher(client, obj).patch(work)
