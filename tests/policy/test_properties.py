"""Property tests: policy invariants over generated tags, ranges and numbers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagereflector.policy import (
    AlphabeticalPolicy,
    NumericalPolicy,
    SelectionError,
    SemVerPolicy,
)
from imagereflector.policy.filter import expand_template
from imagereflector.policy.gofloat import parse_float
from imagereflector.policy.policer import Evaluation, Policer
from imagereflector.policy.semver import parse_constraints, parse_tag

small = st.integers(min_value=0, max_value=4)
ident = st.one_of(
    st.integers(min_value=0, max_value=12).map(str),
    st.sampled_from(["alpha", "beta", "rc", "a-1", "X"]),
)
prerelease = st.lists(ident, min_size=1, max_size=3).map(".".join)


@st.composite
def semver_tags(draw: st.DrawFn) -> str:
    core = f"{draw(small)}.{draw(small)}.{draw(small)}"
    if draw(st.booleans()):
        core += "-" + draw(prerelease)
    if draw(st.integers(0, 4)) == 0:
        core += "+build." + str(draw(small))
    return ("v" if draw(st.booleans()) else "") + core


tags_strategy = st.lists(
    st.one_of(semver_tags(), st.text(max_size=8), st.sampled_from(["1.2", "01.0.0", "latest"])),
    max_size=25,
)

part = st.one_of(small.map(str), st.sampled_from(["x", "X", "*"]))


@st.composite
def ranges(draw: st.DrawFn) -> str:
    def one() -> str:
        op = draw(
            st.sampled_from(["", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^"])
        )
        parts = draw(st.lists(part, min_size=1, max_size=3))
        pre = "-" + draw(prerelease) if draw(st.integers(0, 3)) == 0 else ""
        return op + ".".join(parts) + pre

    groups = [
        draw(st.sampled_from([" ", ", "])).join(one() for _ in range(draw(st.integers(1, 3))))
        for _ in range(draw(st.integers(1, 2)))
    ]
    return " || ".join(groups)


def _consistent(policer: Policer, tags: list[str]) -> tuple[str | None, Evaluation]:
    ev = policer.explain(tags)
    if ev.latest is None:
        with pytest.raises(SelectionError) as exc:
            policer.latest(tags)
        assert ev.error == str(exc.value)
    else:
        assert policer.latest(tags) == ev.latest
        assert ev.candidates[0].tag == ev.latest
    latest = ev.latest
    mentioned = {c.tag for c in ev.candidates} | {r.tag for r in ev.rejected}
    assert mentioned == set(tags)
    return latest, ev


@settings(max_examples=300)
@given(rng=ranges(), tags=tags_strategy)
def test_semver_latest_is_the_greatest_satisfying_tag(rng: str, tags: list[str]) -> None:
    policy = SemVerPolicy(rng)
    latest, ev = _consistent(policy, tags)
    satisfying = [v for v in map(parse_tag, tags) if v is not None and policy.constraints.check(v)]
    # Highest first; equal versions keep their input order.
    ranked = sorted(satisfying, key=lambda v: v.sort_key, reverse=True)
    assert [c.tag for c in ev.candidates] == [v.original for v in ranked]
    if latest is None:
        assert not satisfying
        return
    assert latest in tags
    best = parse_tag(latest)
    assert best is not None
    assert all(best.compare(v) >= 0 for v in satisfying)


versions = st.tuples(small, small, small)


@given(bound=versions, v=versions, op=st.sampled_from([">=", ">", "<", "<=", "=", "!="]))
def test_full_versions_compare_like_tuples(
    bound: tuple[int, int, int], v: tuple[int, int, int], op: str
) -> None:
    expected = {
        ">=": v >= bound,
        ">": v > bound,
        "<": v < bound,
        "<=": v <= bound,
        "=": v == bound,
        "!=": v != bound,
    }[op]
    tag = parse_tag("{}.{}.{}".format(*v))
    assert tag is not None
    assert parse_constraints(op + "{}.{}.{}".format(*bound)).check(tag) is expected


@given(v=versions, pre=prerelease)
def test_plain_ranges_never_select_prereleases(v: tuple[int, int, int], pre: str) -> None:
    major, minor, patch = v
    tag = parse_tag(f"{major}.{minor}.{patch}-{pre}")
    assert tag is not None
    for rng in ("*", ">=0.0.0", "<99", f"~{major}", f"^{major}.{minor}", f"{major}.x"):
        assert not parse_constraints(rng).check(tag)


@given(tags=st.lists(st.text(max_size=6), max_size=20), order=st.sampled_from(["", "asc", "DESC"]))
def test_alphabetical(tags: list[str], order: str) -> None:
    policy = AlphabeticalPolicy(order)
    latest, _ = _consistent(policy, tags)
    if tags:
        assert latest == (min(tags) if policy.order == "DESC" else max(tags))


finite = st.floats(allow_nan=False, allow_infinity=False)
number_text = st.one_of(
    finite.map(repr), finite.map(float.hex), st.integers(-(10**30), 10**30).map(str)
)


@given(tags=st.lists(number_text, max_size=20), order=st.sampled_from(["", "DESC"]))
def test_numerical(tags: list[str], order: str) -> None:
    policy = NumericalPolicy(order)
    latest, _ = _consistent(policy, tags)
    if not tags:
        return
    assert latest is not None
    values = [parse_float(t) for t in tags]
    target = min(values) if order == "DESC" else max(values)
    assert parse_float(latest) == target
    # Among equal values the last one wins.
    assert latest == [t for t, v in zip(tags, values, strict=True) if v == target][-1]


@given(tags=st.lists(st.one_of(number_text, st.text(max_size=5)), max_size=10))
def test_numerical_explain_is_consistent(tags: list[str]) -> None:
    _consistent(NumericalPolicy(), tags)


@given(x=finite)
def test_parse_float_round_trips(x: float) -> None:
    assert parse_float(repr(x)) == x
    assert parse_float(x.hex()) == x
    assert parse_float("-" + repr(abs(x))) == -abs(x)


@given(text=st.text(alphabet="0123456789._eExXpP+-abcdfinINF ", max_size=12))
def test_parse_float_agrees_with_python_when_accepted(text: str) -> None:
    try:
        got = parse_float(text)
    except ValueError:
        return
    plain = text.replace("_", "")
    want = float.fromhex(plain) if "x" in plain.lower() else float(plain)
    assert (math.isnan(got) and math.isnan(want)) or got == want


@given(template=st.text().filter(lambda t: "$" not in t))
def test_templates_without_dollar_are_literal(template: str) -> None:
    assert expand_template(template, ["whole", "g1"], {"n": 1}) == template
