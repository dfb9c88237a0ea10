"""``evaluate``/``apply_policy``: explanations through filterTags, and their invariants."""

from __future__ import annotations

import pytest

from imagereflector.policy import PolicyChoice, SelectionError, evaluate


def test_semver_through_filter() -> None:
    tags = ["test-0.1.0", "test-0.1.1", "dev-1.0.0", "test-x", "test-0.2.0-rc.1"]
    ev = evaluate(
        tags, choice=PolicyChoice(semver_range=">=0.x"), pattern="^test-(.*)$", extract="$1"
    )
    assert ev.latest == "test-0.1.1"
    assert [(c.tag, c.value) for c in ev.candidates] == [
        ("test-0.1.1", "0.1.1"),
        ("test-0.1.0", "0.1.0"),
    ]
    assert [(r.tag, r.value, r.reason) for r in ev.rejected] == [
        ("dev-1.0.0", "dev-1.0.0", "filtered out by pattern '^test-(.*)$'"),
        ("test-x", "x", "not a strict semver version"),
        ("test-0.2.0-rc.1", "0.2.0-rc.1", "prerelease excluded by range '>=0.x'"),
    ]
    assert (
        ev.policy
        == "semver range '>=0.x' with tags filtered by pattern '^test-(.*)$' extracting '$1'"
    )


def test_numerical_through_filter_reports_failure() -> None:
    ev = evaluate(
        ["rc-1", "rc-x", "rc-2"],
        choice=PolicyChoice(numerical_order=""),
        pattern="^rc-(.+)$",
        extract="$1",
    )
    assert ev.latest is None
    assert ev.error == "failed to parse invalid numeric value 'x'"
    assert [c.tag for c in ev.candidates] == ["rc-2", "rc-1"]
    assert [(r.tag, r.value, r.reason) for r in ev.rejected] == [("rc-x", "x", "not numeric")]
    with pytest.raises(SelectionError, match=r"^failed to parse invalid numeric value 'x'$"):
        ev.require_latest()


def test_filter_without_extract_keeps_tags() -> None:
    ev = evaluate(["v1", "v2", "x"], choice=PolicyChoice(alphabetical_order="desc"), pattern="^v")
    assert ev.latest == "v1"
    assert [c.value for c in ev.candidates] == ["v1", "v2"]


def test_no_filter_is_the_plain_policy() -> None:
    ev = evaluate(["a", "b"], choice=PolicyChoice(alphabetical_order=""))
    assert ev.policy == "alphabetical order ASC"
    assert ev.latest == "b"


def test_filter_leaving_nothing() -> None:
    ev = evaluate(["a", "b"], choice=PolicyChoice(semver_range="*"), pattern="^v")
    assert ev.latest is None
    assert ev.error == "version list argument cannot be empty"
    assert len(ev.rejected) == 2


def test_superseded_tags_are_explained() -> None:
    ev = evaluate(
        ["app-1.0.0", "web-1.0.0", "app-1.1.0"],
        choice=PolicyChoice(semver_range="*"),
        pattern=r"-(\d.*)$",
        extract="$1",
    )
    assert ev.latest == "app-1.1.0"
    assert [c.tag for c in ev.candidates] == ["app-1.1.0", "web-1.0.0"]
    assert [(r.tag, r.reason) for r in ev.rejected] == [
        ("app-1.0.0", "superseded by 'web-1.0.0' with the same value '1.0.0'")
    ]
