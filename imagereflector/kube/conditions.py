"""kstatus condition helpers over ``status.conditions`` (Flux ``runtime/conditions``).

All status changes of the reconcilers go through these functions, so the kstatus rules
hold in one place:

* Conditions are a plain ``list[Condition]`` (the status model's own list), changed in
  place like Flux's ``conditions.Setter``; the :class:`Condition` objects in it are never
  mutated, only replaced, so a snapshot taken with ``list(conditions)`` stays intact.
* :func:`set_condition` always records ``observedGeneration = generation``; it moves
  ``lastTransitionTime`` (UTC, truncated to seconds) only when status, reason or message
  change; it keeps the list sorted: Stalled, Reconciling, Ready first, then the others by
  observedGeneration (newest first) and type.
* :func:`mark_reconciling` deletes Stalled and :func:`mark_stalled` deletes Reconciling: the
  two are never present together.
* A condition that is absent counts as Unknown (:func:`is_unknown`).

:func:`kstatus_violations` is the checker the controller tests run on every status written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from imagereflector.api.meta import (
    PROGRESSING_REASON,
    READY,
    RECONCILING,
    STALLED,
    Condition,
    ConditionStatus,
)

__all__ = [
    "delete",
    "get",
    "has",
    "is_false",
    "is_ready",
    "is_reconciling",
    "is_stalled",
    "is_true",
    "is_unknown",
    "kstatus_violations",
    "mark_false",
    "mark_reconciling",
    "mark_stalled",
    "mark_true",
    "mark_unknown",
    "progressive_status",
    "set_condition",
]

# Conditions kubectl users look at first, in this order; the rest follow.
_WEIGHTS: Final = {STALLED: 0, RECONCILING: 1, READY: 2}
# Conditions whose True value means something is wrong (kstatus "negative polarity").
_NEGATIVE_POLARITY: Final = (STALLED, RECONCILING)


def get(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of ``type_``, or ``None`` if absent."""
    for condition in conditions:
        if condition.type == type_:
            return condition
    return None


def has(conditions: Sequence[Condition], type_: str) -> bool:
    """Whether a condition of ``type_`` is present, whatever its status."""
    return get(conditions, type_) is not None


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    """Whether the condition is present with status True."""
    condition = get(conditions, type_)
    return condition is not None and condition.status == "True"


def is_false(conditions: Sequence[Condition], type_: str) -> bool:
    """Whether the condition is present with status False."""
    condition = get(conditions, type_)
    return condition is not None and condition.status == "False"


def is_unknown(conditions: Sequence[Condition], type_: str) -> bool:
    """Whether the condition is Unknown **or absent**."""
    condition = get(conditions, type_)
    return condition is None or condition.status == "Unknown"


def is_ready(conditions: Sequence[Condition]) -> bool:
    """kstatus Ready: Ready=True and neither Reconciling nor Stalled is True."""
    return (
        is_true(conditions, READY)
        and not is_true(conditions, RECONCILING)
        and not is_true(conditions, STALLED)
    )


def is_stalled(conditions: Sequence[Condition]) -> bool:
    """kstatus Stalled: Stalled=True and Reconciling is not True."""
    return is_true(conditions, STALLED) and not is_true(conditions, RECONCILING)


def is_reconciling(conditions: Sequence[Condition]) -> bool:
    """kstatus Reconciling: Reconciling=True and Stalled is not True."""
    return is_true(conditions, RECONCILING) and not is_true(conditions, STALLED)


def _sort_key(condition: Condition) -> tuple[int, int, str]:
    weight = _WEIGHTS.get(condition.type)
    if weight is not None:
        return (weight, 0, "")
    return (len(_WEIGHTS), -condition.observed_generation, condition.type)


def _transition_time(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("condition times must be timezone-aware")
    return now.astimezone(UTC).replace(microsecond=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> None:
    """Set a condition in place with Kubernetes/Flux ``Set`` semantics.

    ``observedGeneration`` becomes ``generation``. ``lastTransitionTime`` becomes ``now``
    (UTC, whole seconds) for a new condition or a change of status, reason or message, and
    is kept otherwise. The list is re-sorted.
    """
    existing_index = next(
        (index for index, condition in enumerate(conditions) if condition.type == type_), None
    )
    existing = conditions[existing_index] if existing_index is not None else None
    if existing is not None and (existing.status, existing.reason, existing.message) == (
        status,
        reason,
        message,
    ):
        transition = existing.last_transition_time
    else:
        transition = _transition_time(now)
    condition = Condition(
        type=type_,
        status=status,
        observed_generation=generation,
        last_transition_time=transition,
        reason=reason,
        message=message,
    )
    if existing_index is None:
        conditions.append(condition)
    else:
        conditions[existing_index] = condition
    conditions.sort(key=_sort_key)


def mark_true(
    conditions: list[Condition],
    type_: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> None:
    """Set ``type_`` to True with ``reason`` and ``message``."""
    set_condition(conditions, type_, "True", reason, message, generation=generation, now=now)


def mark_false(
    conditions: list[Condition],
    type_: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> None:
    """Set ``type_`` to False with ``reason`` and ``message``."""
    set_condition(conditions, type_, "False", reason, message, generation=generation, now=now)


def mark_unknown(
    conditions: list[Condition],
    type_: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> None:
    """Set ``type_`` to Unknown with ``reason`` and ``message``."""
    set_condition(conditions, type_, "Unknown", reason, message, generation=generation, now=now)


def delete(conditions: list[Condition], type_: str) -> None:
    """Remove the condition of ``type_`` if present."""
    conditions[:] = [condition for condition in conditions if condition.type != type_]


def mark_reconciling(
    conditions: list[Condition], reason: str, message: str, *, generation: int, now: datetime
) -> None:
    """Set Reconciling=True and delete Stalled (work is under way, so nothing is stuck)."""
    delete(conditions, STALLED)
    mark_true(conditions, RECONCILING, reason, message, generation=generation, now=now)


def mark_stalled(
    conditions: list[Condition], reason: str, message: str, *, generation: int, now: datetime
) -> None:
    """Set Stalled=True and delete Reconciling (nothing will progress without a change)."""
    delete(conditions, RECONCILING)
    mark_true(conditions, STALLED, reason, message, generation=generation, now=now)


def progressive_status(
    conditions: list[Condition],
    message: str,
    *,
    generation: int,
    now: datetime,
    reason: str = PROGRESSING_REASON,
) -> None:
    """Report work in progress (Flux ``ProgressiveStatus`` without drift).

    Sets Reconciling=True (deleting Stalled); sets Ready=Unknown with the same reason and
    message only when Ready is absent or Unknown, so a True or False Ready stays visible
    while the object is reconciled.
    """
    mark_reconciling(conditions, reason, message, generation=generation, now=now)
    if is_unknown(conditions, READY):
        mark_unknown(conditions, READY, reason, message, generation=generation, now=now)


def kstatus_violations(
    conditions: Sequence[Condition],
    *,
    generation: int,
    observed_generation: int,
    in_progress: bool = False,
) -> list[str]:
    """The kstatus rules a status breaks (Flux ``conditions/check``); empty means compliant.

    ``generation`` is ``metadata.generation``, ``observed_generation`` is
    ``status.observedGeneration``. With ``in_progress`` the status is a mid-reconcile
    progress patch, which by design shows Reconciling=True next to an old Ready=True or a
    Ready=Unknown: the two rules tying Ready to the negative conditions are replaced by
    "Reconciling must be True". In a final status the rules "Ready=Unknown needs
    Reconciling=True" and "Reconciling=True needs Ready=False" together forbid Ready=Unknown.
    """
    violations: list[str] = []
    statuses = {condition.type: condition.status for condition in conditions}
    ready = statuses.get(READY)
    reconciling = statuses.get(RECONCILING)
    stalled = statuses.get(STALLED)
    if ready is None:
        violations.append("Ready condition must always be present")
    if reconciling is not None and stalled is not None:
        violations.append("Only one of Reconciling or Stalled may be present at a time")
    if in_progress and reconciling != "True":
        violations.append("Reconciling must be True while a reconcile is in progress")
    if not in_progress and reconciling == "True" and ready not in (None, "False"):
        violations.append("Ready must be False when Reconciling is True")
    if not in_progress and ready == "True":
        true_negative = [name for name in _NEGATIVE_POLARITY if statuses.get(name) == "True"]
        if true_negative:
            violations.append(
                f"Negative polarity conditions cannot be True when Ready is True: {true_negative}"
            )
    if stalled == "True" and ready not in (None, "False"):
        violations.append("Ready must be False when Stalled is True")
    if observed_generation > generation:
        violations.append(
            f"status.observedGeneration {observed_generation} must not exceed "
            f"metadata.generation {generation}"
        )
    if observed_generation < generation and is_ready(conditions):
        violations.append("Ready must not be True when observedGeneration < generation")
    if is_ready(conditions):
        stale = [
            condition.type
            for condition in conditions
            if condition.observed_generation != generation
            or condition.observed_generation != observed_generation
        ]
        if stale:
            violations.append(
                f"When Ready, every condition's observedGeneration must equal the "
                f"generation and status.observedGeneration: {stale}"
            )
    if ready == "Unknown" and reconciling != "True":
        violations.append("Ready may be Unknown only while Reconciling is True")
    return violations


def keep_transition_times(conditions: list[Condition], before: Sequence[Condition]) -> None:
    """Give each condition whose state did not change its earlier ``lastTransitionTime``.

    A reconcile deletes Ready and sets it again in the finaliser (as Flux does); without
    this, every no-op reconcile would move the time and cost a status patch for nothing.
    """
    earlier = {c.type: c for c in before}
    for index, condition in enumerate(conditions):
        old = earlier.get(condition.type)
        if old is not None and (old.status, old.reason, old.message) == (
                condition.status, condition.reason, condition.message) and (
                old.last_transition_time != condition.last_transition_time):
            conditions[index] = condition.model_copy(
                update={"last_transition_time": old.last_transition_time})
