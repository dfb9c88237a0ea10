"""Go's ``strconv.ParseFloat(s, 64)`` acceptance rules, for the numerical policy.

Python's ``float()`` is more permissive than Go (surrounding whitespace,
Unicode digits, ``nan`` with a sign, hex without a ``p`` exponent through
``float.fromhex``), so the syntax is checked here first and only then is the
value computed by ``float``/``float.fromhex`` (both correctly rounded, like Go).

Accepted, as in Go:

* an optional sign, then ``inf`` or ``infinity`` (any case), or ``nan`` (any
  case, no sign);
* decimal: digits with at most one ``.`` (at least one digit), optional
  ``e``/``E`` exponent with optional sign and at least one digit;
* hexadecimal: ``0x``/``0X``, hex digits with at most one ``.``, and a
  mandatory ``p``/``P`` decimal exponent;
* ``_`` only between digits (or right after the ``0x`` prefix) anywhere in the
  mantissa or exponent — Go's ``underscoreOK`` rule, which admits
  ``1_000`` as well as ``0x_1p0``.

Results outside the float64 range make Go return ``ErrRange`` (with ±Inf);
Flux treats every error as a failure, so they are rejected here too. Values
that underflow to zero are fine, as in Go.
"""

from __future__ import annotations

import math
from typing import Final

_DIGITS: Final = frozenset("0123456789")
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _underscore_ok(s: str) -> bool:
    # '^' start, '0' digit or base prefix, '_' underscore, '!' anything else.
    saw = "^"
    if s[:1] in ("+", "-"):
        s = s[1:]
    i = 0
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i = 2
        saw = "0"
        hexa = s[1] in "xX"
    for ch in s[i:]:
        if ch in _DIGITS or (hexa and ch in _HEX_DIGITS):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _special(s: str) -> float | None:
    if not s.isascii():
        return None
    body = s[1:] if s[:1] in ("+", "-") else s
    word = body.lower()
    if word in ("inf", "infinity"):
        return -math.inf if s[0] == "-" else math.inf
    if word == "nan" and body is s:
        return math.nan
    return None


def _syntax_ok(s: str) -> tuple[bool, bool]:
    """Return (well-formed, is_hex) for a non-special number."""
    n = len(s)
    i = 0
    if i < n and s[i] in "+-":
        i += 1
    hexa = i + 2 < n and s[i] == "0" and s[i + 1] in "xX"
    if hexa:
        i += 2
    digits = _HEX_DIGITS if hexa else _DIGITS
    underscores = saw_dot = saw_digits = False
    while i < n:
        ch = s[i]
        if ch == "_":
            underscores = True
        elif ch == ".":
            if saw_dot:
                break
            saw_dot = True
        elif ch in digits:
            saw_digits = True
        else:
            break
        i += 1
    if not saw_digits:
        return False, hexa
    if i < n and s[i] in ("pP" if hexa else "eE"):
        i += 1
        if i < n and s[i] in "+-":
            i += 1
        if i >= n or s[i] not in _DIGITS:
            return False, hexa
        while i < n and (s[i] in _DIGITS or s[i] == "_"):
            underscores = underscores or s[i] == "_"
            i += 1
    elif hexa:
        return False, hexa
    if underscores and not _underscore_ok(s[:i]):
        return False, hexa
    return i == n, hexa


def parse_float(s: str) -> float:
    """Parse ``s`` as Go's ``ParseFloat(s, 64)``; raise ``ValueError`` on any Go error."""
    special = _special(s)
    if special is not None:
        return special
    if not s.isascii():
        raise ValueError(f"invalid syntax: {s!r}")
    ok, hexa = _syntax_ok(s)
    if not ok:
        raise ValueError(f"invalid syntax: {s!r}")
    plain = s.replace("_", "")
    try:
        value = float.fromhex(plain) if hexa else float(plain)
    except OverflowError:
        raise ValueError(f"value out of range: {s!r}") from None
    if math.isinf(value):
        raise ValueError(f"value out of range: {s!r}")
    return value
