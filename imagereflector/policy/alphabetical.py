"""Alphabetical order policy (Flux ``Alphabetical``).

ASC selects the greatest tag, DESC the smallest, comparing strings by code
point; for the valid Unicode text tags are, that is the same order as Go's
byte-wise comparison of their UTF-8 encodings. Every tag is a candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from imagereflector.policy.errors import MSG_EMPTY_LIST, SelectionError
from imagereflector.policy.order import ORDER_DESC, normalize_order
from imagereflector.policy.policer import Candidate, Evaluation


class AlphabeticalPolicy:
    """Select the last (ASC) or first (DESC) tag in string order."""

    __slots__ = ("order",)

    def __init__(self, order: str = "") -> None:
        """Validate ``order`` (``""`` means ASC); raise ``InvalidPolicyError`` otherwise."""
        self.order: Final = normalize_order(order)

    @property
    def description(self) -> str:
        """Human description, e.g. ``alphabetical order ASC``."""
        return f"alphabetical order {self.order}"

    def latest(self, tags: Sequence[str]) -> str:
        """Return the greatest (ASC) or smallest (DESC) tag."""
        if not tags:
            raise SelectionError(MSG_EMPTY_LIST)
        return min(tags) if self.order == ORDER_DESC else max(tags)

    def explain(self, tags: Sequence[str]) -> Evaluation:
        """Rank all tags in policy order; nothing is ever rejected."""
        ranked = sorted(tags, reverse=self.order != ORDER_DESC)
        candidates = tuple(Candidate(t, t) for t in ranked)
        latest = ranked[0] if ranked else None
        error = None if ranked else MSG_EMPTY_LIST
        return Evaluation(self.description, latest, candidates, (), error)
