"""Serial patcher: merge-patch diffs, condition overlay, conflicts and finalizers."""

from __future__ import annotations

from typing import Any

import pytest

from imagereflector.kube.patch import merge_patch_diff, overlay_conditions

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
