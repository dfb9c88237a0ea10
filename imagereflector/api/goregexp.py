"""Go's wording of regular-expression errors, for patterns compiled with RE2.

Flux compiles exclusion lists and ``filterTags`` with Go's ``regexp``; this project uses
RE2 (``google-re2``), which shares the syntax and the error cases but words them its own
way (``missing ]: [=``). Conditions must read as Flux's do
(``error parsing regexp: missing closing ]: `[=```), so both the exclusion list and the
tag filter report through ``go_regexp_error``.
"""

from __future__ import annotations

from typing import Final

# RE2's error strings mapped to the wording of Go's regexp/syntax ErrorCode.
_GO_ERROR_CODES: Final = {
    "missing )": "missing closing )",
    "missing ]": "missing closing ]",
    "unexpected )": "unexpected )",
    "bad repetition operator": "invalid nested repetition operator",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "invalid UTF-8": "invalid UTF-8",
    "pattern too large - compile failed": "expression too large",
    "pattern too large - reverse compile failed": "expression too large",
}


def go_regexp_error(raw: str) -> str:
    """``error parsing regexp: <Go's code>: `<expr>``` for one RE2 error string."""
    if raw == "trailing \\":
        return "error parsing regexp: trailing backslash at end of expression: ``"
    code, sep, expr = raw.partition(": ")
    if sep and code in _GO_ERROR_CODES:
        return f"error parsing regexp: {_GO_ERROR_CODES[code]}: `{expr}`"
    return f"error parsing regexp: {raw}"
