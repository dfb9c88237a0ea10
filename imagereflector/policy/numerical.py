"""Numerical order policy (Flux ``Numerical``).

Every tag must parse as a float64 with Go's ``ParseFloat`` rules
(``gofloat.parse_float``); one unparsable tag fails the whole selection with
``failed to parse invalid numeric value '<tag>'`` (the first such tag in
input order). ASC selects the maximum, DESC the minimum; among equal values
the later tag wins, because Flux's scan only skips strictly worse values.
NaN compares false with everything, so Flux's scan may select a NaN that is
last or be moved off it by any later value; ``latest`` reproduces that scan
exactly and ``explain`` puts the scan's choice first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from imagereflector.policy.errors import MSG_EMPTY_LIST, SelectionError, msg_invalid_numeric
from imagereflector.policy.gofloat import parse_float
from imagereflector.policy.order import ORDER_DESC, normalize_order
from imagereflector.policy.policer import Candidate, Evaluation, Rejection


def _scan(values: Sequence[float], descending: bool) -> int:
    """Index Flux's loop selects: replace unless strictly worse (NaN never is)."""
    best = 0
    for i in range(1, len(values)):
        cv, pv = values[i], values[best]
        if (cv > pv) if descending else (cv < pv):
            continue
        best = i
    return best


class NumericalPolicy:
    """Select the numerically greatest (ASC) or smallest (DESC) tag."""

    __slots__ = ("order",)

    def __init__(self, order: str = "") -> None:
        """Validate ``order`` (``""`` means ASC); raise ``InvalidPolicyError`` otherwise."""
        self.order: Final = normalize_order(order)

    @property
    def description(self) -> str:
        """Human description, e.g. ``numerical order DESC``."""
        return f"numerical order {self.order}"

    def latest(self, tags: Sequence[str]) -> str:
        """Return the selected tag; any non-numeric tag fails the selection."""
        if not tags:
            raise SelectionError(MSG_EMPTY_LIST)
        values: list[float] = []
        for tag in tags:
            try:
                values.append(parse_float(tag))
            except ValueError:
                raise SelectionError(msg_invalid_numeric(tag)) from None
        return tags[_scan(values, self.order == ORDER_DESC)]

    def explain(self, tags: Sequence[str]) -> Evaluation:
        """Rank the numeric tags; report non-numeric ones (which fail the policy)."""
        descending = self.order == ORDER_DESC
        parsed: list[tuple[int, float]] = []
        rejected: list[Rejection] = []
        for index, tag in enumerate(tags):
            try:
                parsed.append((index, parse_float(tag)))
            except ValueError:
                rejected.append(Rejection(tag, tag, "not numeric"))

        def rank(item: tuple[int, float]) -> tuple[bool, float, int]:
            index, value = item
            if math.isnan(value):
                return (True, 0.0, -index)
            # Best first: larger (ASC) or smaller (DESC) value, then later index.
            return (False, value if descending else -value, -index)

        ranked = sorted(parsed, key=rank)
        error: str | None = None
        latest: str | None = None
        if not tags:
            error = MSG_EMPTY_LIST
        elif rejected:
            error = msg_invalid_numeric(rejected[0].tag)
        else:
            chosen = _scan([v for _, v in parsed], descending)
            ranked.sort(key=lambda item: item[0] != chosen)
            latest = tags[chosen]
        candidates = tuple(Candidate(tags[i], tags[i]) for i, _ in ranked)
        return Evaluation(self.description, latest, candidates, tuple(rejected), error)
