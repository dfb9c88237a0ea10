"""Semver ranges and the semver policy against Masterminds/semver v3.2.1 and Flux v0.31 tables.

The tables are ports of ``constraints_test.go`` / ``version_test.go``
(Masterminds v3.2.x), fluxcd/pkg ``version_test.go`` and Flux's
``internal/policy/semver_test.go``; rows marked "derived" pin library edge
cases read from the v3.2.1 source rather than from its tests.
"""

from __future__ import annotations

import pytest

from imagereflector.policy import InvalidPolicyError, SelectionError, SemVerPolicy
from imagereflector.policy.semver import (
    parse_constraints,
    parse_tag,
    parse_version,
    rewrite_hyphen_ranges,
)

# --- Flux TestNewSemVer ---------------------------------------------------------


@pytest.mark.parametrize("rng", ["1.0.x", "^1.0", "=1.0.0", "~1.0", ">=1.0", ">0,<2.0"])
def test_flux_valid_ranges(rng: str) -> None:
    assert SemVerPolicy(rng).range == rng


@pytest.mark.parametrize("rng", ["1.0.0p", "1x", "x1", "-1", "a", ""])
def test_flux_invalid_ranges(rng: str) -> None:
    with pytest.raises(InvalidPolicyError):
        SemVerPolicy(rng)


@pytest.mark.parametrize(
    ("rng", "message"),
    [
        ("*-*", "improper constraint: *-*"),
        ("", "improper constraint: "),
        ("1.0.0p", "improper constraint: 1.0.0p"),
        ("-1", "improper constraint: -1"),
        (">= bar", "improper constraint: >= bar"),
        ("1.2 || foo", "improper constraint:  foo"),
        ("1x", "constraint Parser Error"),
        ("x1", "constraint Parser Error"),
        ("1|2", "constraint Parser Error"),
        (">=99999999999999999999.0.0", "constraint Parser Error"),
        (">=1.0.0-01", "constraint Parser Error"),
    ],
)
def test_range_error_messages(rng: str, message: str) -> None:
    with pytest.raises(InvalidPolicyError) as exc:
        parse_constraints(rng)
    assert str(exc.value) == message


# --- Flux TestSemVer_Latest and the controller's v-prefix cases -----------------


@pytest.mark.parametrize(
    ("rng", "tags", "expected"),
    [
        ("1.0.x", ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"], "1.0.1"),
        ("1.0.x", ["v1.2.3", "v1.0.0", "v0.1.0"], "v1.0.0"),
        ("1.0.x", ["1.0.0", "2.0.0", "1.0.1", "1.2.0"], "1.0.1"),
        ("v1.0.x", ["1.0.0", "2.0.0", "1.0.1", "1.2.0"], "1.0.1"),
        ("v1.0.x", ["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"], "v1.0.1"),
        ("1.0.x", ["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"], "v1.0.1"),
        ("1.0.x", ["1.0.0", "1.0.2", "1.1.0-alpha"], "1.0.2"),
        (">=0.x", ["0.1.0", "0.1.1", "0.2.0-rc.1"], "0.1.1"),
        ("*", ["1.0.0", "1.0.0+b", "v1.0.0"], "1.0.0"),  # ties keep the first seen
        ("*", ["1.0.0+b", "1.0.0"], "1.0.0+b"),
    ],
    ids=str,
)
def test_latest(rng: str, tags: list[str], expected: str) -> None:
    assert SemVerPolicy(rng).latest(tags) == expected


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["b1.2.3", "b1.0.0", "b0.1.0"], "unable to determine latest version from provided list"),
        ([], "version list argument cannot be empty"),
        (["1.2.0"], "unable to determine latest version from provided list"),
    ],
)
def test_latest_errors(tags: list[str], message: str) -> None:
    with pytest.raises(SelectionError) as exc:
        SemVerPolicy("1.0.x").latest(tags)
    assert str(exc.value) == message


# --- Which tags are candidates (fluxcd/pkg TestParseVersion, Masterminds strict) ----


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        # fluxcd/pkg version.ParseVersion
        ("v1.2.3", True),
        ("v1.0", False),
        ("v1", False),
        ("v1.2.beta", False),
        ("v1.2-5", False),
        ("v1.2-beta.5", False),
        ("\nv1.2", False),
        ("v1.2.0-x.Y.0+metadata", True),
        ("v1.2.0-x.Y.0+metadata-width-hypen", True),
        ("v1.2.3-rc1-with-hypen", True),
        ("v1.2.3.4", False),
        # Masterminds TestStrictNewVersion (unprefixed rows)
        ("1.2.3", True),
        ("1.2.3-alpha.01", False),
        ("1.2.3+test.01", True),
        ("1.2.3-alpha.-1", True),
        ("1.0", False),
        ("1", False),
        ("1.2.beta", False),
        ("foo", False),
        ("1.2-5", False),
        ("1.2-beta.5", False),
        ("\n1.2", False),
        ("1.2.0-x.Y.0+metadata", True),
        ("1.2.0-x.Y.0+metadata-width-hypen", True),
        ("1.2.3-rc1-with-hypen", True),
        ("1.2.3.4", False),
        ("1.2.2147483648", True),
        ("1.2147483648.3", True),
        ("2147483648.3.0", True),
        ("20221209-update-renovatejson-v4", False),
        # Flux's examples and the combination of both parsers
        ("1.0.0.1", False),
        ("1.0.0p", False),
        ("b1.2.3", False),
        ("01.2.3", False),
        ("1.02.3", False),
        ("1.2.03", False),
        ("0.0.0", True),
        ("1.2.3-", False),
        ("1.2.3+", False),
        ("1.2.3-a..b", False),
        ("1.2.3-+b", False),
        ("1.2.3+a+b", False),
        ("1.2.3--a", True),
        ("1.2.3-0", True),
        ("1.2.3-00", False),
        ("1.2.3+00", True),
        ("V1.2.3", False),
        ("vv1.2.3", False),
        (" 1.2.3", False),
        ("1.2.3\n", False),
        ("1.2.3 ", False),
        ("１.2.3", False),
        ("18446744073709551615.0.0", True),
        ("18446744073709551616.0.0", False),
        ("0.18446744073709551616.0", False),
        ("", False),
        ("v", False),
    ],
    ids=repr,
)
def test_parse_tag(tag: str, ok: bool) -> None:
    assert (parse_tag(tag) is not None) is ok


def test_parse_tag_parts() -> None:
    v = parse_tag("v1.2.3-beta.1+build.123")
    assert v is not None
    assert (v.major, v.minor, v.patch, v.prerelease, v.build) == (1, 2, 3, "beta.1", "build.123")
    assert v.original == "v1.2.3-beta.1+build.123"
    assert str(v) == "1.2.3-beta.1+build.123"


# --- Masterminds TestNewVersion (lenient parser used inside ranges) ---------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1.2.3", True),
        ("1.2.3-alpha.01", False),
        ("1.2.3+test.01", True),
        ("1.2.3-alpha.-1", True),
        ("v1.2.3", True),
        ("1.0", True),
        ("v1.0", True),
        ("1", True),
        ("v1", True),
        ("1.2.beta", False),
        ("v1.2.beta", False),
        ("foo", False),
        ("1.2-5", True),
        ("v1.2-5", True),
        ("1.2-beta.5", True),
        ("v1.2-beta.5", True),
        ("\n1.2", False),
        ("\nv1.2", False),
        ("1.2.0-x.Y.0+metadata", True),
        ("v1.2.0-x.Y.0+metadata", True),
        ("1.2.0-x.Y.0+metadata-width-hypen", True),
        ("v1.2.0-x.Y.0+metadata-width-hypen", True),
        ("1.2.3-rc1-with-hypen", True),
        ("v1.2.3-rc1-with-hypen", True),
        ("1.2.3.4", False),
        ("v1.2.3.4", False),
        ("1.2.2147483648", True),
        ("1.2147483648.3", True),
        ("2147483648.3.0", True),
        ("12.3.4.1234", False),
        ("12.23.4.1234", False),
        ("12.3.34.1234", False),
        ("20221209-update-renovatejson-v4", True),
    ],
    ids=repr,
)
def test_parse_version(text: str, ok: bool) -> None:
    if ok:
        assert parse_version(text).original == text
    else:
        with pytest.raises(ValueError, match=r"."):
            parse_version(text)


@pytest.mark.parametrize(
    ("text", "coerced"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.0", "1.0.0"),
        ("v1.0", "1.0.0"),
        ("1", "1.0.0"),
        ("v1", "1.0.0"),
        ("1.2-5", "1.2.0-5"),
        ("v1.2-5", "1.2.0-5"),
        ("1.2-beta.5", "1.2.0-beta.5"),
        ("v1.2-beta.5", "1.2.0-beta.5"),
        ("1.2.0-x.Y.0+metadata", "1.2.0-x.Y.0+metadata"),
        ("1.2.3-rc1-with-hypen", "1.2.3-rc1-with-hypen"),
    ],
)
def test_coerced_string(text: str, coerced: str) -> None:
    assert str(parse_version(text)) == coerced


# --- Masterminds TestCompare / TestGreaterThan --------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.2.3", "1.5.1", -1),
        ("2.2.3", "1.5.1", 1),
        ("2.2.3", "2.2.2", 1),
        ("3.2-beta", "3.2-beta", 0),
        ("1.3", "1.1.4", 1),
        ("4.2", "4.2-beta", 1),
        ("4.2-beta", "4.2", -1),
        ("4.2-alpha", "4.2-beta", -1),
        ("4.2-alpha", "4.2-alpha", 0),
        ("4.2-beta.2", "4.2-beta.1", 1),
        ("4.2-beta2", "4.2-beta1", 1),
        ("4.2-beta", "4.2-beta.2", -1),
        ("4.2-beta", "4.2-beta.foo", -1),
        ("4.2-beta.2", "4.2-beta", 1),
        ("4.2-beta.foo", "4.2-beta", 1),
        ("1.2+bar", "1.2+baz", 0),
        ("1.0.0-beta.4", "1.0.0-beta.-2", -1),
        ("1.0.0-beta.-2", "1.0.0-beta.-3", -1),
        ("1.0.0-beta.-3", "1.0.0-beta.5", 1),
        # GreaterThan table
        ("3.2.0-beta.1", "3.2.0-beta.5", -1),
        ("3.2-beta.4", "3.2-beta.2", 1),
        ("7.43.0-SNAPSHOT.99", "7.43.0-SNAPSHOT.103", -1),
        ("7.43.0-SNAPSHOT.FOO", "7.43.0-SNAPSHOT.103", 1),
        ("7.43.0-SNAPSHOT.99", "7.43.0-SNAPSHOT.BAR", -1),
        ("3.2-beta+foo", "3.2-beta+bar", 0),
        # derived: a numeric identifier beyond uint64 compares as text
        ("1.0.0-99999999999999999999", "1.0.0-a", -1),
        ("1.0.0-99999999999999999999", "1.0.0-5", 1),
    ],
)
def test_compare(a: str, b: str, expected: int) -> None:
    assert parse_version(a).compare(parse_version(b)) == expected
    assert parse_version(b).compare(parse_version(a)) == -expected


# --- Masterminds TestParseConstraint ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "version"),
    [
        (">= 1.2", ">=", "1.2.0"),
        ("1.0", "", "1.0.0"),
        ("<= 1.2", "<=", "1.2.0"),
        ("=< 1.2", "=<", "1.2.0"),
        ("=> 1.2", "=>", "1.2.0"),
        ("v1.2", "", "1.2.0"),
        ("=1.5", "=", "1.5.0"),
        ("> 1.3", ">", "1.3.0"),
        ("< 1.4.1", "<", "1.4.1"),
        ("< 40.50.10", "<", "40.50.10"),
        ("~> 1.2.x-beta.1+b", "~>", "1.2.0-beta.1"),
        ("!=x.1.2-rc", "!=", "0.0.0-rc"),
        ("^v1.2.3+meta", "^", "1.2.3+meta"),
    ],
)
def test_parse_single_constraint(text: str, op: str, version: str) -> None:
    (group,) = parse_constraints(text).groups
    (comparator,) = group
    assert comparator.op == op
    assert str(comparator.version) == version


# --- Masterminds TestNewConstraint ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ors", "count"),
    [
        (">= 1.1", 1, 1),
        (">40.50.60, < 50.70", 1, 2),
        ("2.0", 1, 1),
        ("v2.3.5-20161202202307-sha.e8fc5e5", 1, 1),
        (">= 1.2.3 < 2.0", 1, 2),
        (">= 1.2.3 < 2.0 || => 3.0 < 4", 2, 2),
        (">= 1.2.3, < 2.0", 1, 2),
        (">= 1.2.3, < 2.0 || => 3.0, < 4", 2, 2),
        ("3 - 4 || => 3.0, < 4", 2, 2),
        ("12.3.34 ~1.2.3", 1, 2),
        ("1 - 2 <3", 1, 3),  # the v3.2.1 range-rewrite fix (trailing space)
    ],
)
def test_new_constraint_shape(text: str, ors: int, count: int) -> None:
    groups = parse_constraints(text).groups
    assert len(groups) == ors
    assert len(groups[0]) == count


@pytest.mark.parametrize(
    "text",
    [">= bar", "BAR >= 1.2.3", "12.3.4.1234", "12.23.4.1234", "12.3.34.1234", "12.3.34~ 1.2.3"],
)
def test_new_constraint_errors(text: str) -> None:
    with pytest.raises(InvalidPolicyError):
        parse_constraints(text)


@pytest.mark.parametrize(
    ("text", "rewritten"),
    [
        ("2 - 3", ">= 2, <= 3 "),
        ("2 - 3, 2 - 3", ">= 2, <= 3 ,>= 2, <= 3 "),
        ("2 - 3, 4.0.0 - 5.1", ">= 2, <= 3 ,>= 4.0.0, <= 5.1 "),
        ("1 - 2 <3", ">= 1, <= 2 <3"),
        ("1.2.3", "1.2.3"),
    ],
)
def test_rewrite_hyphen_ranges(text: str, rewritten: str) -> None:
    assert rewrite_hyphen_ranges(text) == rewritten


# --- Masterminds TestConstraintCheck (single comparators) and TestConstraintsCheck ----

SINGLE_CHECKS = [
    ("=2.0.0", "1.2.3", False),
    ("=2.0.0", "2.0.0", True),
    ("=2.0", "1.2.3", False),
    ("=2.0", "2.0.0", True),
    ("=2.0", "2.0.1", True),
    ("4.1", "4.1.0", True),
    ("!=4.1.0", "4.1.0", False),
    ("!=4.1.0", "4.1.1", True),
    ("!=4.1", "4.1.0", False),
    ("!=4.1", "4.1.1", False),
    ("!=4.1", "5.1.0-alpha.1", False),
    ("!=4.1-alpha", "4.1.0", True),
    ("!=4.1", "5.1.0", True),
    ("<11", "0.1.0", True),
    ("<11", "11.1.0", False),
    ("<1.1", "0.1.0", True),
    ("<1.1", "1.1.0", False),
    ("<1.1", "1.1.1", False),
    ("<=11", "1.2.3", True),
    ("<=11", "12.2.3", False),
    ("<=11", "11.2.3", True),
    ("<=1.1", "1.2.3", False),
    ("<=1.1", "0.1.0", True),
    ("<=1.1", "1.1.0", True),
    ("<=1.1", "1.1.1", True),
    (">1.1", "4.1.0", True),
    (">1.1", "1.1.0", False),
    (">0", "0", False),
    (">0", "1", True),
    (">0", "0.0.1-alpha", False),
    (">0.0", "0.0.1-alpha", False),
    (">0-0", "0.0.1-alpha", False),
    (">0.0-0", "0.0.1-alpha", False),
    (">0", "0.0.0-alpha", False),
    (">0-0", "0.0.0-alpha", False),
    (">0.0.0-0", "0.0.0-alpha", True),
    (">1.2.3-alpha.1", "1.2.3-alpha.2", True),
    (">1.2.3-alpha.1", "1.3.3-alpha.2", True),
    (">11", "11.1.0", False),
    (">11.1", "11.1.0", False),
    (">11.1", "11.1.1", False),
    (">11.1", "11.2.1", True),
    (">=11", "11.1.2", True),
    (">=11.1", "11.1.2", True),
    (">=11.1", "11.0.2", False),
    (">=1.1", "4.1.0", True),
    (">=1.1", "1.1.0", True),
    (">=1.1", "0.0.9", False),
    (">=0", "0.0.1-alpha", False),
    (">=0.0", "0.0.1-alpha", False),
    (">=0-0", "0.0.1-alpha", True),
    (">=0.0-0", "0.0.1-alpha", True),
    (">=0", "0.0.0-alpha", False),
    (">=0-0", "0.0.0-alpha", True),
    (">=0.0.0-0", "0.0.0-alpha", True),
    (">=0.0.0-0", "1.2.3", True),
    (">=0.0.0-0", "3.4.5-beta.1", True),
    ("<0", "0.0.0-alpha", False),
    ("<0-z", "0.0.0-alpha", True),
    (">=0", "0", True),
    ("=0", "1", False),
    ("*", "1", True),
    ("*", "4.5.6", True),
    ("*", "1.2.3-alpha.1", False),
    ("*-0", "1.2.3-alpha.1", True),
    ("2.*", "1", False),
    ("2.*", "3.4.5", False),
    ("2.*", "2.1.1", True),
    ("2.1.*", "2.1.1", True),
    ("2.1.*", "2.2.1", False),
    ("2", "1", False),
    ("2", "3.4.5", False),
    ("2", "2.1.1", True),
    ("2.1", "2.1.1", True),
    ("2.1", "2.2.1", False),
    ("~1.2.3", "1.2.4", True),
    ("~1.2.3", "1.3.4", False),
    ("~1.2", "1.2.4", True),
    ("~1.2", "1.3.4", False),
    ("~1", "1.2.4", True),
    ("~1", "2.3.4", False),
    ("~0.2.3", "0.2.5", True),
    ("~0.2.3", "0.3.5", False),
    ("~1.2.3-beta.2", "1.2.3-beta.4", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", True),
    ("~1.2.3-beta.2", "1.3.4-beta.2", False),
    ("^1.2.3", "1.8.9", True),
    ("^1.2.3", "2.8.9", False),
    ("^1.2.3", "1.2.1", False),
    ("^1.1.0", "2.1.0", False),
    ("^1.2.0", "2.2.1", False),
    ("^1.2.0", "1.2.1-alpha.1", False),
    ("^1.2.0-alpha.0", "1.2.1-alpha.1", True),
    ("^1.2.0-alpha.0", "1.2.1-alpha.0", True),
    ("^1.2.0-alpha.2", "1.2.0-alpha.1", False),
    ("^1.2", "1.8.9", True),
    ("^1.2", "2.8.9", False),
    ("^1", "1.8.9", True),
    ("^1", "2.8.9", False),
    ("^0.2.3", "0.2.5", True),
    ("^0.2.3", "0.5.6", False),
    ("^0.2", "0.2.5", True),
    ("^0.2", "0.5.6", False),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^0.0", "0.0.3", True),
    ("^0.0", "0.1.4", False),
    ("^0.0", "1.0.4", False),
    ("^0", "0.2.3", True),
    ("^0", "1.1.4", False),
    ("^0.2.3-beta.2", "0.2.3-beta.4", True),
    ("^0.2.3-beta.2", "0.2.4-beta.2", True),
    ("^0.2.3-beta.2", "0.3.4-beta.2", False),
    ("^0.2.3-beta.2", "0.2.3-beta.2", True),
]

RANGE_CHECKS = [
    ("*", "1.2.3", True),
    ("~0.0.0", "1.2.3", True),
    ("0.x.x", "1.2.3", False),
    ("0.0.x", "1.2.3", False),
    ("0.0.0", "1.2.3", False),
    ("^0.0.0", "1.2.3", False),
    ("= 2.0", "1.2.3", False),
    ("= 2.0", "2.0.0", True),
    ("4.1", "4.1.0", True),
    ("4.1.x", "4.1.3", True),
    ("1.x", "1.4", True),
    ("!=4.1", "4.1.0", False),
    ("!=4.1-alpha", "4.1.0-alpha", False),
    ("!=4.1-alpha", "4.1.1-alpha", False),
    ("!=4.1-alpha", "4.1.0", True),
    ("!=4.1", "5.1.0", True),
    ("!=4.x", "5.1.0", True),
    ("!=4.x", "4.1.0", False),
    ("!=4.1.x", "4.2.0", True),
    ("!=4.2.x", "4.2.3", False),
    (">1.1", "4.1.0", True),
    (">1.1", "1.1.0", False),
    ("<1.1", "0.1.0", True),
    ("<1.1", "1.1.0", False),
    ("<1.1", "1.1.1", False),
    ("<1.x", "1.1.1", False),
    ("<1.x", "0.1.1", True),
    ("<1.x", "2.0.0", False),
    ("<1.1.x", "1.2.1", False),
    ("<1.1.x", "1.1.500", False),
    ("<1.1.x", "1.0.500", True),
    ("<1.2.x", "1.1.1", True),
    ("<2.x", "1.1.1", True),
    (">=1.1", "4.1.0", True),
    (">=1.1", "4.1.0-beta", False),
    (">=1.1", "1.1.0", True),
    (">=1.1", "0.0.9", False),
    ("<=1.1", "0.1.0", True),
    ("<=1.1", "0.1.0-alpha", False),
    ("<=1.1-a", "0.1.0-alpha", True),
    ("<=1.1", "1.1.0", True),
    ("<=1.x", "1.1.0", True),
    ("<=2.x", "3.0.0", False),
    ("<=2.x", "3.1.0", False),
    ("<=1.1", "1.1.1", True),
    ("<=1.1.x", "1.2.500", False),
    ("<=4.5", "3.4.0", True),
    ("<=4.5", "3.7.0", True),
    ("<=4.5", "4.6.3", False),
    (">1.1, <2", "1.1.1", False),
    (">1.1, <2", "1.2.1", True),
    (">1.1, <3", "4.3.2", False),
    (">=1.1, <2, !=1.2.3", "1.2.3", False),
    (">1.1 <2", "1.1.1", False),
    (">1.1 <2", "1.2.1", True),
    (">1.1    <3", "4.3.2", False),
    (">=1.1    <2    !=1.2.3", "1.2.3", False),
    (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", True),
    (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", True),
    (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", False),
    (">=1.1 <2 !=1.2.3", "1.2.3", False),
    (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", True),
    (">=1.1 <2 !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1 <2 !=1.2.3 || >= 3", "3.0.0", True),
    (">=1.1 <2 !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1 <2 !=1.2.3 || > 3", "1.2.3", False),
    ("> 1.1, <     2", "1.1.1", False),
    (">   1.1, <2", "1.2.1", True),
    (">1.1, <  3", "4.3.2", False),
    (">= 1.1, <     2, !=1.2.3", "1.2.3", False),
    ("> 1.1 < 2", "1.1.1", False),
    (">1.1 < 2", "1.2.1", True),
    ("> 1.1    <3", "4.3.2", False),
    (">=1.1    < 2    != 1.2.3", "1.2.3", False),
    (">= 1.1, <2, !=1.2.3 || > 3", "4.1.2", True),
    (">= 1.1, <2, != 1.2.3 || > 3", "3.1.2", False),
    (">= 1.1, <2, != 1.2.3 || >= 3", "3.0.0", True),
    (">= 1.1, <2, !=1.2.3 || > 3", "3.0.0", False),
    (">= 1.1, <2, !=1.2.3 || > 3", "1.2.3", False),
    (">= 1.1 <2 != 1.2.3", "1.2.3", False),
    (">= 1.1 <2 != 1.2.3 || > 3", "4.1.2", True),
    (">= 1.1 <2 != 1.2.3 || > 3", "3.1.2", False),
    (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", True),
    (">= 1.1 < 2 !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1 < 2 !=1.2.3 || > 3", "1.2.3", False),
    ("1.1 - 2", "1.1.1", True),
    ("1.1 - 3", "4.3.2", False),
    ("1.5.0 - 4.5", "3.7.0", True),
    ("1.1-3", "4.3.2", False),
    ("^1.1", "1.1.1", True),
    ("^1.1", "1.1.1-alpha", False),
    ("^1.1.1-alpha", "1.1.1-beta", True),
    ("^1.1.1-beta", "1.1.1-alpha", False),
    ("^1.1", "4.3.2", False),
    ("^1.x", "1.1.1", True),
    ("^2.x", "1.1.1", False),
    ("^1.x", "2.1.1", False),
    ("^1.x", "1.1.1-beta1", False),
    ("^1.1.2-alpha", "1.2.1-beta1", True),
    ("^1.2.x-alpha", "1.1.1-beta1", False),
    ("^0.0.1", "0.0.1", True),
    ("^0.0.1", "0.3.1", False),
    ("^0.0.1", "0.1.3", False),
    ("^1.12.7", "1.6.6", False),
    ("^0.2", "0.3.0", False),
    ("^0.2", "0.1.1", False),
    ("^0.0.3", "0.1.1", False),
    ("^0.0.3", "0.0.2", False),
    ("~*", "2.1.1", True),
    ("~1", "2.1.1", False),
    ("~1", "1.3.5", True),
    ("~1", "1.3.5-beta", False),
    ("~1", "1.4", True),
    ("~1.x", "2.1.1", False),
    ("~1.x", "1.3.5", True),
    ("~1.x", "1.3.5-beta", False),
    ("~1.x", "1.4", True),
    ("~1.1", "1.1.1", True),
    ("~1.1", "1.1.1-alpha", False),
    ("~1.1-alpha", "1.1.1-beta", True),
    ("~1.1.1-beta", "1.1.1-alpha", False),
    ("~1.1.1-beta", "1.1.1", True),
    ("~1.3.6-alpha", "1.3.5-beta", False),
    ("~1.3.5-alpha", "1.3.5-beta", True),
    ("~1.3.5-beta", "1.3.5-alpha", False),
    ("~1.2.3", "1.2.5", True),
    ("~1.2.3", "1.2.2", False),
    ("~1.2.3", "1.3.2", False),
    ("~1.1", "1.2.3", False),
    ("~1.3", "2.4.5", False),
    ("> 1.2.3", "1.2.3-beta.1", False),
    # derived from the v3.2.1 source: the per-comparator prerelease rule
    (">=1.0.0-0 <2.0.0", "1.5.0-rc.1", False),
    (">=1.0.0-0 <2.0.0-0", "1.5.0-rc.1", True),
    (">=1.0.0-0", "1.5.0-rc.1", True),
    ("^1.x-0", "1.5.0-rc.1", True),
    ("!=1.2.3", "1.2.4-alpha", True),
    ("!=1.2.x", "1.2.4-alpha", False),
    ("1.0.0 || >=2.0.0-0", "2.1.0-beta", True),
    # derived: wildcard edges of ^, <=, != and >
    ("^*", "0.0.0", True),
    ("^*", "0.0.1", False),
    ("^*", "1.0.0", False),
    ("<=*", "0.0.9", True),
    ("<=*", "0.1.0", False),
    ("!=*", "0.0.0", False),
    ("!=*", "0.0.1", True),
    (">*", "0.0.0", False),
    (">*", "0.0.1", True),
    (">=*", "0.0.0", True),
    ("<*", "0.0.0", False),
    ("=X.x.*", "7.8.9", True),
    ("1.x.|", "1.9.9", True),
    ("v1.2.3", "1.2.3", True),
    ("=>1.2.3", "1.2.3", True),
    ("=<1.2.3", "1.2.4", False),
    ("~>1.2", "1.2.9", True),
    ("~>1.2", "1.3.0", False),
    (">=01.2.3", "1.2.3", True),
    ("1.2.3+build", "1.2.3+other", True),
]


@pytest.mark.parametrize(("rng", "version", "ok"), SINGLE_CHECKS + RANGE_CHECKS, ids=str)
def test_constraint_check(rng: str, version: str, ok: bool) -> None:
    assert parse_constraints(rng).check(parse_version(version)) is ok


# --- explain -------------------------------------------------------------------------


def test_explain_semver() -> None:
    tags = ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0", "1.0.2-rc.1", "v1.0.1"]
    ev = SemVerPolicy("1.0.x").explain(tags)
    assert ev.latest == "1.0.1"
    assert ev.error is None
    assert [c.tag for c in ev.candidates] == ["1.0.1", "v1.0.1", "1.0.0"]
    assert {r.tag: r.reason for r in ev.rejected} == {
        "1.0.0.1": "not a strict semver version",
        "1.0.0p": "not a strict semver version",
        "1.2.0": "outside range '1.0.x'",
        "0.1.0": "outside range '1.0.x'",
        "1.0.2-rc.1": "prerelease excluded by range '1.0.x'",
    }


def test_explain_prerelease_inside_prerelease_range_is_outside() -> None:
    ev = SemVerPolicy(">=1.0.0-0 <1.5.0-0").explain(["1.6.0-rc.1", "1.2.0-rc.1"])
    assert ev.latest == "1.2.0-rc.1"
    assert ev.rejected[0].reason == "outside range '>=1.0.0-0 <1.5.0-0'"


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ([], "version list argument cannot be empty"),
        (["foo", "2.0.0"], "unable to determine latest version from provided list"),
    ],
)
def test_explain_failure(tags: list[str], error: str) -> None:
    ev = SemVerPolicy("1.0.x").explain(tags)
    assert ev.latest is None
    assert ev.error == error
    with pytest.raises(SelectionError, match=error):
        ev.require_latest()
