"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Role: decide which of several replicas reconciles. One :class:`LeaderElector` per process
runs :meth:`LeaderElector.run`; the manager starts its controllers once
:meth:`LeaderElector.wait_leading` returns ``True`` and exits non-zero when ``run`` raises
:class:`LeadershipLostError` (what controller-runtime does, so the Pod restarts and joins
the election again instead of running controllers it may no longer own).

The algorithm is client-go's ``tools/leaderelection`` with a ``LeaseLock``:

- An attempt (:meth:`LeaderElector.try_acquire_or_renew`) reads the Lease, creates it when
  missing, and writes ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
  ``renewTime`` (MicroTime, RFC 3339 with microseconds) and ``leaseTransitions`` (+1 when
  the holder changes). The leader first tries a blind update on the object it last wrote
  and reads only when that fails.
- A Lease held by someone else is taken over only when it has not *changed* for its
  ``leaseDurationSeconds`` as measured on this process's monotonic clock from the moment
  this process observed the change. The record's own timestamps are never compared with
  local time: they were written by another node's clock.
- Every write carries the ``resourceVersion`` last read, so two candidates racing for an
  expired Lease cannot both win: the loser gets 409 and stays a candidate.
- Candidates retry every ``retry_period`` stretched by up to 120 % jitter (client-go's
  ``JitterFactor``); the leader renews every ``retry_period`` without jitter.

Invariants:

- ``lease_duration > renew_deadline > 1.2 * retry_period > 0`` (checked on construction,
  as ``NewLeaderElector`` does). The leader gives up when it has not renewed within
  ``renew_deadline`` of the start of its last successful renewal; since a standby waits
  ``lease_duration`` from a later observation, the old leader has stopped before the new
  one can start. client-go measures the deadline from the start of each renewal round,
  which can reach ``retry_period + renew_deadline`` (= the lease duration with the
  defaults); measuring from the last success keeps the promised margin.
- An attempt cut off by the renew deadline is cancelled (like client-go's context), so a
  hanging API server cannot stretch leadership past the deadline.
- A renewal that finds another holder in the Lease ends leadership at once rather than
  polling until the deadline: someone else already believes it leads.
- ``is_leader`` is true exactly between a successful acquisition and the loss, release or
  stop; ``on_change`` and the status hook see each transition once, in order.
- Setting the ``stop`` event ends ``run`` normally; with ``release_on_cancel`` a held Lease
  is first released (empty holder, ``leaseDurationSeconds: 1``) so a standby takes over at
  its next retry. Cancelling the task running ``run`` stops without releasing: a cancelled
  task must not wait on the network. Loss also releases when the Lease is still ours, as
  client-go does, guarded by the resourceVersion so a new holder is never overwritten.
- All timing goes through the injected :class:`~imagereflector.kube.workqueue.Clock`
  (monotonic ``now`` and timers) and the wall clock only stamps the record, so tests move
  time without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Protocol

from imagereflector.kube.client import ApiError, ConflictError, JSONObject, NotFoundError, jittered
from imagereflector.kube.workqueue import LOOP_CLOCK, Clock, TimerHandle

__all__ = [
    "JITTER_FACTOR",
    "LeaderElectionRecord",
    "LeaderElector",
    "LeadershipLostError",
    "LeaseClient",
    "default_identity",
    "micro_time",
]

_log = logging.getLogger(__name__)

JITTER_FACTOR: Final = 1.2
"""client-go's ``JitterFactor``: candidates wait ``retry_period * [1, 2.2]`` between tries."""


class LeaseClient(Protocol):
    """The part of :class:`~imagereflector.kube.client.KubeClient` the elector uses."""

    async def get_lease(self, namespace: str, name: str) -> JSONObject:
        """GET the Lease; raises ``NotFoundError`` when it does not exist."""
        ...

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> JSONObject:
        """Create the Lease; raises ``ConflictError`` when it already exists."""
        ...

    async def update_lease(self, namespace: str, lease: Mapping[str, Any]) -> JSONObject:
        """PUT the Lease; raises ``ConflictError`` when its resourceVersion is stale."""
        ...


class LeadershipLostError(Exception):
    """Raised by :meth:`LeaderElector.run` when a leader could not keep its Lease."""


def default_identity() -> str:
    """``<hostname>_<random uuid>``, controller-runtime's identity for a process.

    The uuid makes a restarted Pod (same hostname) a new candidate, so it never mistakes
    the previous incarnation's Lease for its own.
    """
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(moment: datetime) -> str:
    """A ``metav1.MicroTime`` string: RFC 3339 in UTC with exactly six fractional digits."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LeaderElectionRecord:
    """The election fields of a Lease's spec (client-go's ``LeaderElectionRecord``)."""

    holder_identity: str
    lease_duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    leader_transitions: int

    @classmethod
    def from_spec(cls, spec: object) -> LeaderElectionRecord:
        """Read a Lease spec; absent or mistyped fields read as Go's zero values."""
        fields: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}

        def _int(key: str) -> int:
            value = fields.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        def _str(key: str) -> str | None:
            value = fields.get(key)
            return value if isinstance(value, str) else None

        return cls(
            holder_identity=_str("holderIdentity") or "",
            lease_duration_seconds=_int("leaseDurationSeconds"),
            acquire_time=_str("acquireTime"),
            renew_time=_str("renewTime"),
            leader_transitions=_int("leaseTransitions"),
        )

    def to_spec(self) -> JSONObject:
        """The Lease spec for this record (client-go's ``LeaderElectionRecordToLeaseSpec``)."""
        spec: JSONObject = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.leader_transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


class _Deadline:
    """``asyncio.timeout`` on an injected clock: cancels the body at ``when``.

    The expiry cancels the current task and is turned back into :class:`TimeoutError` on
    exit; a cancellation from elsewhere still propagates (counted with ``uncancel``, as
    ``asyncio.timeout`` does).
    """

    def __init__(self, clock: Clock, when: float) -> None:
        self._clock = clock
        self._when = when
        self._task: asyncio.Task[Any] | None = None
        self._handle: TimerHandle | None = None
        self._cancelling = 0
        self._expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._clock.call_at(self._when, self._expire)

    def _expire(self) -> None:
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LeaderElector:
    """Campaign for one Lease and hold it while :meth:`run` runs.

    Usage (the manager)::

        elector = LeaderElector(client, namespace=ns, name=settings.leader_election_id(),
                                identity=default_identity(), ...)
        election = asyncio.create_task(elector.run(stop), name="leader-election")
        if await elector.wait_leading():
            ...  # start informers and workers

    ``run`` may be called once per elector.
    """

    def __init__(
        self,
        client: LeaseClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 35.0,
        renew_deadline: float = 30.0,
        retry_period: float = 5.0,
        release_on_cancel: bool = True,
        clock: Clock = LOOP_CLOCK,
        wall_clock: Callable[[], datetime] = _utc_now,
        on_change: Callable[[bool], None] | None = None,
        report_status: Callable[[str, bool], None] | None = None,
    ) -> None:
        """Check the timings as client-go does; nothing is sent before :meth:`run`.

        ``on_change(leading)`` is called on every change of :attr:`is_leader`;
        ``report_status(name, leading)`` feeds ``leader_election_master_status{name}`` and is
        also called with ``False`` when ``run`` starts, so a standby reports 0.
        """
        if not identity:
            raise ValueError("leader election identity must not be empty")
        if not namespace or not name:
            raise ValueError("leader election needs a Lease namespace and name")
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        if retry_period <= 0:
            raise ValueError("retryPeriod must be greater than zero")
        if int(lease_duration) < 1:
            raise ValueError("leaseDuration must be at least one second")
        self._client = client
        self._namespace = namespace
        self._name = name
        self._identity = identity
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._release_on_cancel = release_on_cancel
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_change = on_change
        self._report_status = report_status
        # The last Lease object the server returned: its resourceVersion guards every write.
        self._lease: JSONObject | None = None
        # The last record seen and when (monotonic) it was first seen in that state.
        self._observed: LeaderElectionRecord | None = None
        self._observed_time = 0.0
        self._leading = False
        self._started = False
        self._finished = False
        self._loss: LeadershipLostError | None = None
        self._outcome: asyncio.Future[bool] | None = None

    # -- public state ------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """This candidate's ``holderIdentity``."""
        return self._identity

    @property
    def lease_name(self) -> str:
        """``namespace/name`` of the Lease."""
        return f"{self._namespace}/{self._name}"

    @property
    def is_leader(self) -> bool:
        """True while this process holds the Lease and has not given it up."""
        return self._leading

    @property
    def observed_record(self) -> LeaderElectionRecord | None:
        """The Lease record as last read or written by this elector."""
        return self._observed

    def get_leader(self) -> str:
        """The holder in the last observed record (``""`` when none or released)."""
        return self._observed.holder_identity if self._observed is not None else ""

    async def wait_leading(self) -> bool:
        """Wait until this elector leads (``True``) or :meth:`run` ends first (``False``).

        Cancelling the waiter does not affect the election.
        """
        if self._leading:
            return True
        if self._finished:
            return False
        return await asyncio.shield(self._outcome_future())

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign, then renew, until ``stop`` is set or leadership is lost.

        Returns normally after ``stop`` (releasing a held Lease first when
        ``release_on_cancel``); raises :class:`LeadershipLostError` when a leader could not
        renew, after ``is_leader`` turned false and ``on_change(False)`` was called.
        """
        if self._started:
            raise RuntimeError("LeaderElector.run may be called only once")
        self._started = True
        self._report(leading=False)
        _log.info("attempting to acquire leader lease %s...", self.lease_name)
        elect = asyncio.create_task(self._elect(), name=f"leader-election {self.lease_name}")
        stopped = asyncio.create_task(stop.wait(), name=f"leader-election-stop {self.lease_name}")
        try:
            try:
                await asyncio.wait({elect, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Stopping cancels the campaign mid-request, like client-go's context.
                for task in (elect, stopped):
                    task.cancel()
                await asyncio.wait({elect, stopped})
            if not elect.cancelled():
                # The campaign only ends by itself through loss (or a bug): re-raise either.
                elect.result()
            elif self._loss is not None:
                # Stopped while releasing after a loss: still a loss for the caller.
                raise self._loss
            elif self._release_on_cancel:
                await self._release()
        finally:
            self._stop_leading()
            self._finished = True
            self._resolve_outcome(False)

    async def _elect(self) -> None:
        # 1. Campaign until this process holds the Lease.
        while True:
            started = self._clock.now()
            if await self.try_acquire_or_renew():
                break
            await self._sleep(jittered(self._retry_period, factor=JITTER_FACTOR))
        _log.info("successfully acquired lease %s", self.lease_name)
        self._start_leading()
        # 2. Renew until a renewal misses its deadline.
        try:
            await self._renew(renewed_at=started)
        except LeadershipLostError:
            self._stop_leading()
            if self._release_on_cancel:
                await self._release()
            raise

    async def _renew(self, *, renewed_at: float) -> None:
        delay = self._retry_period
        while True:
            await self._sleep(delay)
            deadline = renewed_at + self._renew_deadline
            started = self._clock.now()
            if started >= deadline:
                raise self._lost("timed out waiting for the condition")
            try:
                async with _Deadline(self._clock, deadline):
                    renewed = await self.try_acquire_or_renew()
            except TimeoutError:
                raise self._lost("timed out waiting for the condition") from None
            if renewed:
                renewed_at = started
                delay = self._retry_period
                continue
            holder = self.get_leader()
            if holder != self._identity:
                raise self._lost(f"the lease is held by {holder or 'nobody'}")
            delay = max(0.0, min(self._retry_period, deadline - self._clock.now()))

    def _lost(self, reason: str) -> LeadershipLostError:
        _log.error("failed to renew lease %s: %s", self.lease_name, reason)
        self._loss = LeadershipLostError(f"leader election lost: {self.lease_name}: {reason}")
        return self._loss

    # -- one attempt -------------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to acquire or renew the Lease (client-go's ``tryAcquireOrRenew``).

        Returns whether this process holds the Lease afterwards. API failures count as
        ``False`` and are logged. :meth:`run` calls this on its own schedule; calling it
        while ``run`` runs would race with it.
        """
        stamp = micro_time(self._wall_clock())
        desired = LeaderElectionRecord(
            holder_identity=self._identity,
            lease_duration_seconds=int(self._lease_duration),
            acquire_time=stamp,
            renew_time=stamp,
            leader_transitions=0,
        )

        # 1. Fast path: the leader writes over the object it last saw, without a read.
        observed = self._observed
        if (
            self._lease is not None
            and observed is not None
            and self._holds_lease()
            and self._lease_valid(self._clock.now())
        ):
            try:
                await self._update(
                    replace(
                        desired,
                        acquire_time=observed.acquire_time,
                        leader_transitions=observed.leader_transitions,
                    )
                )
            except ApiError as err:
                _log.info(
                    "failed to update lease %s optimistically, falling back to slow path: %s",
                    self.lease_name,
                    err,
                )
            else:
                return True

        # 2. Read the Lease, or create it.
        try:
            lease = await self._client.get_lease(self._namespace, self._name)
        except NotFoundError:
            return await self._create(desired)
        except ApiError as err:
            _log.error("error retrieving resource lock %s: %s", self.lease_name, err)
            return False
        self._lease = lease
        current = LeaderElectionRecord.from_spec(lease.get("spec"))
        if current != self._observed:
            self._observe(current)

        # 3. Someone else's unexpired Lease: wait.
        if (
            current.holder_identity
            and not self._holds_lease()
            and self._lease_valid(self._clock.now())
        ):
            _log.debug(
                "lock %s is held by %s and has not yet expired",
                self.lease_name,
                current.holder_identity,
            )
            return False

        # 4. Renew our own record, or take the Lease over (one more transition).
        if self._holds_lease():
            record = replace(
                desired,
                acquire_time=current.acquire_time,
                leader_transitions=current.leader_transitions,
            )
        else:
            record = replace(desired, leader_transitions=current.leader_transitions + 1)
        try:
            await self._update(record)
        except ApiError as err:
            _log.error("failed to update lease %s: %s", self.lease_name, err)
            return False
        return True

    async def _create(self, record: LeaderElectionRecord) -> bool:
        body: JSONObject = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": record.to_spec(),
        }
        try:
            self._lease = await self._client.create_lease(self._namespace, body)
        except ApiError as err:
            # 409 here means another candidate created it first: read it next time.
            _log.error(
                "error initially creating leader election record %s: %s", self.lease_name, err
            )
            return False
        self._observe(record)
        return True

    async def _update(self, record: LeaderElectionRecord) -> None:
        if self._lease is None:
            raise ApiError(0, "NotInitialized", "lease not initialized, get or create first")
        body = {**self._lease, "spec": record.to_spec()}
        self._lease = await self._client.update_lease(self._namespace, body)
        self._observe(record)

    async def _release(self) -> None:
        """Hand the Lease back (empty holder, 1 s duration) if this process still holds it."""
        if not self._holds_lease() or self._observed is None:
            return
        stamp = micro_time(self._wall_clock())
        record = LeaderElectionRecord(
            holder_identity="",
            lease_duration_seconds=1,
            acquire_time=stamp,
            renew_time=stamp,
            leader_transitions=self._observed.leader_transitions,
        )
        # Bounded: shutdown must not hang on a dead API server; the Lease expires anyway.
        try:
            async with _Deadline(self._clock, self._clock.now() + self._retry_period):
                try:
                    await self._update(record)
                except ConflictError:
                    # A write of ours may have landed after the version we hold (a renewal
                    # cancelled in flight): re-read, and release only if it is still ours.
                    self._lease = await self._client.get_lease(self._namespace, self._name)
                    current = LeaderElectionRecord.from_spec(self._lease.get("spec"))
                    if current != self._observed:
                        self._observe(current)
                    if not self._holds_lease():
                        return
                    await self._update(
                        replace(record, leader_transitions=current.leader_transitions)
                    )
        except ApiError as err:
            _log.error("failed to release lock %s: %s", self.lease_name, err)
            return
        except TimeoutError:
            _log.error("failed to release lock %s: timed out", self.lease_name)
            return
        _log.info("released lease %s", self.lease_name)

    # -- helpers -----------------------------------------------------------------------------

    def _observe(self, record: LeaderElectionRecord) -> None:
        previous = self._observed.holder_identity if self._observed is not None else None
        self._observed = record
        self._observed_time = self._clock.now()
        if record.holder_identity != previous and record.holder_identity:
            _log.info("new leader elected for %s: %s", self.lease_name, record.holder_identity)

    def _holds_lease(self) -> bool:
        return self._observed is not None and self._observed.holder_identity == self._identity

    def _lease_valid(self, now: float) -> bool:
        if self._observed is None:
            return False
        return self._observed_time + self._observed.lease_duration_seconds > now

    async def _sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = self._clock.call_at(self._clock.now() + seconds, lambda: _wake(future))
        try:
            await future
        finally:
            handle.cancel()

    def _start_leading(self) -> None:
        self._leading = True
        self._report(leading=True)
        self._notify(True)
        self._resolve_outcome(True)

    def _stop_leading(self) -> None:
        if not self._leading:
            return
        self._leading = False
        self._report(leading=False)
        self._notify(False)

    def _report(self, *, leading: bool) -> None:
        if self._report_status is not None:
            self._report_status(self._name, leading)

    def _notify(self, leading: bool) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(leading)
        except Exception:
            # A failing callback must not leave the election half-updated.
            _log.exception("leader election on_change callback failed")

    def _outcome_future(self) -> asyncio.Future[bool]:
        if self._outcome is None:
            self._outcome = asyncio.get_running_loop().create_future()
        return self._outcome

    def _resolve_outcome(self, leading: bool) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(leading)
