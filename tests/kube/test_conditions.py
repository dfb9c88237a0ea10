"""Condition helpers: Set semantics, ordering, kstatus predicates and the kstatus checker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imagereflector.api.meta import (
    PROGRESS_MESSAGE,
    PROGRESSING_REASON,
    READY,
    RECONCILING,
    STALLED,
    Condition,
    ConditionStatus,
)
from imagereflector.kube import conditions as cond

T0 = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T0_SECONDS = T0.replace(microsecond=0)
T1 = T0 + timedelta(minutes=5)


def make(type_: str, status: ConditionStatus, *, generation: int = 1) -> Condition:
    return Condition(
        type=type_,
        status=status,
        observed_generation=generation,
        last_transition_time=T0_SECONDS,
        reason="Reason",
        message="message",
    )


def test_get_has_and_status_predicates() -> None:
    conditions = [make(READY, "True"), make("Other", "False")]
    assert cond.get(conditions, READY) is conditions[0]
    assert cond.get(conditions, STALLED) is None
    assert cond.has(conditions, "Other")
    assert not cond.has(conditions, STALLED)
    assert cond.is_true(conditions, READY)
    assert cond.is_false(conditions, "Other")
    assert not cond.is_unknown(conditions, READY)


def test_absent_condition_counts_as_unknown_not_true_or_false() -> None:
    assert cond.is_unknown([], READY)
    assert not cond.is_true([], READY)
    assert not cond.is_false([], READY)
    assert cond.is_unknown([make(READY, "Unknown")], READY)


def test_set_new_condition_records_generation_and_truncated_utc_time() -> None:
    conditions: list[Condition] = []
    local = T0.astimezone(timezone(timedelta(hours=2)))
    cond.set_condition(conditions, READY, "True", "Succeeded", "ok", generation=3, now=local)
    (ready,) = conditions
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        READY,
        "True",
        "Succeeded",
        "ok",
    )
    assert ready.observed_generation == 3
    assert ready.last_transition_time == T0_SECONDS
    assert ready.last_transition_time.utcoffset() == timedelta(0)


def test_set_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cond.mark_true([], READY, "R", "m", generation=1, now=datetime(2024, 1, 1))


def test_set_same_state_keeps_transition_time_but_updates_generation() -> None:
    conditions: list[Condition] = []
    cond.mark_true(conditions, READY, "Succeeded", "ok", generation=1, now=T0)
    cond.mark_true(conditions, READY, "Succeeded", "ok", generation=2, now=T1)
    (ready,) = conditions
    assert ready.last_transition_time == T0_SECONDS
    assert ready.observed_generation == 2


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [("False", "Succeeded", "ok"), ("True", "Other", "ok"), ("True", "Succeeded", "changed")],
    ids=["status", "reason", "message"],
)
def test_set_changed_state_moves_transition_time(
    status: ConditionStatus, reason: str, message: str
) -> None:
    conditions: list[Condition] = []
    cond.mark_true(conditions, READY, "Succeeded", "ok", generation=1, now=T0)
    cond.set_condition(conditions, READY, status, reason, message, generation=1, now=T1)
    (ready,) = conditions
    assert ready.last_transition_time == T1.replace(microsecond=0)
    assert (ready.status, ready.reason, ready.message) == (status, reason, message)


def test_set_replaces_the_condition_object_instead_of_mutating_it() -> None:
    conditions: list[Condition] = []
    cond.mark_true(conditions, READY, "Succeeded", "ok", generation=1, now=T0)
    snapshot = list(conditions)
    cond.mark_false(conditions, READY, "Failed", "boom", generation=1, now=T1)
    assert snapshot[0].status == "True"
    assert conditions[0].status == "False"


def test_conditions_are_sorted_owned_first_then_generation_then_type() -> None:
    conditions: list[Condition] = []
    cond.mark_true(conditions, "Zeta", "R", "m", generation=5, now=T0)
    cond.mark_true(conditions, "Alpha", "R", "m", generation=5, now=T0)
    cond.mark_true(conditions, "Old", "R", "m", generation=1, now=T0)
    cond.mark_true(conditions, READY, "R", "m", generation=1, now=T0)
    cond.mark_true(conditions, RECONCILING, "R", "m", generation=1, now=T0)
    cond.mark_true(conditions, "New", "R", "m", generation=9, now=T0)
    assert [c.type for c in conditions] == [RECONCILING, READY, "New", "Alpha", "Zeta", "Old"]
    cond.mark_stalled(conditions, "R", "m", generation=1, now=T0)
    assert [c.type for c in conditions][:2] == [STALLED, READY]


def test_delete_removes_only_that_type() -> None:
    conditions = [make(READY, "True"), make("Other", "True")]
    cond.delete(conditions, READY)
    cond.delete(conditions, STALLED)
    assert [c.type for c in conditions] == ["Other"]


def test_mark_reconciling_deletes_stalled_and_mark_stalled_deletes_reconciling() -> None:
    conditions: list[Condition] = []
    cond.mark_stalled(conditions, "Invalid", "bad", generation=1, now=T0)
    cond.mark_reconciling(conditions, PROGRESSING_REASON, "go", generation=1, now=T0)
    assert [c.type for c in conditions] == [RECONCILING]
    cond.mark_stalled(conditions, "Invalid", "bad", generation=1, now=T0)
    assert [c.type for c in conditions] == [STALLED]


@pytest.mark.parametrize(
    ("ready", "expected_ready"),
    [
        (None, ("Unknown", PROGRESSING_REASON, PROGRESS_MESSAGE)),
        ("Unknown", ("Unknown", PROGRESSING_REASON, PROGRESS_MESSAGE)),
        ("True", ("True", "Reason", "message")),
        ("False", ("False", "Reason", "message")),
    ],
    ids=["absent", "unknown", "true-kept", "false-kept"],
)
def test_progressive_status(
    ready: ConditionStatus | None, expected_ready: tuple[str, str, str]
) -> None:
    conditions = [make(STALLED, "True")] + ([make(READY, ready)] if ready else [])
    cond.progressive_status(conditions, PROGRESS_MESSAGE, generation=2, now=T1)
    reconciling = cond.get(conditions, RECONCILING)
    got_ready = cond.get(conditions, READY)
    assert reconciling is not None
    assert got_ready is not None
    assert (reconciling.status, reconciling.reason, reconciling.message) == (
        "True",
        PROGRESSING_REASON,
        PROGRESS_MESSAGE,
    )
    assert (got_ready.status, got_ready.reason, got_ready.message) == expected_ready
    assert not cond.has(conditions, STALLED)


@pytest.mark.parametrize(
    ("statuses", "ready", "stalled", "reconciling"),
    [
        ({READY: "True"}, True, False, False),
        ({READY: "True", RECONCILING: "True"}, False, False, True),
        ({READY: "True", STALLED: "True"}, False, True, False),
        ({READY: "False", STALLED: "True", RECONCILING: "True"}, False, False, False),
        ({READY: "True", RECONCILING: "False"}, True, False, False),
        ({}, False, False, False),
    ],
    ids=["ready", "reconciling", "stalled", "both", "reconciling-false", "empty"],
)
def test_kstatus_predicates(
    statuses: dict[str, ConditionStatus], ready: bool, stalled: bool, reconciling: bool
) -> None:
    conditions = [make(type_, status) for type_, status in statuses.items()]
    assert cond.is_ready(conditions) is ready
    assert cond.is_stalled(conditions) is stalled
    assert cond.is_reconciling(conditions) is reconciling


# --- the kstatus checker -----------------------------------------------------------------

CHECKS = [
    ("ready-ok", {READY: "True"}, 1, 1, False, []),
    ("failing-retry-ok", {READY: "False", RECONCILING: "True"}, 2, 1, False, []),
    ("stalled-ok", {READY: "False", STALLED: "True"}, 2, 2, False, []),
    ("no-ready", {}, 1, 1, False, ["Ready condition must always be present"]),
    (
        "both-negative",
        {READY: "False", RECONCILING: "True", STALLED: "True"},
        1,
        1,
        False,
        ["Only one of Reconciling or Stalled"],
    ),
    (
        "reconciling-ready-true",
        {READY: "True", RECONCILING: "True"},
        1,
        1,
        False,
        ["Ready must be False when Reconciling", "Negative polarity"],
    ),
    (
        "stalled-ready-true",
        {READY: "True", STALLED: "True"},
        1,
        1,
        False,
        ["Negative polarity", "Ready must be False when Stalled"],
    ),
    (
        "observed-ahead",
        {READY: "False"},
        1,
        2,
        False,
        ["must not exceed metadata.generation"],
    ),
    (
        "ready-but-behind",
        {READY: "True"},
        2,
        1,
        False,
        ["observedGeneration < generation", "must equal the generation and status"],
    ),
    (
        "unknown-without-reconciling",
        {READY: "Unknown"},
        1,
        0,
        False,
        ["Ready may be Unknown only while Reconciling"],
    ),
    (
        "unknown-in-final-status",
        {READY: "Unknown", RECONCILING: "True"},
        1,
        0,
        False,
        ["Ready must be False when Reconciling"],
    ),
    ("progress-new-object", {READY: "Unknown", RECONCILING: "True"}, 1, 0, True, []),
    ("progress-existing-ready", {READY: "True", RECONCILING: "True"}, 2, 1, True, []),
    (
        "progress-without-reconciling",
        {READY: "True"},
        1,
        1,
        True,
        ["Reconciling must be True"],
    ),
]


@pytest.mark.parametrize(
    ("statuses", "generation", "observed", "in_progress", "expected"),
    [case[1:] for case in CHECKS],
    ids=[case[0] for case in CHECKS],
)
def test_kstatus_violations(
    statuses: dict[str, ConditionStatus],
    generation: int,
    observed: int,
    in_progress: bool,
    expected: list[str],
) -> None:
    conditions = [make(type_, status, generation=generation) for type_, status in statuses.items()]
    violations = cond.kstatus_violations(
        conditions, generation=generation, observed_generation=observed, in_progress=in_progress
    )
    assert len(violations) == len(expected), violations
    for violation, fragment in zip(violations, expected, strict=True):
        assert fragment in violation


def test_kstatus_ready_needs_every_condition_at_the_current_generation() -> None:
    conditions = [make(READY, "True", generation=2), make("Other", "True", generation=1)]
    violations = cond.kstatus_violations(conditions, generation=2, observed_generation=2)
    assert len(violations) == 1
    assert "['Other']" in violations[0]


def test_keep_transition_times_only_for_unchanged_state() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 1, 2, tzinfo=UTC)

    def make(type_: str, message: str, when: datetime) -> Condition:
        return Condition(type=type_, status="True", reason="Succeeded", message=message,
                         observed_generation=1, last_transition_time=when)

    before = [make("Ready", "found 2 tags", early), make("Other", "a", early)]
    after = [make("Ready", "found 2 tags", late), make("Other", "b", late)]
    cond.keep_transition_times(after, before)
    assert [c.last_transition_time for c in after] == [early, late]
