"""Reconcile outcomes: the result type, typed errors and Flux's result finaliser.

The finaliser (:func:`finalize_result`, Flux ``runtime/reconcile.ResultFinalizer``) turns
what an inner reconcile left in ``status.conditions`` plus its outcome (a :class:`Result`
or an error) into a kstatus-compliant final status. It runs exactly once per reconcile,
after the inner steps, and its steps are applied in the contract's order because each
step reads the conditions the previous ones left.

Errors are classified by type, never by message:

* :class:`StallingError` -- the spec is wrong and retrying cannot help; the reconciler
  records Stalled and ends without an error (no requeue), see :func:`record_error`.
* :class:`WaitingError` -- a dependency is not ready yet; it is an error, so Ready=False
  and the item is retried (after ``requeue_after`` when set, otherwise with backoff).
* :class:`ReconcileError` -- any other failure with a specific Ready reason.
* Any other exception -- Ready=False with reason ``Failed`` and the exception text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from imagereflector.api.meta import (
    FAILED_REASON,
    PROGRESSING_WITH_RETRY_REASON,
    READY,
    RECONCILING,
    STALLED,
    SUCCEEDED_REASON,
    Condition,
)
from imagereflector.kube import conditions as cond

__all__ = [
    "Finalized",
    "ReadyFalseError",
    "ReconcileError",
    "Result",
    "StallingError",
    "SuccessPredicate",
    "WaitingError",
    "finalize_result",
    "record_error",
    "should_set_observed_generation",
    "succeeds_when_requeued_after",
    "succeeds_without_requeue",
]


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks of the queue (controller-runtime ``ctrl.Result``).

    ``requeue_after > 0`` requeues after that many seconds (and forgets past failures);
    ``requeue`` alone requeues with rate-limited backoff; the zero value requeues nothing.
    """

    requeue: bool = False
    requeue_after: float = 0.0

    def is_zero(self) -> bool:
        """Whether this is the empty result (no requeue of any kind)."""
        return not self.requeue and self.requeue_after == 0.0


SuccessPredicate = Callable[[Result, BaseException | None], bool]
"""Decides whether a reconcile's result and error mean success (Flux ``IsResultSuccess``)."""


def succeeds_when_requeued_after(interval: float) -> SuccessPredicate:
    """Success for periodic reconcilers: no error, no ``requeue``, and a requeue after
    exactly ``interval`` (the ImageRepository predicate with its next scan time)."""

    def is_success(result: Result, error: BaseException | None) -> bool:
        return error is None and not result.requeue and result.requeue_after == interval

    return is_success


def succeeds_without_requeue(result: Result, error: BaseException | None) -> bool:
    """Success for event-driven reconcilers: no error and no ``requeue`` (ImagePolicy)."""
    return error is None and not result.requeue


class ReconcileError(Exception):
    """A failure with the Ready reason that describes it (e.g. ``AuthenticationFailed``).

    ``str(err)`` is the condition message.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def message(self) -> str:
        """The condition message."""
        return str(self)


class StallingError(ReconcileError):
    """The object cannot be reconciled until its spec changes: Stalled, no retry."""


class WaitingError(ReconcileError):
    """A dependency is not ready: Ready=False and the reconcile is retried.

    ``requeue_after`` (seconds) asks for a retry after that delay instead of the
    rate-limited backoff; ``None`` keeps the backoff.
    """

    def __init__(self, message: str, *, reason: str, requeue_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.requeue_after = requeue_after


class ReadyFalseError(Exception):
    """Returned by the finaliser when a reconcile "succeeded" but left Ready=False: the
    Ready message becomes the error so the object is retried."""


def record_error(
    conditions: list[Condition], error: BaseException, *, generation: int, now: datetime
) -> BaseException | None:
    """Record a reconcile error in the conditions; return the error the finaliser gets.

    A :class:`StallingError` becomes Stalled=True with its reason and message and is
    swallowed (``None``: the reconcile ends without a retry). Another
    :class:`ReconcileError` becomes Ready=False with its reason and message and is
    returned. Any other exception is returned unchanged; the finaliser reports it as
    Ready=False ``Failed``.
    """
    if isinstance(error, StallingError):
        cond.mark_stalled(conditions, error.reason, error.message, generation=generation, now=now)
        return None
    if isinstance(error, ReconcileError):
        cond.mark_false(
            conditions, READY, error.reason, error.message, generation=generation, now=now
        )
    return error


@dataclass(frozen=True, slots=True)
class Finalized:
    """The outcome of :func:`finalize_result`."""

    error: BaseException | None
    """The error the reconcile returns (the input error, or a :class:`ReadyFalseError`)."""
    last_handled_reconcile_at: str | None
    """The value to store in ``status.lastHandledReconcileAt``; ``None`` leaves it as is."""


def finalize_result(
    conditions: list[Condition],
    *,
    result: Result,
    error: BaseException | None,
    is_success: SuccessPredicate,
    success_message: str,
    requested_at: str | None,
    generation: int,
    now: datetime,
) -> Finalized:
    """Compute the final conditions of a reconcile in place (contract §2.9, in order).

    ``requested_at`` is the ``reconcile.fluxcd.io/requestedAt`` annotation value, ``None``
    when the annotation is absent; it is handed back to be recorded even on failure.
    After the Flux steps, a Reconciling condition that is still True (and not Stalled) gets
    the reason ``ProgressingWithRetry``, message unchanged.
    """

    def mark_ready(status: str, reason: str, message: str) -> None:
        if status == "True":
            cond.mark_true(conditions, READY, reason, message, generation=generation, now=now)
        else:
            cond.mark_false(conditions, READY, reason, message, generation=generation, now=now)

    # A reconciler whose zero result is a success cannot tell "stalled" from "done" by the
    # result alone, so step 2 always runs for it.
    requeues_on_success = not is_success(Result(), None)
    success = is_success(result, error)

    # 1. An error means a retry will follow: not stalled.
    if error is not None:
        cond.delete(conditions, STALLED)

    # 2. Unsuccessful (or no-requeue kind): a non-zero result that would not succeed even
    #    without the error is a retry, not a stall; a remaining stall is mirrored in Ready.
    if not success or not requeues_on_success:
        if not result.is_zero() and not is_success(result, None):
            cond.delete(conditions, STALLED)
        stalled = cond.get(conditions, STALLED)
        overwrite_ready = cond.is_unknown(conditions, READY) or cond.is_true(conditions, READY)
        if stalled is not None and stalled.status == "True" and overwrite_ready:
            mark_ready("False", stalled.reason, stalled.message)

    # 3. Done, or stuck: either way nothing is in progress any more.
    if success or cond.is_true(conditions, STALLED):
        cond.delete(conditions, RECONCILING)

    # 4. An error turns Ready False, unless a specific Ready=False was already recorded.
    if error is not None and (
        cond.is_unknown(conditions, READY) or cond.is_true(conditions, READY)
    ):
        mark_ready("False", FAILED_REASON, str(error))

    # 5. A periodic reconciler that "succeeded" but left Ready=False fails with its message.
    if (
        success
        and requeues_on_success
        and cond.is_false(conditions, READY)
        and not cond.is_stalled(conditions)
    ):
        ready = cond.get(conditions, READY)
        error = ReadyFalseError(ready.message if ready is not None else "")

    # 6. Ready left unset by a successful, settled reconcile becomes True.
    if (
        cond.is_unknown(conditions, READY)
        and is_success(result, error)
        and not cond.is_reconciling(conditions)
        and not cond.is_stalled(conditions)
    ):
        mark_ready("True", SUCCEEDED_REASON, success_message)

    # 7. The annotation is recorded as handled whatever the outcome.
    finalized = Finalized(error=error, last_handled_reconcile_at=requested_at)

    # Then: still reconciling means a retry is coming; say so in the reason.
    reconciling = cond.get(conditions, RECONCILING)
    if reconciling is not None and cond.is_reconciling(conditions):
        cond.mark_true(
            conditions,
            RECONCILING,
            PROGRESSING_WITH_RETRY_REASON,
            reconciling.message,
            generation=generation,
            now=now,
        )
    return finalized


def should_set_observed_generation(conditions: Sequence[Condition]) -> bool:
    """Whether the final patch sets ``status.observedGeneration = metadata.generation``:
    only when the object is Ready or Stalled (kstatus definitions)."""
    return cond.is_ready(conditions) or cond.is_stalled(conditions)
