"""Go ``time.Duration`` parsing and formatting, in integer nanoseconds.

Flux's API stores intervals as Go duration strings (``1m30s``) and its messages print
durations with Go's ``Duration.String()`` (``1h0m0s``, ``59m41.982133458s``). Users read
these strings, so the round trip must be exact: durations are kept as integer nanoseconds,
never floats, until the moment a timer needs seconds.
"""

from __future__ import annotations

import re
from typing import Final

NANOSECOND: Final = 1
MICROSECOND: Final = 1_000
MILLISECOND: Final = 1_000_000
SECOND: Final = 1_000_000_000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE

_UNITS: Final = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 micro sign
    "μs": MICROSECOND,  # U+03BC greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_MAX = (1 << 63) - 1

# The CRD validation patterns (contract §1.2): `timeout` deliberately has no `h` unit.
INTERVAL_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
TIMEOUT_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"


class DurationError(ValueError):
    """A string that Go's ``time.ParseDuration`` would reject."""


def parse_duration(text: str) -> int:
    """Parse a Go duration string into nanoseconds (``"1m30s"`` → 90_000_000_000).

    Accepts what ``time.ParseDuration`` accepts: an optional sign, then one or more
    decimal numbers each with a unit; ``"0"`` alone is zero.
    """
    original = text
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise DurationError(f'time: invalid duration "{original}"')
    total = 0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.group(1) in ("", "."):
            if match is None and re.match(r"[0-9.]+\Z", text[pos:]):
                raise DurationError(f'time: missing unit in duration "{original}"')
            if match is None:
                raise DurationError(f'time: unknown unit in duration "{original}"')
            raise DurationError(f'time: invalid duration "{original}"')
        number, unit = match.group(1), match.group(2)
        whole, _, frac = number.partition(".")
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            # Integer arithmetic keeps sub-nanosecond truncation identical to Go.
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > _MAX:
            raise DurationError(f'time: invalid duration "{original}"')
        pos = match.end()
    return sign * total


def _fraction(value: int, digits: int) -> str:
    """Render ``value`` (< 10**digits) as a decimal fraction with trailing zeros trimmed."""
    text = f"{value:0{digits}d}".rstrip("0")
    return f".{text}" if text else ""


def format_duration(ns: int) -> str:
    """Format nanoseconds exactly like Go's ``Duration.String()``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < SECOND:
        if u < MICROSECOND:
            return f"{sign}{u}ns"
        if u < MILLISECOND:
            return f"{sign}{u // MICROSECOND}{_fraction(u % MICROSECOND, 3)}µs"
        return f"{sign}{u // MILLISECOND}{_fraction(u % MILLISECOND, 6)}ms"
    seconds = f"{(u // SECOND) % 60}{_fraction(u % SECOND, 9)}s"
    minutes = u // MINUTE
    if minutes == 0:
        return f"{sign}{seconds}"
    hours = minutes // 60
    if hours == 0:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{hours}h{minutes % 60}m{seconds}"


def to_seconds(ns: int) -> float:
    """Nanoseconds as float seconds, for timers and asyncio delays."""
    return ns / SECOND
