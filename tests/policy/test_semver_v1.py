"""Semver as Flux v1.2 has it (``--flux-compatibility=v1.2``): Masterminds v3.5 ranges over
tags read by fluxcd/pkg ``version.ParseVersion`` v0.16 (spec §3.7).

Every expected value below was produced by Go itself: a throw-away program calling
Masterminds/semver v3.5.0's ``NewConstraint``/``Check`` and ParseVersion's logic over these
exact inputs (and 1,500 random ranges more, which agreed too). Next to each case, where
it differs, what Flux v0.31 chooses (Masterminds v3.2.1 with fluxcd/pkg version v0.2.2,
also run in Go), so the switch is visibly the only cause.
"""

from __future__ import annotations

import pytest

from imagereflector.api.compat import Compatibility
from imagereflector.policy import InvalidPolicyError, PolicyChoice, SelectionError, build_policer
from imagereflector.policy.semver import SemVerPolicy, go_quote
from imagereflector.policy.version import tag_sort_key_v1

TAGS = ["1.0.0", "1.0.1", "1.1.0-alpha", "1.2.3", "1.2.4-alpha", "1.5.0-rc.1", "2.0.0-rc.1",
        "2.0.0", "v2.1.0", "2025.02.03", "v01.0.1", "1.2-rc.1.0", "1.0.0.1", "1.0", "1.0.0-01",
        "0.2.3", "0.3.0"]

# tag -> the version Go parsed it as, or None when ParseVersion refused it.
PARSED = {
    "1.0.0": (1, 0, 0, ()), "1.1.0-alpha": (1, 1, 0, ((1, "alpha"),)),
    "v2.1.0": (2, 1, 0, ()), "2025.02.03": (2025, 2, 3, ()), "v01.0.1": (1, 0, 1, ()),
    "1.2-rc.1.0": (1, 2, 0, ((1, "rc"), (0, 1), (0, 0))),
    "1.0.0.1": None, "1.0": None, "1.0.0-01": None,
}


@pytest.mark.parametrize("tag", sorted(PARSED))
def test_tags_are_read_as_flux_v1_2_reads_them(tag: str) -> None:
    key = tag_sort_key_v1(tag)
    expected = PARSED[tag]
    if expected is None:
        assert key is None
    else:
        major, minor, patch, pre = expected
        assert key == (major, minor, patch, 0 if pre else 1, pre)


def test_a_tag_longer_than_256_characters_is_no_version() -> None:
    assert tag_sort_key_v1("1.2.3-" + "a" * 251) is None
    assert tag_sort_key_v1("1.2.3-" + "a" * 250) is not None


# (range, latest of TAGS in v1.2 mode, latest in v0.31 mode when it differs)
SELECTIONS = [
    (">=1.0.0-0 <2.0.0", "2.0.0-rc.1", "1.2.3"),  # the prerelease holds for the group
    (">=1.0.0 <2.0.0", "1.2.3", None),
    ("!=1.2.3", "2025.02.03", "v2.1.0"),  # 2025.02.03 is a version now
    ("!=1.2.3-rc.1", "2025.02.03", "v2.1.0"),
    ("^1.x-0", "1.5.0-rc.1", None),
    ("1.0.x", "1.0.1", None),  # v01.0.1 is 1.0.1 too; the first one seen stays
    (">=2025.0.0", "2025.02.03", "none"),
    (">=1.0.0-0", "2025.02.03", "v2.1.0"),
    ("<2.0.0-0", "1.5.0-rc.1", None),
    (">=1.0.0-rc <1.0.0", "none", None),
    ("1.2.3-rc.1 || >=2.0.0", "2025.02.03", "v2.1.0"),
    (">=1.2.3-beta || <1.0.0", "2025.02.03", "v2.1.0"),
    ("^0.2.3", "0.2.3", None),
    ("~1.2.3-beta", "1.2.4-alpha", None),
    ("*", "2025.02.03", "v2.1.0"),
    (">=2.0.0-rc.1 <2.0.0", "2.0.0-rc.1", "none"),
]


def _latest(range_: str, *, v1: bool) -> str:
    try:
        return SemVerPolicy(range_, masterminds_3_5=v1).latest(TAGS)
    except SelectionError:
        return "none"


@pytest.mark.parametrize(("range_", "v1_2", "v0_31"), SELECTIONS,
                         ids=[case[0] for case in SELECTIONS])
def test_selection_matches_masterminds_3_5(range_: str, v1_2: str, v0_31: str | None) -> None:
    assert _latest(range_, v1=True) == v1_2
    assert _latest(range_, v1=False) == (v0_31 or v1_2)


ERRORS = [
    ("*-*", 'improper constraint: "*-*"', "improper constraint: *-*"),
    ("", 'improper constraint: ""', "improper constraint: "),
    ("a", 'improper constraint: "a"', "improper constraint: a"),
    ("é", 'improper constraint: "é"', "improper constraint: é"),
    ("1x", "constraint parser error", "constraint Parser Error"),
    ("1|2", "constraint parser error", "constraint Parser Error"),
    (">=1.0.0-" + "a" * 260, "constraint parser error", None),
    ("1 " * 300, "constraint string is too long (max 512 bytes)", None),
    ("||".join(["1"] * 33), "too many constraint groups (max 32)", None),
]


@pytest.mark.parametrize(("range_", "v1_2", "v0_31"), ERRORS,
                         ids=["star-dash", "empty", "letter", "non-ascii", "1x", "pipe",
                              "long-version", "long-range", "33-groups"])
def test_range_errors_are_masterminds_3_5s(range_: str, v1_2: str, v0_31: str | None) -> None:
    with pytest.raises(InvalidPolicyError) as caught:
        SemVerPolicy(range_, masterminds_3_5=True)
    assert str(caught.value) == v1_2
    if v0_31 is None:  # v3.2.1 had no such limit
        SemVerPolicy(range_, masterminds_3_5=False)
    else:
        with pytest.raises(InvalidPolicyError) as caught:
            SemVerPolicy(range_, masterminds_3_5=False)
        assert str(caught.value) == v0_31


def test_thirty_two_groups_are_still_fine() -> None:
    SemVerPolicy("||".join(["1"] * 32), masterminds_3_5=True)


def test_the_switch_chooses_the_library() -> None:
    choice = PolicyChoice(semver_range=">=1.0.0-0 <2.0.0")
    tags = ["1.0.0", "1.5.0-rc.1"]
    assert build_policer(choice).latest(tags) == "1.0.0"
    assert build_policer(choice, Compatibility.V1_2).latest(tags) == "1.5.0-rc.1"


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'), ('a"b\\c', '"a\\"b\\\\c"'), ("\n\t\x01\x7f", '"\\n\\t\\x01\\x7f"'),
    ("é\u00a0\u2028", '"é\\u00a0\\u2028"'), ("\U0001f600", '"\U0001f600"'),
    ("\U000e0001", '"\\U000e0001"'),
])
def test_go_quote_is_strconv_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted
