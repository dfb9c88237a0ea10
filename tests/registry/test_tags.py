"""Tag exclusion (Go RE2 semantics), latest tags, the list revision, exclusion-list equality."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagereflector.registry.tags import (
    DEFAULT_EXCLUSION_LIST,
    FILTER_CACHE_SIZE,
    TAG_PATTERN,
    VERDICT_BUDGET,
    ExclusionError,
    cached_verdicts,
    compile_exclusions,
    exclusion_lists_equal,
    flux_storage_revision,
    latest_tags,
    summarise,
    summarise_descending,
    tags_revision,
    valid_tags,
)

FILTER_CASES = [
    # Contract §6 test 7 (TestFilterOutTags).
    ("no-patterns", [], ["a", "b", "c", "d"], ["a", "b", "c", "d"]),
    ("class", ["[abc]"], ["a", "b", "c", "d"], ["d"]),
    ("two-patterns", ["[a]", "[d]"], ["a", "b", "c", "d"], ["b", "c"]),
    ("alpha-and-sig", ["^.*\\-alpha$", "^.*\\.sig$"],
     ["0.1.0", "0.2.0", "0.2.-alpha", "0.3.0", "0.4.0", "0.4.0.sig"],
     ["0.1.0", "0.2.0", "0.3.0", "0.4.0"]),
    ("alternation", ["aaa|ccc"], ["aaa", "bbb", "ccc", "ddd"], ["bbb", "ddd"]),
    # Unanchored search, order and repeats kept.
    ("substring", ["c"], ["a", "b", "c", "d", "abc"], ["a", "b", "d"]),
    ("order-and-repeats", ["x"], ["b", "x1", "a", "b"], ["b", "a", "b"]),
    ("default-list", list(DEFAULT_EXCLUSION_LIST), ["v1", "sha256-abc.sig", "v1.sig2"],
     ["v1", "v1.sig2"]),
    # Go semantics that Python's re would get wrong.
    ("dollar-is-end-of-text", ["a$"], ["a", "a\n", "ba"], ["a\n"]),
    ("multiline-dollar-opt-in", ["(?m)a$"], ["a\nb", "ab"], ["ab"]),
    ("digit-is-ascii", ["^\\d+$"], ["123", "\u0661\u0662", "1a"], ["\u0661\u0662", "1a"]),
    ("word-is-ascii", ["^\\w+$"], ["abc", "\u00e9t\u00e9"], ["\u00e9t\u00e9"]),
    ("space-excludes-vtab", ["\\s"], ["a b", "a\x0bb"], ["a\x0bb"]),
    ("dot-is-a-rune", ["^.$"], ["\u00e9", "ab"], ["ab"]),
    ("case-insensitive-flag", ["(?i)RC"], ["1.0-rc1", "1.0"], ["1.0"]),
    ("lone-surrogate-tag", ["x"], ["\ud800", "x"], ["\ud800"]),
]


@pytest.mark.parametrize(("patterns", "tags", "kept"), [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
def test_filter(patterns: list[str], tags: list[str], kept: list[str]) -> None:
    assert compile_exclusions(patterns).apply(tags) == kept


INVALID_PATTERNS = [
    ("unclosed-class", "[=",
         "failed to compile regex [="
         ": error parsing regexp: missing closing ]: `[=`"),
    ("python-end-anchor", "\\Z",
         "failed to compile regex \\Z"
         ": error parsing regexp: invalid escape sequence: `\\Z`"),
    ("re2-byte-escape", "a\\C",
         "failed to compile regex a\\C"
         ": error parsing regexp: invalid escape sequence: `\\C`"),
    ("trailing-backslash", "x\\",
         "failed to compile regex x\\"
         ": error parsing regexp: trailing backslash at end of expression: ``"),
    ("backreference", "(a)\\1",
         "failed to compile regex (a)\\1"
         ": error parsing regexp: invalid escape sequence: `\\1`"),
    ("lookahead", "a(?=b)",
         "failed to compile regex a(?=b)"
         ": error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
    ("repeat-too-big", "a{1001}",
     "failed to compile regex a{1001}: error parsing regexp: invalid repeat count: `{1001}`"),
]


@pytest.mark.parametrize(("pattern", "message"), [c[1:] for c in INVALID_PATTERNS],
                         ids=[c[0] for c in INVALID_PATTERNS])
def test_invalid_pattern(pattern: str, message: str) -> None:
    with pytest.raises(ExclusionError) as caught:
        compile_exclusions(["ok", pattern])
    assert str(caught.value) == message


GO_VALID_ESCAPES = [
    ("escaped-backslash-then-c", "\\\\C", ["\\C", "C"], ["C"]),
    ("quoted-c", "\\Qa\\C\\E", ["a\\C", "aC"], ["aC"]),
    ("quote-ends-at-first-backslash-e", "\\Qa\\\\E", ["a\\", "a"], ["a"]),
]


@pytest.mark.parametrize(("pattern", "tags", "kept"), [c[1:] for c in GO_VALID_ESCAPES],
                         ids=[c[0] for c in GO_VALID_ESCAPES])
def test_backslash_c_only_rejected_where_go_rejects_it(
    pattern: str, tags: list[str], kept: list[str]
) -> None:
    assert compile_exclusions([pattern]).apply(tags) == kept


def test_quote_does_not_hide_a_later_backslash_c() -> None:
    with pytest.raises(ExclusionError, match="invalid escape sequence"):
        compile_exclusions(["\\Qa\\E\\C"])


def test_pathological_pattern_finishes() -> None:
    # RE2 matches in linear time; a backtracking engine would not return from this.
    tags = ["a" * 10000 + "b", "a" * 20]
    assert compile_exclusions(["(a+)+$"]).apply(tags) == [tags[0]]
    assert compile_exclusions(["^(a|aa)+$"]).apply(tags) == [tags[0]]


LATEST_CASES = [
    # Contract §2.8.5 / TestGetLatestTags.
    ("semver-like", ["1.0.0", "0.0.8", "1.2.5", "3.0.1", "1.0.1"],
     ["3.0.1", "1.2.5", "1.0.1", "1.0.0", "0.0.8"]),
    ("numbers-as-strings", ["-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91",
                            "100", "101"],
     ["73", "72", "29", "16", "15", "15", "101", "100", "-91", "-88"]),
    ("words-truncated", ["aardvark", "ant", "bear", "cat", "dog", "eagle", "fox", "gnu",
                         "hare", "ibex", "jackal", "koala"],
     ["koala", "jackal", "ibex", "hare", "gnu", "fox", "eagle", "dog", "cat", "bear"]),
    ("empty", [], []),
    ("upper-before-lower-bytewise", ["a", "B", "b", "A"], ["b", "a", "B", "A"]),
    ("utf8-bytes-not-code-units", ["\uffff", "\U0001f600"], ["\U0001f600", "\uffff"]),
]


@pytest.mark.parametrize(("tags", "latest"), [c[1:] for c in LATEST_CASES],
                         ids=[c[0] for c in LATEST_CASES])
def test_latest_tags(tags: list[str], latest: list[str]) -> None:
    assert latest_tags(tags) == latest


@pytest.mark.parametrize(("n", "expected"),
                         [(0, []), (-1, []), (2, ["c", "b"]), (5, ["c", "b", "a"])],
                         ids=["zero", "negative", "fewer", "more-than-available"])
def test_latest_tags_count(n: int, expected: list[str]) -> None:
    assert latest_tags(["a", "c", "b"], n) == expected


def test_revision_definition() -> None:
    expected = "sha256:" + hashlib.sha256(b"1.0\n2.0\nlatest").hexdigest()
    assert tags_revision(["latest", "2.0", "1.0", "2.0"]) == expected
    assert tags_revision([]) == "sha256:" + hashlib.sha256(b"").hexdigest()


_tags = st.lists(st.text(min_size=1, max_size=20), max_size=30)


@given(_tags, st.randoms(use_true_random=False))
def test_revision_ignores_order_and_repeats(tags: list[str], rnd: random.Random) -> None:
    shuffled = tags + tags[: len(tags) // 2]
    rnd.shuffle(shuffled)
    assert tags_revision(shuffled) == tags_revision(tags)


@given(_tags, st.text(min_size=1, max_size=20))
def test_revision_changes_when_the_set_changes(tags: list[str], extra: str) -> None:
    if extra not in tags:
        assert tags_revision([*tags, extra]) != tags_revision(tags)


EQUAL_CASES = [
    # Contract §6 test 8 (TestIsEqualSliceContent) and §2.7.4 semantics.
    ("both-empty", [], [], True),
    ("equal", ["a", "b"], ["a", "b"], True),
    ("same-length-different", ["a", "b"], ["a", "c"], False),
    ("different-length", ["a"], ["a", "b"], False),
    ("order-insensitive", ["a", "b"], ["b", "a"], True),
    ("repeats-not-counted", ["a", "a"], ["a", "b"], True),
    ("repeats-not-counted-other-way", ["a", "b"], ["a", "a"], False),
    ("bar-vs-baz", ["bar"], ["baz"], False),
]


@pytest.mark.parametrize(("effective", "observed", "equal"), [c[1:] for c in EQUAL_CASES],
                         ids=[c[0] for c in EQUAL_CASES])
def test_exclusion_lists_equal(effective: list[str], observed: list[str], equal: bool) -> None:
    assert exclusion_lists_equal(effective, observed) is equal


@given(st.lists(st.text(max_size=5), max_size=6), st.lists(st.text(max_size=5), max_size=6))
def test_filter_never_raises_and_keeps_a_subsequence(patterns: list[str], tags: list[str]) -> None:
    failure = ""
    try:
        tag_filter = compile_exclusions(patterns)
    except ExclusionError as err:
        failure = str(err)
    if failure:
        assert failure.startswith("failed to compile regex ")
        return
    kept = tag_filter.apply(tags)
    remaining = iter(tags)
    assert all(any(tag == other for other in remaining) for tag in kept)


_PATTERN_POOL = ["^.*\\.sig$", "-rc", "(?i)ALPHA", "^v[0-9]+$", "a$", "^$", "(x+x+)+y",
                 "\\d{3}", "(?P<n>[0-9]+)-x", "(?P<n>beta)", "\\bfoo\\b"]


@given(st.lists(st.sampled_from(_PATTERN_POOL), min_size=1, max_size=5),
       st.lists(st.text(max_size=12), max_size=30))
def test_joined_and_fast_matching_equal_one_search_per_pattern(patterns: list[str],
                                                               tags: list[str]) -> None:
    import re2

    options = re2.Options()
    options.log_errors = False
    plain = [re2.compile(p.encode(), options) for p in patterns]

    def excluded(tag: str) -> bool:
        data = tag.encode("utf-8", "surrogatepass")
        return any(r.search(data) is not None for r in plain)

    assert compile_exclusions(patterns).apply(tags) == [t for t in tags if not excluded(t)]


@given(st.lists(st.text(max_size=8), max_size=40))
def test_string_order_is_utf8_byte_order(tags: list[str]) -> None:
    by_bytes = sorted(tags, key=lambda t: t.encode("utf-8", "surrogatepass"), reverse=True)
    assert latest_tags(tags, n=len(tags)) == by_bytes


@given(st.lists(st.text(max_size=6), max_size=40), st.integers(min_value=0, max_value=12))
def test_summarise_equals_latest_tags_and_revision(tags: list[str], n: int) -> None:
    assert summarise(tags, n) == (latest_tags(tags, n), tags_revision(tags))


def test_filters_are_shared_per_pattern_list_and_remember_verdicts() -> None:
    first = compile_exclusions(["^.*\\.sig$", "-rc"])
    assert compile_exclusions(["^.*\\.sig$", "-rc"]) is first
    assert compile_exclusions(["-rc", "^.*\\.sig$"]) is not first
    assert first.apply(["1.0", "1.0.sig", "2.0-rc"]) == ["1.0"]
    assert first.apply(["1.0", "1.0.sig", "2.0-rc"]) == ["1.0"]


@pytest.mark.parametrize(
    ("tags", "kept", "skipped", "first"),
    [
        ([], [], 0, ""),
        (["1.0", "v2", "_x", "a" * 128], ["1.0", "v2", "_x", "a" * 128], 0, ""),
        (["ok", "a\nb", "b"], ["ok", "b"], 1, "a\nb"),
        (["a" * 129], [], 1, "a" * 129),
        (["", "-x", ".x", "x y", "\u00fc", "\ud800", "x\r", "x/y", "x:y", "x@y"], [], 10, ""),
        (["a", "b\n", "c"], ["a", "c"], 1, "b\n"),
        (["a\n", "b"], ["b"], 1, "a\n"),
    ],
    ids=["empty", "valid", "newline", "too-long", "grammar", "trailing-newline",
         "newline-making-lines-valid"],
)
def test_valid_tags(tags: list[str], kept: list[str], skipped: int, first: str) -> None:
    found, count, example = valid_tags(tags)
    assert (found, count) == (kept, skipped)
    assert example == (first or (tags[0] if skipped else ""))


@given(st.lists(st.text(max_size=140), max_size=30))
def test_valid_tags_agrees_with_the_grammar_one_by_one(tags: list[str]) -> None:
    import re
    grammar = re.compile("[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
    kept, skipped, _ = valid_tags(tags)
    assert kept == [tag for tag in tags if grammar.fullmatch(tag)]
    assert skipped == len(tags) - len(kept)


def test_verdicts_of_all_filters_together_stay_within_the_budget() -> None:
    # Many pattern lists, each fed more distinct tags than any one cache once held: the
    # total never passes the budget, and every answer stays right.
    tags = [f"t{i:06d}" for i in range(VERDICT_BUDGET // 3)]
    for index in range(FILTER_CACHE_SIZE + 5):
        tag_filter = compile_exclusions([f"^t0{index % 10}", f"budget-{index}"])
        kept = tag_filter.apply(tags)
        assert len(kept) == len(tags) - sum(1 for t in tags if t.startswith(f"t0{index % 10}"))
        assert cached_verdicts() <= VERDICT_BUDGET
    huge = [f"h{i:07d}" for i in range(VERDICT_BUDGET + 10)]
    assert compile_exclusions(["^h0"]).apply(huge) == []
    assert cached_verdicts() <= VERDICT_BUDGET


# Flux v1.2's FluxStorage revision (--flux-compatibility=v1.2): the vectors of spec §2.3.4,
# computed with Go over the list as Flux stores it (descending, each tag then "\n").
@pytest.mark.parametrize(("tags", "revision"), [
    ([], "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (["0.9.0", "1.0.1", "1.0.0"],
     "sha256:b93d81dcf630531b427e553e2320f05ce06516994ac916dae7344e6690764bee"),
], ids=["empty", "three"])
def test_flux_storage_revision(tags: list[str], revision: str) -> None:
    stored, latest, got = summarise_descending(tags)
    assert stored == sorted(tags, reverse=True)
    assert latest == stored[:10]
    assert got == revision == flux_storage_revision(stored)
    expected = hashlib.sha256("".join(f"{tag}\n" for tag in stored).encode()).hexdigest()
    assert got == f"sha256:{expected}"


@given(st.lists(st.from_regex(TAG_PATTERN, fullmatch=True), max_size=30))
def test_descending_summary_is_order_free(tags: list[str]) -> None:
    # The stored order is the sort, so the registry's order changes nothing.
    assert summarise_descending(tags) == summarise_descending(list(reversed(tags)))
    assert summarise_descending(tags)[1] == latest_tags(tags)
