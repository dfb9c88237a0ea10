"""filterTags: Flux ``filter_test.go``, the controller's filter cases, Go ``Regexp.Expand``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagereflector.policy import (
    InvalidFilterError,
    InvalidPolicyError,
    PolicyChoice,
    TagFilter,
    evaluate,
)
from imagereflector.policy.filter import compile_go_regexp, expand_template

# --- Flux TestRegexFilter ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "pattern", "extract", "expected"),
    [
        (["a"], "", "", ["a"]),
        (["ver1", "ver2", "ver3", "rel1"], "^ver", "", ["ver1", "ver2", "ver3"]),
        (["ver1", "ver2", "ver3", "rel1"], r"ver(\d+)", "$1", ["1", "2", "3"]),
        (["ver1", "ver2", "rel1"], r"ver(?P<tag>\d+)", "$tag", ["1", "2"]),
        # Without extract the whole tag is kept, not just the match.
        (["xver1y", "rel1"], r"ver\d", "", ["xver1y"]),
    ],
)
def test_regex_filter(tags: list[str], pattern: str, extract: str, expected: list[str]) -> None:
    kept = TagFilter.compile(pattern, extract).apply(tags)
    assert sorted(kept.values) == expected


def test_values_map_back_to_originals() -> None:
    kept = TagFilter.compile(r"ver(\d+)", "$1").apply(["ver1", "ver2"])
    assert kept.original("2") == "ver2"
    assert [(r.tag, r.reason) for r in kept.rejected] == []


def test_duplicates_collapse_last_wins() -> None:
    kept = TagFilter.compile(r"-(\d+)$", "$1").apply(["a-1", "b-2", "c-1"])
    assert kept.values == ["1", "2"]
    assert kept.original("1") == "c-1"
    assert [(r.tag, r.value, r.reason) for r in kept.rejected] == [
        ("a-1", "1", "superseded by 'c-1' with the same value '1'")
    ]


def test_unmatched_tags_are_reported() -> None:
    kept = TagFilter.compile("^v", "").apply(["v1", "1"])
    assert [(r.tag, r.reason) for r in kept.rejected] == [("1", "filtered out by pattern '^v'")]


# --- Go RE2 semantics ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "tag", "matches"),
    [
        (r"^\d+$", "123", True),
        (r"^\d+$", "١٢٣", False),  # \d is ASCII only
        (r"^\w+$", "é", False),
        (r"^a$", "a\n", False),  # $ is the end of text, not before a final newline
        (r"a", "xxa", True),  # searched, not anchored
        (r"(?i)^FOO", "foo-1", True),
        (r"^.$", "é", True),  # . is one code point
        (r"\bfoo\b", "a-foo-b", True),
    ],
)
def test_go_regexp_semantics(pattern: str, tag: str, matches: bool) -> None:
    kept = TagFilter.compile(pattern).apply([tag])
    assert (kept.values == [tag]) is matches


@pytest.mark.parametrize(
    ("pattern", "go_error"),
    [
        ("^test-(.*", "error parsing regexp: missing closing ): `^test-(.*`"),
        ("[=", "error parsing regexp: missing closing ]: `[=`"),
        ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
        ("*", "error parsing regexp: missing argument to repetition operator: `*`"),
        ("x{2,1}", "error parsing regexp: invalid repeat count: `{2,1}`"),
        ("a)", "error parsing regexp: unexpected ): `a)`"),
        ("[z-a]", "error parsing regexp: invalid character class range: `z-a`"),
        ("\\", "error parsing regexp: trailing backslash at end of expression: ``"),
        ("(?=a)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
        (r"\8", "error parsing regexp: invalid escape sequence: `\\8`"),
    ],
)
def test_invalid_pattern_message(pattern: str, go_error: str) -> None:
    with pytest.raises(InvalidFilterError) as exc:
        TagFilter.compile(pattern, "$1")
    assert str(exc.value) == f"invalid regular expression pattern '{pattern}': {go_error}"
    assert isinstance(exc.value, InvalidPolicyError)


def test_compile_go_regexp_value_error() -> None:
    with pytest.raises(ValueError, match=r"^error parsing regexp: "):
        compile_go_regexp("(")


# --- Go Regexp.Expand ---------------------------------------------------------------

GROUPS = ["ver12-rc", "12", "rc", None]
NAMES = {"num": 1, "word": 2, "x1": 3, "w_2": 2}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "12"),
        ("${1}", "12"),
        ("$0", "ver12-rc"),
        ("$num", "12"),
        ("${num}", "12"),
        ("$$", "$"),
        ("$$1", "$1"),
        ("${1}x", "12x"),
        ("$1x", ""),  # the name is "1x": not a number, no such group
        ("$num-$word", "12-rc"),
        ("$num.$word", "12.rc"),
        ("$w_2", "rc"),
        ("$x1", ""),  # group exists but did not participate
        ("$3", ""),
        ("$4", ""),  # beyond the last group
        ("$99", ""),
        ("$01", ""),  # leading zero: a name, not a number
        ("$nope", ""),
        ("${nope}", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("$-", "$-"),
        ("${", "${"),
        ("${1", "${1"),
        ("${}", "${}"),
        ("${1 }", "${1 }"),
        ("${n-m}", "${n-m}"),
        ("v$1.0", "v12.0"),
        ("$é", ""),  # letters are Unicode letters
        ("$1é", ""),
        ("$1\u0663", ""),  # ...and digits Unicode decimal digits
        ("$1²", "12²"),  # but '²' is not a decimal digit
        ("$100000000", ""),  # 1e8: still a number (no such group)
        ("$1000000000", ""),  # past 1e8: a name
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_expand_template(template: str, expected: str) -> None:
    assert expand_template(template, GROUPS, NAMES) == expected


def test_expand_numeric_name_past_1e8_is_a_name() -> None:
    assert expand_template("$1000000000", ["x"], {"1000000000": 0}) == "x"
    assert expand_template("$01", ["x", "y"], {"01": 0}) == "x"


# --- The controller's filterTags cases ----------------------------------------------


@pytest.mark.parametrize(
    ("choice", "pattern", "extract", "tags", "expected"),
    [
        (
            PolicyChoice(numerical_order="asc"),
            r"1.0.0-rc\.(?P<num>[0-9]+)",
            "$num",
            ["1.0.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.3", "1.0.1-rc.2"],
            "1.0.0-rc.3",
        ),
        (
            PolicyChoice(alphabetical_order="asc"),
            "foo-(?P<word>[a-z]+)",
            "$word",
            ["xenial", "yakkety", "zesty", "artful", "bionic", "foo-aaa", "foo-zzz", "foo-abc"],
            "foo-zzz",
        ),
        (
            PolicyChoice(semver_range=">=0.x"),
            "^test-(.*)$",
            "$1",
            ["test-0.1.0", "test-0.1.1", "dev-1.0.0", "test-x"],
            "test-0.1.1",
        ),
    ],
    ids=["numerical", "alphabetical", "semver"],
)
def test_controller_filter_cases(
    choice: PolicyChoice, pattern: str, extract: str, tags: list[str], expected: str
) -> None:
    assert evaluate(tags, choice=choice, pattern=pattern, extract=extract).latest == expected


# --- the fast RE2 path and the public-API path agree -----------------------------------

PATTERNS = [r"(a)|(b)", r"^(\w+)-(?P<n>\d+)?", r"é(.)", r"(x*)", r"(?P<w>[^-]+)$", ""]


@settings(max_examples=200)
@given(pattern=st.sampled_from(PATTERNS), text=st.text(alphabet="ab-é1x\u0663 ", max_size=8))
def test_fast_and_public_search_agree(pattern: str, text: str) -> None:
    fast = compile_go_regexp(pattern)
    slow = compile_go_regexp(pattern, fast=False)
    assert fast.search(text) == slow.search(text)


def test_search_groups() -> None:
    regex = compile_go_regexp(r"é(?P<a>x)?(?P<b>.)")
    assert regex.search("zéy") == ("éy", None, "y")
    assert regex.names == {"a": 1, "b": 2}
    assert regex.search("nope") is None
