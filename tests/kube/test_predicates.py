"""Update predicates (contract §2.1, spec §3.1): which updates reach the workqueue.

A requested reconcile triggers both kinds: Flux v1's ImagePolicy predicate, on in both
compatibility modes (Flux v0.31 ignored the annotation on policies)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from imagereflector.api import meta
from imagereflector.kube import predicates

REQ = meta.RECONCILE_REQUEST_ANNOTATION


def obj(
    *,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    deletion: str | None = None,
    finalizers: list[str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "podinfo", "namespace": "default", "generation": generation}
    if annotations is not None:
        md["annotations"] = annotations
    if deletion is not None:
        md["deletionTimestamp"] = deletion
    if finalizers is not None:
        md["finalizers"] = finalizers
    return {"metadata": md, "status": status or {}}


BASE = obj(finalizers=[meta.FINALIZER])
CASES = [
    ("status-only", BASE, obj(finalizers=[meta.FINALIZER], status={"x": 1}), False, False),
    ("generation", BASE, obj(generation=2, finalizers=[meta.FINALIZER]), True, True),
    (
        "requestedAt-appeared",
        BASE,
        obj(annotations={REQ: "now"}, finalizers=[meta.FINALIZER]),
        True,
        True,
    ),
    (
        "requestedAt-changed",
        obj(annotations={REQ: "a"}),
        obj(annotations={REQ: "b"}),
        True,
        True,
    ),
    ("requestedAt-same", obj(annotations={REQ: "a"}), obj(annotations={REQ: "a"}), False, False),
    ("requestedAt-removed", obj(annotations={REQ: "a"}), obj(annotations={}), False, False),
    (
        "other-annotation",
        BASE,
        obj(annotations={"x": "y"}, finalizers=[meta.FINALIZER]),
        False,
        False,
    ),
    (
        "deletion-started",
        BASE,
        obj(deletion="2024-01-01T00:00:00Z", finalizers=[meta.FINALIZER]),
        True,
        True,
    ),
    (
        "finalizers-changed-while-deleting",
        obj(deletion="2024-01-01T00:00:00Z", finalizers=[meta.FINALIZER, "other"]),
        obj(deletion="2024-01-01T00:00:00Z", finalizers=[meta.FINALIZER]),
        True,
        True,
    ),
    (
        "finalizer-added-not-deleting",
        obj(finalizers=[]),
        obj(finalizers=[meta.FINALIZER]),
        False,
        False,
    ),
    (
        "deleting-status-only",
        obj(deletion="2024-01-01T00:00:00Z", finalizers=[meta.FINALIZER]),
        obj(deletion="2024-01-01T00:00:00Z", finalizers=[meta.FINALIZER], status={"x": 1}),
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "repo_passes", "policy_passes"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_update_predicates(
    old: dict[str, Any], new: dict[str, Any], repo_passes: bool, policy_passes: bool
) -> None:
    assert predicates.image_repository_update(old, new) is repo_passes
    assert predicates.image_policy_update(old, new) is policy_passes


def test_predicates_do_not_mutate_and_tolerate_missing_metadata() -> None:
    old, new = copy.deepcopy(BASE), obj(generation=3)
    before = (copy.deepcopy(old), copy.deepcopy(new))
    predicates.image_repository_update(old, new)
    assert (old, new) == before
    assert predicates.image_repository_update({}, {}) is False
    assert predicates.generation_changed({}, {"metadata": {"generation": 1}}) is True
