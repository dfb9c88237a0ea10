"""Numerical policy (Flux ``numerical_test.go``) and Go ``strconv.ParseFloat`` parity.

The ParseFloat rows are the float64 table of Go's ``strconv/atof_test.go``
(value or error), plus the whitespace/sign/Unicode cases Python's ``float``
would accept but Go rejects.
"""

from __future__ import annotations

import math
import random

import pytest

from imagereflector.policy import InvalidPolicyError, NumericalPolicy, SelectionError
from imagereflector.policy.gofloat import parse_float

INTS = ["-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91"]
INTS_DESC = ["5", "-8", "-78", "25", "70", "-4", "80", "92", "-20", "-24"]
FLOATS = [
    "47.40896403322944",
    "-27.8520927455902",
    "-27.930666514224427",
    "-31.352485948094568",
    "-50.41072694704882",
    "-21.962849842263736",
    "24.71884721436865",
    "-39.99177354004344",
    "53.47333823144817",
    "3.2008658570411086",
]
FLOATS_DESC = [
    "-65.27202780220686",
    "57.82948329142309",
    "22.40184684363291",
    "-86.36934305697784",
    "-90.29082099756083",
    "-12.041712603564264",
    "77.70488240399305",
    "-38.98425003883552",
    "16.06867070412028",
    "53.735674335181216",
]
TIMESTAMPS = ["1606234201", "1606364286", "1606334092", "1606334284", "1606334201"]


def shuffled(tags: list[str], seed: int) -> list[str]:
    out = list(tags)
    random.Random(seed).shuffle(out)
    return out


@pytest.mark.parametrize("order", ["", "ASC", "DESC", "asc", "dEsC"])
def test_valid_orders(order: str) -> None:
    NumericalPolicy(order)


def test_invalid_order() -> None:
    with pytest.raises(InvalidPolicyError, match=r"^invalid order argument provided: 'INVALID'"):
        NumericalPolicy("invalid")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("order", "tags", "expected"),
    [
        ("", INTS, "73"),
        ("DESC", INTS_DESC, "-78"),
        ("", FLOATS, "53.47333823144817"),
        ("DESC", FLOATS_DESC, "-90.29082099756083"),
        ("", TIMESTAMPS, "1606364286"),
        ("DESC", TIMESTAMPS, "1606234201"),
        ("", ["1"], "1"),
        ("DESC", ["1"], "1"),
    ],
    ids=str,
)
def test_latest(order: str, tags: list[str], expected: str, seed: int) -> None:
    assert NumericalPolicy(order).latest(shuffled(tags, seed)) == expected


@pytest.mark.parametrize(
    ("order", "tags", "expected"),
    [
        # Equal values: the later tag wins in both orders.
        ("ASC", ["1.0", "1", "0x1p0"], "0x1p0"),
        ("DESC", ["1", "1.0", "0"], "0"),
        ("DESC", ["0", "1", "0.0"], "0.0"),
        ("ASC", ["-0", "0"], "0"),
        ("ASC", ["0", "-0"], "-0"),
        ("ASC", ["1", "inf", "2"], "inf"),
        ("DESC", ["1", "-Infinity", "2"], "-Infinity"),
        # NaN is never "strictly worse": a later NaN is taken, a later number replaces it.
        ("ASC", ["1", "3", "NaN"], "NaN"),
        ("ASC", ["1", "NaN", "0"], "0"),
        ("DESC", ["nan", "7", "5"], "5"),
        ("DESC", ["nan", "5", "7"], "5"),
        ("ASC", ["1_000", "999"], "1_000"),
        ("ASC", ["0x10p0", "15"], "0x10p0"),
    ],
    ids=str,
)
def test_latest_go_edges(order: str, tags: list[str], expected: str) -> None:
    assert NumericalPolicy(order).latest(tags) == expected


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["0", "1a", "b"], "failed to parse invalid numeric value '1a'"),
        ([], "version list argument cannot be empty"),
        (["1", "1e400"], "failed to parse invalid numeric value '1e400'"),
        (["1", " 2"], "failed to parse invalid numeric value ' 2'"),
    ],
)
def test_latest_errors(tags: list[str], message: str) -> None:
    with pytest.raises(SelectionError) as exc:
        NumericalPolicy().latest(tags)
    assert str(exc.value) == message


def test_explain_ranks_and_reports() -> None:
    ev = NumericalPolicy("asc").explain(["3", "1", "3.0", "2"])
    assert ev.latest == "3.0"
    assert [c.tag for c in ev.candidates] == ["3.0", "3", "2", "1"]
    desc = NumericalPolicy("desc").explain(["3", "1", "1.0", "2"])
    assert [c.tag for c in desc.candidates] == ["1.0", "1", "2", "3"]


def test_explain_nan_choice_first() -> None:
    ev = NumericalPolicy().explain(["1", "3", "nan"])
    assert ev.latest == "nan"
    assert [c.tag for c in ev.candidates] == ["nan", "3", "1"]


def test_explain_non_numeric_fails_but_ranks_the_rest() -> None:
    ev = NumericalPolicy().explain(["0", "1a", "b", "7"])
    assert ev.latest is None
    assert ev.error == "failed to parse invalid numeric value '1a'"
    assert [c.tag for c in ev.candidates] == ["7", "0"]
    assert [(r.tag, r.reason) for r in ev.rejected] == [("1a", "not numeric"), ("b", "not numeric")]


# --- Go strconv.ParseFloat(s, 64) -------------------------------------------------------

BIG_DEC = "1.00000000000000011102230246251565404236316680908203125"
GO_ATOF_OK = [
    ("1", "1"),
    ("+1", "1"),
    ("1e23", "1e+23"),
    ("1E23", "1e+23"),
    ("100000000000000000000000", "1e+23"),
    ("1e-100", "1e-100"),
    ("123456700", "1.234567e+08"),
    ("99999999999999974834176", "9.999999999999997e+22"),
    ("100000000000000000000001", "1.0000000000000001e+23"),
    ("100000000000000008388608", "1.0000000000000001e+23"),
    ("100000000000000016777215", "1.0000000000000001e+23"),
    ("100000000000000016777216", "1.0000000000000003e+23"),
    ("-1", "-1"),
    ("-0.1", "-0.1"),
    ("-0", "-0"),
    ("1e-20", "1e-20"),
    ("625e-3", "0.625"),
    ("0x1p0", "1"),
    ("0x1p1", "2"),
    ("0x1p-1", "0.5"),
    ("0x1ep-1", "15"),
    ("-0x1ep-1", "-15"),
    ("-0x1_ep-1", "-15"),
    ("0x1p-200", "6.223015277861142e-61"),
    ("0x1p200", "1.6069380442589903e+60"),
    ("0x1fFe2.p0", "131042"),
    ("0x1fFe2.P0", "131042"),
    ("-0x2p3", "-16"),
    ("0x0.fp4", "15"),
    ("0x0.fp0", "0.9375"),
    ("0", "0"),
    ("0e0", "0"),
    ("-0e0", "-0"),
    ("+0e0", "0"),
    ("0e-0", "0"),
    ("-0e-0", "-0"),
    ("+0e-0", "0"),
    ("0e+0", "0"),
    ("-0e+0", "-0"),
    ("+0e+0", "0"),
    ("0e+01234567890123456789", "0"),
    ("0.00e-01234567890123456789", "0"),
    ("-0e+01234567890123456789", "-0"),
    ("-0.00e-01234567890123456789", "-0"),
    ("0x0p+01234567890123456789", "0"),
    ("0x0.00p-01234567890123456789", "0"),
    ("-0x0p+01234567890123456789", "-0"),
    ("-0x0.00p-01234567890123456789", "-0"),
    ("0e291", "0"),
    ("0e347", "0"),
    ("-0e348", "-0"),
    ("0x0p1026", "0"),
    ("-0x0p1024", "-0"),
    ("nan", "NaN"),
    ("NaN", "NaN"),
    ("NAN", "NaN"),
    ("inf", "+Inf"),
    ("-Inf", "-Inf"),
    ("+INF", "+Inf"),
    ("-Infinity", "-Inf"),
    ("+INFINITY", "+Inf"),
    ("Infinity", "+Inf"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ("-1.7976931348623157e308", "-1.7976931348623157e+308"),
    ("0x1.fffffffffffffp1023", "1.7976931348623157e+308"),
    ("-0x1.fffffffffffffp1023", "-1.7976931348623157e+308"),
    ("0x1fffffffffffffp+971", "1.7976931348623157e+308"),
    ("0x.1fffffffffffffp1027", "1.7976931348623157e+308"),
    ("1.7976931348623158e308", "1.7976931348623157e+308"),
    ("-1.7976931348623158e308", "-1.7976931348623157e+308"),
    ("0x1.fffffffffffff7fffp1023", "1.7976931348623157e+308"),
    ("1e308", "1e+308"),
    ("1e-305", "1e-305"),
    ("1e-308", "1e-308"),
    ("1e-310", "1e-310"),
    ("1e-322", "1e-322"),
    ("5e-324", "5e-324"),
    ("4e-324", "5e-324"),
    ("3e-324", "5e-324"),
    ("2e-324", "0"),
    ("1e-350", "0"),
    ("1e-400000", "0"),
    ("0x2.00000000000000p-1010", "1.8227805048890994e-304"),
    ("0x1.fffffffffffff0p-1010", "1.8227805048890992e-304"),
    ("0x1.fffffffffffff7p-1010", "1.8227805048890992e-304"),
    ("0x1.fffffffffffff8p-1010", "1.8227805048890994e-304"),
    ("0x1.00000000000000p-1022", "2.2250738585072014e-308"),
    ("0x0.fffffffffffff0p-1022", "2.225073858507201e-308"),
    ("0x0.00000003456788p-1022", "1.694649e-317"),
    ("0x0.00000003456789p-1022", "1.6946496e-317"),
    ("0x0.0000000345678800000000000000000000000001p-1022", "1.6946496e-317"),
    ("0x0.00000000000010p-1022", "5e-324"),
    ("0x0.000000000000081p-1022", "5e-324"),
    ("0x0.00000000000008p-1022", "0"),
    ("0x0.00000000000007fp-1022", "0"),
    ("1e-4294967296", "0"),
    ("1e-18446744073709551616", "0"),
    ("0x1p-4294967296", "0"),
    ("0x1p-18446744073709551616", "0"),
    ("0x1p+2", "4"),
    ("0x.1p+2", "0.25"),
    ("0x1p-2", "0.25"),
    ("0x.1p-2", "0.015625"),
    ("2.2250738585072012e-308", "2.2250738585072014e-308"),
    ("2.2250738585072011e-308", "2.225073858507201e-308"),
    ("4.630813248087435e+307", "4.630813248087435e+307"),
    ("22.222222222222222", "22.22222222222222"),
    ("2." + "2" * 4000 + "e+1", "22.22222222222222"),
    ("0x1.1111111111111p222", "7.18931911124017e+66"),
    ("0x2." + "2" * 4000 + "p221", "7.18931911124017e+66"),
    (BIG_DEC, "1"),
    ("0x1.00000000000008p0", "1"),
    ("0x1.00000000000007Fp0", "1"),
    ("1.00000000000000011102230246251565404236316680908203126", "1.0000000000000002"),
    ("0x1.000000000000081p0", "1.0000000000000002"),
    (BIG_DEC + "0" * 10000 + "1", "1.0000000000000002"),
    ("0x1.00000000000008" + "0" * 10000 + "1p0", "1.0000000000000002"),
    ("1.00000000000000033306690738754696212708950042724609375", "1.0000000000000004"),
    ("0x1.00000000000018p0", "1.0000000000000004"),
    ("1_23.50_0_0e+1_2", "1.235e+14"),
    ("0x_1_2.3_4_5p+1_2", "74565"),
    # Python's float() syntax that Go also accepts
    ("1.", "1"),
    (".5", "0.5"),
    ("+.5e1", "5"),
]

GO_ATOF_ERR = [
    "",
    "1x",
    "1.1.",
    "0x1e2",
    "1p2",
    "1.7976931348623159e308",
    "-1.7976931348623159e308",
    "0x1p1024",
    "-0x1p1024",
    "0x2p1023",
    "0x.1p1028",
    "0x.2p1027",
    "1.797693134862315808e308",
    "0x1.fffffffffffff8p1023",
    "-0x1.fffffffffffff8p1023",
    "0x1fffffffffffff.8p+971",
    "-0x1fffffffffffff8p+967",
    "0x.1fffffffffffff8p1027",
    "-0x.1fffffffffffff9p1027",
    "2e308",
    "1e309",
    "0x1p1025",
    "1e310",
    "-1e310",
    "1e400",
    "-1e400",
    "1e400000",
    "0x1p1030",
    "0x1p2000",
    "0x1p2000000000",
    "-0x1p2000000000",
    "1e+4294967296",
    "1e+18446744073709551616",
    "0x1p+4294967296",
    "0x1p+18446744073709551616",
    "1e",
    "1e-",
    ".e-1",
    "1\x00.2",
    "0x",
    "0x.",
    "0x1",
    "0x.1",
    "0x1p",
    "0x.1p",
    "0x1p+",
    "0x.1p+",
    "0x1p-",
    "0x.1p-",
    "-_123.5e+12",
    "+_123.5e+12",
    "_123.5e+12",
    "1__23.5e+12",
    "123_.5e+12",
    "123._5e+12",
    "123.5_e+12",
    "123.5__0e+12",
    "123.5e_+12",
    "123.5e+_12",
    "123.5e_-12",
    "123.5e-_12",
    "123.5e+1__2",
    "123.5e+12_",
    "-_0x12.345p+12",
    "+_0x12.345p+12",
    "_0x12.345p+12",
    "0x__12.345p+12",
    "0x1__2.345p+12",
    "0x12_.345p+12",
    "0x12._345p+12",
    "0x12.3__45p+12",
    "0x12.345_p+12",
    "0x12.345p_+12",
    "0x12.345p+_12",
    "0x12.345p_-12",
    "0x12.345p-_12",
    "0x12.345p+1__2",
    "0x12.345p+12_",
    # Accepted by Python's float() or float.fromhex(), rejected by Go
    " 1",
    "1 ",
    "\t1",
    "1\n",
    "-nan",
    "+nan",
    "+-1",
    "--1",
    "infin",
    "infinityx",
    "nan(1)",
    "١٢",
    "１",
    "1.5x",
    "0x1.8",
    "0b101",
    "0o17",
    "1_",
    "_1",
    ".",
    "+",
    "-",
    "e5",
    "1e5.5",
    "0x1p1.5",
    "inf inity",
    "0x1P",
    "0X",
    "1E+",
]


def _go_value(text: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


@pytest.mark.parametrize(("text", "expected"), GO_ATOF_OK, ids=lambda s: s[:40])
def test_parse_float_ok(text: str, expected: str) -> None:
    got = parse_float(text)
    want = _go_value(expected)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want
        assert math.copysign(1.0, got) == math.copysign(1.0, want)


@pytest.mark.parametrize("text", GO_ATOF_ERR, ids=repr)
def test_parse_float_err(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_float(text)
