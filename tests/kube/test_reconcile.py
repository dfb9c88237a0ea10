"""The result finaliser: every outcome row of contract §2.10 and §3.3, its step order, and
kstatus compliance of what it writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from imagereflector.api.meta import (
    ACCESS_DENIED_REASON,
    AUTHENTICATION_FAILED_REASON,
    DEPENDENCY_NOT_READY_REASON,
    FAILED_REASON,
    FAILURE_REASON,
    IMAGE_URL_INVALID_REASON,
    INVALID_POLICY_REASON,
    PROGRESS_MESSAGE,
    PROGRESSING_REASON,
    PROGRESSING_WITH_RETRY_REASON,
    READ_OPERATION_FAILED_REASON,
    READY,
    RECONCILING,
    STALLED,
    SUCCEEDED_REASON,
    Condition,
)
from imagereflector.kube import conditions as cond
from imagereflector.kube.reconcile import (
    Finalized,
    ReadyFalseError,
    ReconcileError,
    Result,
    StallingError,
    SuccessPredicate,
    WaitingError,
    finalize_result,
    record_error,
    should_set_observed_generation,
    succeeds_when_requeued_after,
    succeeds_without_requeue,
)

T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)
GENERATION = 2
INTERVAL = 3600.0

# What an inner reconcile does after the progressing mark: mutate conditions, then return
# its result or raise.
Step = Callable[[list[Condition]], Result]


@dataclass
class Outcome:
    conditions: list[Condition]
    finalized: Finalized
    observed_generation: int
    progress_snapshots: list[list[Condition]] = field(default_factory=list)


def run(
    step: Step,
    *,
    is_success: SuccessPredicate,
    success_message: str,
    existing: list[Condition] | None = None,
    observed_generation: int = 0,
    requested_at: str | None = None,
) -> Outcome:
    """One reconcile as the controllers do it: progressing mark, inner step, finaliser."""
    conditions = list(existing or [])
    cond.progressive_status(conditions, PROGRESS_MESSAGE, generation=GENERATION, now=T0)
    if observed_generation != GENERATION:
        cond.progressive_status(
            conditions,
            f"processing object: new generation {observed_generation} -> {GENERATION}",
            generation=GENERATION,
            now=T0,
        )
    snapshots = [list(conditions)]
    error: BaseException | None
    try:
        result, error = step(conditions), None
    except Exception as err:  # the outer shell hands every failure to the finaliser
        result = Result()
        error = record_error(conditions, err, generation=GENERATION, now=T1)
    finalized = finalize_result(
        conditions,
        result=result,
        error=error,
        is_success=is_success,
        success_message=success_message,
        requested_at=requested_at,
        generation=GENERATION,
        now=T1,
    )
    if should_set_observed_generation(conditions):
        observed_generation = GENERATION
    return Outcome(conditions, finalized, observed_generation, snapshots)


def ready_true(message: str = "successful scan: found 1 tags") -> Condition:
    return Condition(
        type=READY,
        status="True",
        observed_generation=1,
        last_transition_time=T0 - timedelta(days=1),
        reason=SUCCEEDED_REASON,
        message=message,
    )


def ready_false(reason: str, message: str) -> Condition:
    return Condition(
        type=READY,
        status="False",
        observed_generation=1,
        last_transition_time=T0 - timedelta(days=1),
        reason=reason,
        message=message,
    )


def summary(conditions: list[Condition]) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in conditions}


# --- step builders -----------------------------------------------------------------------


def succeed(requeue_after: float) -> Step:
    def step(conditions: list[Condition]) -> Result:
        cond.delete(conditions, READY)  # recomputed by the finaliser
        return Result(requeue_after=requeue_after)

    return step


def fail(error: Exception, *, progress: str | None = None) -> Step:
    def step(conditions: list[Condition]) -> Result:
        if progress is not None:
            cond.progressive_status(conditions, progress, generation=GENERATION, now=T0)
        raise error

    return step


def ready_false_success(reason: str, message: str) -> Step:
    def step(conditions: list[Condition]) -> Result:
        cond.mark_false(conditions, READY, reason, message, generation=GENERATION, now=T0)
        return Result()

    return step


# --- §2.10: ImageRepository --------------------------------------------------------------

SCAN_MESSAGE = "successful scan: found 3 tags"
RETRY = (
    "True",
    PROGRESSING_WITH_RETRY_REASON,
    f"processing object: new generation 0 -> {GENERATION}",
)
REPOSITORY_ROWS: list[tuple[str, Step, float, dict[str, tuple[str, str, str]], bool, bool]] = [
    # id, step, next scan time, final conditions, observedGeneration set, error returned
    (
        "scan-ok",
        succeed(INTERVAL),
        INTERVAL,
        {READY: ("True", SUCCEEDED_REASON, SCAN_MESSAGE)},
        True,
        False,
    ),
    (
        "no-op-ok",
        succeed(1234.5),
        1234.5,
        {READY: ("True", SUCCEEDED_REASON, SCAN_MESSAGE)},
        True,
        False,
    ),
    (
        "invalid-image",
        fail(StallingError("bad ref", reason=IMAGE_URL_INVALID_REASON)),
        INTERVAL,
        {
            STALLED: ("True", IMAGE_URL_INVALID_REASON, "bad ref"),
            READY: ("False", IMAGE_URL_INVALID_REASON, "bad ref"),
        },
        True,
        False,
    ),
    (
        "credentials",
        fail(
            ReconcileError(
                "failed to configure authentication options: secret not found",
                reason=AUTHENTICATION_FAILED_REASON,
            )
        ),
        INTERVAL,
        {
            RECONCILING: RETRY,
            READY: (
                "False",
                AUTHENTICATION_FAILED_REASON,
                "failed to configure authentication options: secret not found",
            ),
        },
        False,
        True,
    ),
    (
        "should-scan",
        fail(
            ReconcileError(
                "failed to determine if it's scan time: db closed", reason=FAILURE_REASON
            )
        ),
        INTERVAL,
        {
            RECONCILING: RETRY,
            READY: ("False", FAILURE_REASON, "failed to determine if it's scan time: db closed"),
        },
        False,
        True,
    ),
    (
        "scan-failed",
        fail(
            ReconcileError("scan failed: 404", reason=READ_OPERATION_FAILED_REASON),
            progress="scanning: first scan",
        ),
        INTERVAL,
        {
            RECONCILING: ("True", PROGRESSING_WITH_RETRY_REASON, "scanning: first scan"),
            READY: ("False", READ_OPERATION_FAILED_REASON, "scan failed: 404"),
        },
        False,
        True,
    ),
    (
        "patch-failed",
        fail(RuntimeError("conflict while patching")),
        INTERVAL,
        {RECONCILING: RETRY, READY: ("False", FAILED_REASON, "conflict while patching")},
        False,
        True,
    ),
]


@pytest.mark.parametrize(
    ("step", "next_scan", "expected", "observed_set", "errors"),
    [row[1:] for row in REPOSITORY_ROWS],
    ids=[row[0] for row in REPOSITORY_ROWS],
)
def test_image_repository_outcomes(
    step: Step,
    next_scan: float,
    expected: dict[str, tuple[str, str, str]],
    observed_set: bool,
    errors: bool,
) -> None:
    outcome = run(
        step, is_success=succeeds_when_requeued_after(next_scan), success_message=SCAN_MESSAGE
    )
    assert summary(outcome.conditions) == expected
    assert (outcome.observed_generation == GENERATION) is observed_set
    assert (outcome.finalized.error is not None) is errors
    assert (
        cond.kstatus_violations(
            outcome.conditions,
            generation=GENERATION,
            observed_generation=outcome.observed_generation,
        )
        == []
    )
    for snapshot in outcome.progress_snapshots:
        assert (
            cond.kstatus_violations(
                snapshot, generation=GENERATION, observed_generation=0, in_progress=True
            )
            == []
        )


@pytest.mark.parametrize(
    ("step", "expected_ready"),
    [
        (
            fail(StallingError("bad ref", reason=IMAGE_URL_INVALID_REASON)),
            ("False", AUTHENTICATION_FAILED_REASON, "old failure"),
        ),
        (
            fail(ReconcileError("scan failed: 500", reason=READ_OPERATION_FAILED_REASON)),
            ("False", READ_OPERATION_FAILED_REASON, "scan failed: 500"),
        ),
        (
            fail(RuntimeError("conflict")),
            ("False", AUTHENTICATION_FAILED_REASON, "old failure"),
        ),
    ],
    ids=["stalled-keeps-older-ready-false", "specific-reason-replaces", "error-keeps-ready-false"],
)
def test_an_earlier_ready_false_is_preserved(
    step: Step, expected_ready: tuple[str, str, str]
) -> None:
    outcome = run(
        step,
        is_success=succeeds_when_requeued_after(INTERVAL),
        success_message=SCAN_MESSAGE,
        existing=[ready_false(AUTHENTICATION_FAILED_REASON, "old failure")],
        observed_generation=1,
    )
    assert summary(outcome.conditions)[READY] == expected_ready


@pytest.mark.parametrize(
    "step",
    [
        fail(ReconcileError("scan failed: 500", reason=READ_OPERATION_FAILED_REASON)),
        fail(RuntimeError("conflict")),
    ],
    ids=["specific", "generic"],
)
def test_failure_of_a_ready_object_turns_ready_false(step: Step) -> None:
    outcome = run(
        step,
        is_success=succeeds_when_requeued_after(INTERVAL),
        success_message=SCAN_MESSAGE,
        existing=[ready_true()],
        observed_generation=GENERATION,
    )
    assert cond.is_false(outcome.conditions, READY)
    assert cond.is_reconciling(outcome.conditions)
    assert outcome.observed_generation == GENERATION  # unchanged, never moved backwards
    # The progress patch of an existing object shows Reconciling next to the old Ready=True.
    (snapshot,) = outcome.progress_snapshots
    assert cond.is_true(snapshot, READY)
    assert cond.is_true(snapshot, RECONCILING)


# --- §3.3: ImagePolicy -------------------------------------------------------------------

POLICY_MESSAGE = "Latest image tag for 'ghcr.io/a/b' resolved to 1.0.1"
POLICY_ROWS: list[tuple[str, Step, dict[str, tuple[str, str, str]], bool, bool]] = [
    # id, step, final conditions, observedGeneration set, error returned
    (
        "success",
        succeed(0.0),
        {READY: ("True", SUCCEEDED_REASON, POLICY_MESSAGE)},
        True,
        False,
    ),
    (
        "repo-not-found",
        fail(
            WaitingError(
                "failed to get the referred ImageRepository: gone",
                reason=DEPENDENCY_NOT_READY_REASON,
            )
        ),
        {
            RECONCILING: RETRY,
            READY: (
                "False",
                DEPENDENCY_NOT_READY_REASON,
                "failed to get the referred ImageRepository: gone",
            ),
        },
        False,
        True,
    ),
    (
        "access-denied",
        fail(ReconcileError("access denied: no ACL", reason=ACCESS_DENIED_REASON)),
        {RECONCILING: RETRY, READY: ("False", ACCESS_DENIED_REASON, "access denied: no ACL")},
        False,
        True,
    ),
    (
        "repo-never-scanned",
        ready_false_success(
            DEPENDENCY_NOT_READY_REASON, "referenced ImageRepository has not been scanned yet"
        ),
        {
            READY: (
                "False",
                DEPENDENCY_NOT_READY_REASON,
                "referenced ImageRepository has not been scanned yet",
            )
        },
        False,
        False,
    ),
    (
        "invalid-policy",
        fail(
            StallingError("invalid policy: improper constraint: *-*", reason=INVALID_POLICY_REASON)
        ),
        {
            STALLED: ("True", INVALID_POLICY_REASON, "invalid policy: improper constraint: *-*"),
            READY: ("False", INVALID_POLICY_REASON, "invalid policy: improper constraint: *-*"),
        },
        True,
        False,
    ),
    (
        "no-tags",
        fail(WaitingError("no tags in database", reason=DEPENDENCY_NOT_READY_REASON)),
        {RECONCILING: RETRY, READY: ("False", DEPENDENCY_NOT_READY_REASON, "no tags in database")},
        False,
        True,
    ),
    (
        "no-match",
        fail(
            ReconcileError(
                "unable to determine latest version from provided list", reason=FAILURE_REASON
            )
        ),
        {
            RECONCILING: RETRY,
            READY: (
                "False",
                FAILURE_REASON,
                "unable to determine latest version from provided list",
            ),
        },
        False,
        True,
    ),
]


@pytest.mark.parametrize(
    ("step", "expected", "observed_set", "errors"),
    [row[1:] for row in POLICY_ROWS],
    ids=[row[0] for row in POLICY_ROWS],
)
def test_image_policy_outcomes(
    step: Step,
    expected: dict[str, tuple[str, str, str]],
    observed_set: bool,
    errors: bool,
) -> None:
    outcome = run(step, is_success=succeeds_without_requeue, success_message=POLICY_MESSAGE)
    assert summary(outcome.conditions) == expected
    assert (outcome.observed_generation == GENERATION) is observed_set
    assert (outcome.finalized.error is not None) is errors
    assert (
        cond.kstatus_violations(
            outcome.conditions,
            generation=GENERATION,
            observed_generation=outcome.observed_generation,
        )
        == []
    )


# --- step order and the rarer branches ---------------------------------------------------


def finalize(
    conditions: list[Condition],
    *,
    result: Result = Result(),  # noqa: B008 -- frozen value
    error: BaseException | None = None,
    is_success: SuccessPredicate = succeeds_without_requeue,
    requested_at: str | None = None,
) -> Finalized:
    return finalize_result(
        conditions,
        result=result,
        error=error,
        is_success=is_success,
        success_message="done",
        requested_at=requested_at,
        generation=GENERATION,
        now=T1,
    )


def stalled_conditions() -> list[Condition]:
    conditions: list[Condition] = []
    cond.mark_stalled(conditions, INVALID_POLICY_REASON, "bad", generation=GENERATION, now=T0)
    return conditions


def test_error_removes_stalled_before_ready_mirrors_it() -> None:
    conditions = stalled_conditions()
    finalized = finalize(conditions, error=RuntimeError("boom"))
    assert summary(conditions) == {READY: ("False", FAILED_REASON, "boom")}
    assert isinstance(finalized.error, RuntimeError)


def test_non_zero_result_that_cannot_succeed_is_not_a_stall() -> None:
    conditions = stalled_conditions()
    cond.progressive_status(conditions, "again", generation=GENERATION, now=T0)
    cond.mark_stalled(conditions, INVALID_POLICY_REASON, "bad", generation=GENERATION, now=T0)
    finalize(conditions, result=Result(requeue=True))
    assert not cond.has(conditions, STALLED)
    # Flux leaves Ready as it was (Unknown) here: no error, no success, no stall.
    assert cond.is_unknown(conditions, READY)


def test_no_requeue_reconciler_mirrors_a_stall_even_on_success() -> None:
    conditions = stalled_conditions()
    finalized = finalize(conditions, is_success=succeeds_without_requeue)
    assert summary(conditions) == {
        STALLED: ("True", INVALID_POLICY_REASON, "bad"),
        READY: ("False", INVALID_POLICY_REASON, "bad"),
    }
    assert finalized.error is None


def test_interval_zero_repository_is_a_no_requeue_reconciler() -> None:
    conditions = stalled_conditions()
    finalize(conditions, is_success=succeeds_when_requeued_after(0.0))
    assert cond.is_false(conditions, READY)
    assert cond.is_stalled(conditions)


def test_periodic_success_with_ready_false_returns_ready_message_as_error() -> None:
    conditions: list[Condition] = []
    cond.progressive_status(conditions, PROGRESS_MESSAGE, generation=GENERATION, now=T0)
    cond.mark_false(conditions, READY, FAILURE_REASON, "odd", generation=GENERATION, now=T0)
    finalized = finalize(
        conditions,
        result=Result(requeue_after=INTERVAL),
        is_success=succeeds_when_requeued_after(INTERVAL),
    )
    assert isinstance(finalized.error, ReadyFalseError)
    assert str(finalized.error) == "odd"
    assert summary(conditions) == {READY: ("False", FAILURE_REASON, "odd")}


def test_success_keeps_an_existing_ready_true_message() -> None:
    conditions = [ready_true("kept")]
    cond.progressive_status(conditions, PROGRESS_MESSAGE, generation=GENERATION, now=T0)
    finalize(conditions)
    assert summary(conditions) == {READY: ("True", SUCCEEDED_REASON, "kept")}


def test_progressing_with_retry_keeps_message_and_moves_transition_time() -> None:
    conditions: list[Condition] = []
    cond.progressive_status(conditions, "scanning: first scan", generation=GENERATION, now=T0)
    finalize(conditions, error=RuntimeError("x"))
    reconciling = cond.get(conditions, RECONCILING)
    assert reconciling is not None
    assert (reconciling.reason, reconciling.message) == (
        PROGRESSING_WITH_RETRY_REASON,
        "scanning: first scan",
    )
    assert reconciling.last_transition_time == T1


def test_progressing_reason_is_only_rewritten_while_reconciling() -> None:
    conditions: list[Condition] = []
    cond.progressive_status(conditions, PROGRESS_MESSAGE, generation=GENERATION, now=T0)
    finalize(conditions)
    assert not cond.has(conditions, RECONCILING)
    assert PROGRESSING_REASON not in {c.reason for c in conditions}


@pytest.mark.parametrize(
    ("requested_at", "error"),
    [
        ("token-1", None),
        ("token-2", RuntimeError("scan failed")),
        ("", None),
        (None, None),
    ],
    ids=["success", "failure", "empty-annotation", "absent"],
)
def test_requested_at_is_handed_back_whatever_the_outcome(
    requested_at: str | None, error: BaseException | None
) -> None:
    conditions: list[Condition] = []
    cond.progressive_status(conditions, PROGRESS_MESSAGE, generation=GENERATION, now=T0)
    finalized = finalize(conditions, error=error, requested_at=requested_at)
    assert finalized.last_handled_reconcile_at == requested_at


# --- small pieces ------------------------------------------------------------------------


def test_result_zero() -> None:
    assert Result().is_zero()
    assert not Result(requeue=True).is_zero()
    assert not Result(requeue_after=1.0).is_zero()


def test_success_predicates() -> None:
    periodic = succeeds_when_requeued_after(60.0)
    assert periodic(Result(requeue_after=60.0), None)
    assert not periodic(Result(), None)
    assert not periodic(Result(requeue_after=60.0), RuntimeError())
    assert not periodic(Result(requeue=True, requeue_after=60.0), None)
    assert succeeds_without_requeue(Result(), None)
    assert succeeds_without_requeue(Result(requeue_after=5.0), None)
    assert not succeeds_without_requeue(Result(requeue=True), None)
    assert not succeeds_without_requeue(Result(), RuntimeError())


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({READY: "True"}, True),
        ({STALLED: "True", READY: "False"}, True),
        ({RECONCILING: "True", READY: "True"}, False),
        ({READY: "False"}, False),
        ({}, False),
    ],
    ids=["ready", "stalled", "reconciling", "failed", "empty"],
)
def test_should_set_observed_generation(statuses: dict[str, str], expected: bool) -> None:
    conditions: list[Condition] = []
    for type_, status in statuses.items():
        if status == "True":
            cond.mark_true(conditions, type_, "R", "m", generation=1, now=T0)
        else:
            cond.mark_false(conditions, type_, "R", "m", generation=1, now=T0)
    assert should_set_observed_generation(conditions) is expected


def test_record_error_classifies_by_type() -> None:
    conditions: list[Condition] = []
    stall = StallingError("bad spec", reason=INVALID_POLICY_REASON)
    assert record_error(conditions, stall, generation=1, now=T0) is None
    assert summary(conditions) == {STALLED: ("True", INVALID_POLICY_REASON, "bad spec")}

    conditions = []
    waiting = WaitingError("not yet", reason=DEPENDENCY_NOT_READY_REASON, requeue_after=30.0)
    assert record_error(conditions, waiting, generation=1, now=T0) is waiting
    assert waiting.requeue_after == 30.0
    assert summary(conditions) == {READY: ("False", DEPENDENCY_NOT_READY_REASON, "not yet")}

    conditions = []
    plain = RuntimeError("boom")
    assert record_error(conditions, plain, generation=1, now=T0) is plain
    assert conditions == []


def test_stall_removes_a_reconciling_condition_left_next_to_it() -> None:
    # A status written by something else can carry both; the finaliser settles on Stalled.
    conditions: list[Condition] = []
    cond.mark_true(conditions, RECONCILING, PROGRESSING_REASON, "x", generation=GENERATION, now=T0)
    cond.mark_true(conditions, STALLED, INVALID_POLICY_REASON, "bad", generation=GENERATION, now=T0)
    finalize(conditions, is_success=succeeds_when_requeued_after(INTERVAL))
    assert summary(conditions) == {
        STALLED: ("True", INVALID_POLICY_REASON, "bad"),
        READY: ("False", INVALID_POLICY_REASON, "bad"),
    }


def test_stalled_periodic_success_is_not_turned_into_an_error() -> None:
    conditions = stalled_conditions()
    cond.mark_false(conditions, READY, INVALID_POLICY_REASON, "bad", generation=GENERATION, now=T0)
    finalized = finalize(
        conditions,
        result=Result(requeue_after=INTERVAL),
        is_success=succeeds_when_requeued_after(INTERVAL),
    )
    assert finalized.error is None
    assert cond.is_stalled(conditions)
