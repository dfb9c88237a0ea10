"""Go duration parsing and formatting: the strings users see in status messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagereflector.api.duration import DurationError, format_duration, parse_duration

FORMAT_CASES = [
    (0, "0s"),
    (1, "1ns"),
    (1_100, "1.1µs"),
    (2_200_000, "2.2ms"),
    (500_000_000, "500ms"),
    (30_000_000_000, "30s"),
    (90_000_000_000, "1m30s"),
    (300_000_000_000, "5m0s"),
    (3_600_000_000_000, "1h0m0s"),
    (3_581_982_133_458, "59m41.982133458s"),
    (-5_400_000_000_000, "-1h30m0s"),
    (3_600_000_000_001, "1h0m0.000000001s"),
]


@pytest.mark.parametrize(("ns", "text"), FORMAT_CASES, ids=[t for _, t in FORMAT_CASES])
def test_format_matches_go(ns: int, text: str) -> None:
    assert format_duration(ns) == text


PARSE_CASES = [
    ("0", 0),
    ("1h", 3_600_000_000_000),
    ("1.5h", 5_400_000_000_000),
    ("1m30s", 90_000_000_000),
    ("500ms", 500_000_000),
    ("2h45m", 9_900_000_000_000),
    ("1.5us", 1_500),
    ("1.5µs", 1_500),
    ("100ns", 100),
    ("-1m", -60_000_000_000),
    ("+5s", 5_000_000_000),
    (".5s", 500_000_000),
]


@pytest.mark.parametrize(("text", "ns"), PARSE_CASES, ids=[t for t, _ in PARSE_CASES])
def test_parse_matches_go(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("1", 'time: missing unit in duration "1"'),
        ("1x", 'time: unknown unit in duration "1x"'),
        ("h", 'time: invalid duration "h"'),
        ("1h-1m", 'time: unknown unit in duration "1h-1m"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
    ids=["empty", "no-unit", "bad-unit", "no-number", "inner-sign", "overflow"],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns
