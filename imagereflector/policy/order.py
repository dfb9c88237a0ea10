"""The ``order`` field shared by the alphabetical and numerical policies.

Flux's factory upper-cases the order before validating it, so ``asc``/``Desc``
are accepted; an empty order means ASC; anything else is an invalid policy
whose message quotes the upper-cased value.
"""

from __future__ import annotations

from typing import Final

from imagereflector.policy.errors import InvalidPolicyError, msg_invalid_order

ORDER_ASC: Final = "ASC"
ORDER_DESC: Final = "DESC"


def _go_upper(text: str) -> str:
    # Go's strings.ToUpper maps rune by rune (simple case mapping), so 'ß'
    # stays 'ß' where str.upper() would expand it to 'SS'; the difference only
    # shows in the quoted error message.
    out = []
    for ch in text:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return "".join(out)


def normalize_order(order: str) -> str:
    """Return ``ASC`` or ``DESC`` for ``order``; raise ``InvalidPolicyError`` otherwise."""
    upper = _go_upper(order)
    if upper == "":
        return ORDER_ASC
    if upper in (ORDER_ASC, ORDER_DESC):
        return upper
    raise InvalidPolicyError(msg_invalid_order(upper))
