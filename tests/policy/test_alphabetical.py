"""Alphabetical policy against Flux v0.31 ``alphabetical_test.go`` plus order handling."""

from __future__ import annotations

import pytest

from imagereflector.policy import AlphabeticalPolicy, InvalidPolicyError, SelectionError

UBUNTU_CALVER = ["16.04", "16.04.1", "16.10", "20.04", "20.10"]
UBUNTU_NAMES = ["xenial", "yakkety", "zesty", "artful", "bionic"]
TIMESTAMPS = ["1606234201", "1606364286", "1606334092", "1606334284", "1606334201"]


@pytest.mark.parametrize("order", ["", "ASC", "DESC", "asc", "desc", "Desc"])
def test_valid_orders(order: str) -> None:
    assert AlphabeticalPolicy(order).order in ("ASC", "DESC")


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("invalid", "invalid order argument provided: 'INVALID', must be one of: ASC, DESC"),
        (" asc", "invalid order argument provided: ' ASC', must be one of: ASC, DESC"),
        ("straße", "invalid order argument provided: 'STRAßE', must be one of: ASC, DESC"),
    ],
)
def test_invalid_order(order: str, message: str) -> None:
    with pytest.raises(InvalidPolicyError) as exc:
        AlphabeticalPolicy(order)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("order", "tags", "expected"),
    [
        ("", UBUNTU_CALVER, "20.10"),
        ("DESC", UBUNTU_CALVER, "16.04"),
        ("", UBUNTU_NAMES, "zesty"),
        ("DESC", UBUNTU_NAMES, "artful"),
        ("", TIMESTAMPS, "1606364286"),
        ("DESC", TIMESTAMPS, "1606234201"),
        ("", [f"rel-{t}" for t in TIMESTAMPS], "rel-1606364286"),
        (
            "",
            ["2023-05-08T00-20-00Z", "2023-05-07T23-59-59Z", "2022-12-31T00-00-00Z"],
            "2023-05-08T00-20-00Z",
        ),
        # Byte order: upper case sorts before lower case, digits before letters.
        ("", ["B", "a", "9"], "a"),
        ("DESC", ["B", "a", "9"], "9"),
        # Code-point order equals Go's UTF-8 byte order.
        ("", ["\uffff", "\U00010000", "z"], "\U00010000"),
    ],
    ids=repr,
)
def test_latest(order: str, tags: list[str], expected: str) -> None:
    assert AlphabeticalPolicy(order).latest(tags) == expected


def test_latest_does_not_mutate_input() -> None:
    tags = ["b", "a", "c"]
    AlphabeticalPolicy("DESC").latest(tags)
    assert tags == ["b", "a", "c"]


def test_empty_list() -> None:
    with pytest.raises(SelectionError, match=r"^version list argument cannot be empty$"):
        AlphabeticalPolicy().latest([])


def test_explain_ranks_everything() -> None:
    ev = AlphabeticalPolicy("asc").explain(UBUNTU_NAMES)
    assert ev.latest == "zesty"
    assert [c.tag for c in ev.candidates] == ["zesty", "yakkety", "xenial", "bionic", "artful"]
    assert ev.rejected == ()
    assert ev.policy == "alphabetical order ASC"
    desc = AlphabeticalPolicy("desc").explain(UBUNTU_NAMES)
    assert [c.tag for c in desc.candidates][:2] == ["artful", "bionic"]


def test_explain_empty() -> None:
    ev = AlphabeticalPolicy().explain([])
    assert ev.latest is None
    assert ev.error == "version list argument cannot be empty"
