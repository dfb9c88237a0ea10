"""Factory: Flux ``TestFactory_PolicerFromSpec`` and the union/ordering rules."""

from __future__ import annotations

import pytest

from imagereflector.policy import (
    AlphabeticalPolicy,
    InvalidFilterError,
    InvalidPolicyError,
    NumericalPolicy,
    PolicyChoice,
    SelectionError,
    SemVerPolicy,
    TagFilter,
    build_policer,
    evaluate,
    select_latest,
)


def test_empty_choice_is_invalid() -> None:
    with pytest.raises(InvalidPolicyError) as exc:
        build_policer(PolicyChoice())
    assert str(exc.value) == "given ImagePolicyChoice object is invalid"


@pytest.mark.parametrize(
    ("choice", "kind"),
    [
        (PolicyChoice(semver_range="1.0.x"), SemVerPolicy),
        (PolicyChoice(alphabetical_order=""), AlphabeticalPolicy),
        (PolicyChoice(numerical_order=""), NumericalPolicy),
        # First non-nil wins: semver, then alphabetical, then numerical.
        (
            PolicyChoice(semver_range="*", alphabetical_order="asc", numerical_order="asc"),
            SemVerPolicy,
        ),
        (PolicyChoice(alphabetical_order="desc", numerical_order="bogus"), AlphabeticalPolicy),
    ],
)
def test_union_order(choice: PolicyChoice, kind: type) -> None:
    assert isinstance(build_policer(choice), kind)


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        (PolicyChoice(semver_range="*-*"), "improper constraint: *-*"),
        (PolicyChoice(semver_range="*-*", alphabetical_order="asc"), "improper constraint: *-*"),
        (
            PolicyChoice(alphabetical_order="up"),
            "invalid order argument provided: 'UP', must be one of: ASC, DESC",
        ),
        (
            PolicyChoice(numerical_order="descending"),
            "invalid order argument provided: 'DESCENDING', must be one of: ASC, DESC",
        ),
    ],
)
def test_invalid_policies(choice: PolicyChoice, message: str) -> None:
    with pytest.raises(InvalidPolicyError) as exc:
        build_policer(choice)
    assert str(exc.value) == message


def test_order_is_upper_cased() -> None:
    policer = build_policer(PolicyChoice(numerical_order="desc"))
    assert policer.latest(["1", "2"]) == "1"


def test_invalid_policy_reported_before_invalid_filter() -> None:
    with pytest.raises(InvalidPolicyError) as exc:
        evaluate(["a"], choice=PolicyChoice(semver_range="a"), pattern="(")
    assert not isinstance(exc.value, InvalidFilterError)
    with pytest.raises(InvalidFilterError):
        evaluate(["a"], choice=PolicyChoice(semver_range="*"), pattern="(")


def test_select_latest_maps_back_to_original() -> None:
    policer = build_policer(PolicyChoice(numerical_order="asc"))
    tag_filter = TagFilter.compile(r"^build-(\d+)$", "$1")
    assert select_latest(
        ["build-9", "build-10", "main"], policer=policer, tag_filter=tag_filter
    ) == ("build-10")
    assert select_latest(["9", "10"], policer=policer) == "10"


def test_select_latest_filter_leaves_nothing() -> None:
    policer = build_policer(PolicyChoice(alphabetical_order="asc"))
    with pytest.raises(SelectionError, match=r"^version list argument cannot be empty$"):
        select_latest(["a"], policer=policer, tag_filter=TagFilter.compile("^v"))


def test_applypolicy_semver_table() -> None:
    """Flux ``TestImagePolicyReconciler_applyPolicy`` semver rows."""
    choice = PolicyChoice(semver_range="1.0.x")
    assert evaluate(["1.0.0", "2.0.0", "1.0.1", "1.2.0"], choice=choice).latest == "1.0.1"
    v_tags = ["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"]
    assert evaluate(v_tags, choice=PolicyChoice(semver_range="v1.0.x")).latest == "v1.0.1"
    assert evaluate(v_tags, choice=choice).latest == "v1.0.1"
    with pytest.raises(InvalidFilterError):
        evaluate(["1.0.0"], choice=choice, pattern="[=")
