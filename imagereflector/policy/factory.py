"""Build a policer from a policy choice, and apply it to tags through ``filterTags``.

Flux order of operations, kept here so the controller does not re-derive it:

1. ``build_policer`` - the union ``spec.policy`` is read semver first, then
   alphabetical, then numerical; the first one that is set wins. None set is
   ``given ImagePolicyChoice object is invalid``. All errors are
   ``InvalidPolicyError`` (Stalled ``InvalidPolicy``, ``invalid policy: <err>``).
2. ``TagFilter.compile`` - only when ``filterTags`` is present; errors are
   ``InvalidFilterError`` (``failed to filter tags: <err>``).
3. ``select_latest`` / ``apply_policy`` - filter, select among the kept values,
   map the choice back to the original tag. Selection errors are
   ``SelectionError`` (Ready=False ``Failure``).

``evaluate`` runs all three for callers (the CLI) that need no ordering of
their own. This module knows nothing about the API models: the controller
converts ``spec.policy`` into a ``PolicyChoice``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from imagereflector.api.compat import Compatibility
from imagereflector.policy.alphabetical import AlphabeticalPolicy
from imagereflector.policy.errors import MSG_INVALID_CHOICE, InvalidPolicyError
from imagereflector.policy.filter import TagFilter
from imagereflector.policy.gofloat import parse_float
from imagereflector.policy.numerical import NumericalPolicy
from imagereflector.policy.order import ORDER_DESC, normalize_order
from imagereflector.policy.policer import Candidate, Evaluation, Policer, Rejection
from imagereflector.policy.semver import SemVerPolicy
from imagereflector.policy.version import tag_sort_key


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """The ``spec.policy`` union; ``None`` means "not set".

    An ``alphabetical: {}`` or ``numerical: {}`` object without an order is
    *set* and must be passed as ``""`` (which means ASC), not ``None``.
    """

    semver_range: str | None = None
    alphabetical_order: str | None = None
    numerical_order: str | None = None


def build_policer(choice: PolicyChoice,
                  compatibility: Compatibility = Compatibility.V0_31) -> Policer:
    """Return the policer for ``choice``; raise ``InvalidPolicyError`` if unusable.

    ``compatibility`` decides the semver library's version (v3.2.1 for Flux v0.31, v3.5
    for Flux v1.2); alphabetical and numerical are the same in both."""
    if choice.semver_range is not None:
        return SemVerPolicy(choice.semver_range, masterminds_3_5=compatibility.latest)
    if choice.alphabetical_order is not None:
        return AlphabeticalPolicy(choice.alphabetical_order)
    if choice.numerical_order is not None:
        return NumericalPolicy(choice.numerical_order)
    raise InvalidPolicyError(MSG_INVALID_CHOICE)


def select_latest(
    tags: Sequence[str], *, policer: Policer, tag_filter: TagFilter | None = None
) -> str:
    """Return the original tag Flux would select; raise ``SelectionError`` if none."""
    if tag_filter is None:
        return policer.latest(tags)
    kept = tag_filter.apply(tags)
    return kept.original(policer.latest(kept.values))


def apply_policy(
    tags: Sequence[str], *, policer: Policer, tag_filter: TagFilter | None = None
) -> Evaluation:
    """Like ``select_latest`` but explained; never raises ``SelectionError``."""
    if tag_filter is None:
        return policer.explain(tags)
    kept = tag_filter.apply(tags)
    inner = policer.explain(kept.values)
    candidates = tuple(Candidate(kept.original(c.value), c.value) for c in inner.candidates)
    rejected = [*kept.rejected]
    rejected.extend(Rejection(kept.original(r.value), r.value, r.reason) for r in inner.rejected)
    position: dict[str, int] = {}
    for index, tag in enumerate(tags):
        position.setdefault(tag, index)
    rejected.sort(key=lambda r: position.get(r.tag, len(tags)))
    latest = kept.original(inner.latest) if inner.latest is not None else None
    description = f"{inner.policy} with tags filtered by pattern '{tag_filter.pattern}'"
    if tag_filter.extract:
        description += f" extracting '{tag_filter.extract}'"
    return Evaluation(description, latest, candidates, tuple(rejected), inner.error)


def evaluate(
    tags: Sequence[str], *, choice: PolicyChoice, pattern: str = "", extract: str = ""
) -> Evaluation:
    """Build the policer and filter, apply them, and explain the outcome.

    An empty ``pattern`` and ``extract`` mean "no ``filterTags``". (Flux would
    still route the tags through its map when ``filterTags: {}`` is present,
    which only collapses duplicate tags; registry tag lists have none.)
    Raises ``InvalidPolicyError``/``InvalidFilterError`` for a bad spec; a
    failed selection is reported in ``Evaluation.error`` instead.
    """
    policer = build_policer(choice)
    tag_filter = TagFilter.compile(pattern, extract) if pattern or extract else None
    return apply_policy(tags, policer=policer, tag_filter=tag_filter)


def rejections_best_first(evaluation: Evaluation, choice: PolicyChoice) -> tuple[Rejection, ...]:
    """``evaluation.rejected`` ordered for people, as the candidates are: best first by
    the policy's own comparison where it can compare a tag (a semver version outside the
    range, a number), then the tags it cannot compare, byte-wise in the same direction.

    Only for display: the policies keep input order, which Flux's messages depend on
    (the numerical policy names the first non-numeric tag it met).
    """
    rejected = evaluation.rejected
    if choice.semver_range is not None:
        versions = [(v, r) for r in rejected if (v := tag_sort_key(r.value)) is not None]
        versions.sort(key=lambda item: item[0], reverse=True)
        ranked, reverse = [r for _, r in versions], True
    elif choice.numerical_order is not None:
        numbers = [(n, r) for r in rejected if (n := _number(r.value)) is not None]
        reverse = normalize_order(choice.numerical_order) != ORDER_DESC
        numbers.sort(key=lambda item: item[0], reverse=reverse)
        ranked = [r for _, r in numbers]
    else:
        ranked = []
        reverse = normalize_order(choice.alphabetical_order or "") != ORDER_DESC
    placed = {id(r) for r in ranked}
    rest = sorted((r for r in rejected if id(r) not in placed), key=lambda r: r.value,
                  reverse=reverse)
    return (*ranked, *rest)


def _number(value: str) -> float | None:
    try:
        number = parse_float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number
