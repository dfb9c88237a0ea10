"""Serial patcher: merge-patch diffs, condition overlay, conflicts and finalizers.

The patcher's requests go to the real API server as the controller's ServiceAccount,
through the recording proxy, so conflicts are the server's own 409s on a stale
resourceVersion (plus injected ones), and what is stored is what the CRD's schema keeps.
"""

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
from tests.controllers.realharness import KubeTest

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
    return {"type": t, "status": status, "reason": reason, "message": "",
            "lastTransitionTime": "2024-05-01T12:00:00Z"}


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


# -- against the real API server --------------------------------------------------------------

REPO_PLURAL = "imagerepositories"


def new_repo(name: str = "podinfo") -> JSONObject:
    return {
        "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
        "kind": "ImageRepository",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/stefanprodan/podinfo", "interval": "1m"},
    }


@pytest.fixture
async def client(kube: KubeTest, tmp_path: Path) -> AsyncIterator[KubeClient]:
    kc = await KubeClient.connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                                  qps=0)
    yield kc
    await kc.close()


def patcher(client: KubeClient, obj: JSONObject) -> SerialPatcher:
    typed: PatchClient = client
    return SerialPatcher(typed, IMAGE_REPOSITORIES, obj, retry_delay=0.001)


def patch_status(kube: KubeTest, status: JSONObject) -> JSONObject:
    """Another writer (the admin) merge-patches the status of podinfo."""
    return kube.api.patch(REPO_PLURAL, kube.ns, "podinfo", {"status": status},
                          subresource="status")


def stored(kube: KubeTest) -> JSONObject:
    found = kube.api.get(REPO_PLURAL, kube.ns, "podinfo")
    assert found is not None
    return found


async def test_finalizer_then_status_in_small_patches(kube: KubeTest,
                                                      client: KubeClient) -> None:
    obj = kube.api.create(new_repo())
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

    found = stored(kube)
    assert found["metadata"]["finalizers"] == [meta.FINALIZER]
    assert found["status"] == work["status"]
    assert found["metadata"]["generation"] == 1  # neither finalizers nor status bump it
    patches = kube.proxy.calls(verb="patch", resource=REPO_PLURAL)
    assert [c.subresource for c in patches] == ["", "status", "status"]
    assert all(c.query.get("fieldManager") == "image-reflector-controller" for c in patches)
    assert {m["manager"] for m in found["metadata"]["managedFields"]} >= {
        "image-reflector-controller"}


async def test_status_patch_sends_only_the_diff(kube: KubeTest, client: KubeClient) -> None:
    kube.api.create(new_repo())
    obj = patch_status(kube, {"lastScanResult": {"tagCount": 1}, "canonicalImageName": "x"})
    p = patcher(client, obj)
    work = copy.deepcopy(obj)
    work["status"]["lastScanResult"]["tagCount"] = 2
    # Someone else changes another status field meanwhile: a field-wise merge keeps it.
    patch_status(kube, {"canonicalImageName": "y"})
    await p.patch(work)
    # observedGeneration -1 is the CRD's default for status, which both writes kept.
    assert stored(kube)["status"] == {"lastScanResult": {"tagCount": 2},
                                      "canonicalImageName": "y", "observedGeneration": -1}


async def test_conditions_conflict_rereads_and_retries(kube: KubeTest,
                                                       client: KubeClient) -> None:
    obj = kube.api.create(new_repo())
    p = patcher(client, obj)
    # Another writer adds a condition after our snapshot: our resourceVersion is stale,
    # and the API server says so with a 409.
    patch_status(kube, {"conditions": [cond("Foreign")]})
    work = copy.deepcopy(obj)
    work["status"] = {"conditions": [cond("Ready")], "observedGeneration": 1}
    await p.patch(work)
    found = stored(kube)
    assert found["status"]["conditions"] == [cond("Ready"), cond("Foreign")]
    assert found["status"]["observedGeneration"] == 1
    statuses = [c.status for c in kube.proxy.calls(verb="patch", subresource="status")]
    assert statuses == [409, 200]
    assert not any(c.injected for c in kube.proxy.calls())
    assert len(kube.proxy.calls(verb="get", resource=REPO_PLURAL)) == 1


async def test_injected_conflicts_are_retried_then_surface(kube: KubeTest,
                                                           client: KubeClient) -> None:
    obj = kube.api.create(new_repo())
    p = patcher(client, obj)
    work = copy.deepcopy(obj)
    work["status"] = {"conditions": [cond("Ready")]}
    kube.proxy.fail_next("PATCH", r"/status", 409, count=2)
    await p.patch(work)
    assert len(kube.proxy.calls(verb="patch", subresource="status")) == 3

    work["status"] = {"conditions": [cond("Ready", "False", "Failed")]}
    kube.proxy.fail_next("PATCH", r"/status", 409, count=6)
    with pytest.raises(ConflictError):
        await p.patch(work)
    assert len(kube.proxy.calls(verb="patch", subresource="status")) == 3 + 6


async def test_finalizer_conflict_keeps_foreign_finalizers(kube: KubeTest,
                                                           client: KubeClient) -> None:
    obj = kube.api.create(new_repo())
    p = patcher(client, obj)
    kube.api.patch(REPO_PLURAL, kube.ns, "podinfo", {"metadata": {"finalizers": ["other/x"]}})
    work = copy.deepcopy(obj)
    work["metadata"]["finalizers"] = [meta.FINALIZER]
    await p.patch(work)
    assert stored(kube)["metadata"]["finalizers"] == ["other/x", meta.FINALIZER]


async def test_removing_last_finalizer_while_deleting(kube: KubeTest,
                                                      client: KubeClient) -> None:
    obj = new_repo()
    obj["metadata"]["finalizers"] = [meta.FINALIZER]
    kube.api.create(obj)
    kube.api.delete(REPO_PLURAL, kube.ns, "podinfo")
    deleting = stored(kube)
    assert deleting["metadata"]["deletionTimestamp"]
    p = patcher(client, deleting)
    work = copy.deepcopy(deleting)
    work["metadata"]["finalizers"] = []
    work["status"] = {"conditions": [cond("Ready")]}  # the final status patch then 404s
    assert await p.patch(work) is None
    assert kube.api.get(REPO_PLURAL, kube.ns, "podinfo") is None


async def test_not_found_surfaces_when_not_deleting(kube: KubeTest,
                                                    client: KubeClient) -> None:
    obj = kube.api.create(new_repo())
    kube.api.delete(REPO_PLURAL, kube.ns, "podinfo")
    work = copy.deepcopy(obj)
    work["status"] = {"conditions": [cond("Ready")]}
    with pytest.raises(NotFoundError):
        await patcher(client, obj).patch(work)
