"""The ImageRepository reconciler: scan on the interval and on request, report status.

Shape (the same shell for every kind): take the current object → snapshot it for the
patcher → deletion → finalizer → suspend → the inner steps, always followed by one final
status patch, events and metrics. The inner steps are contract §2.3 with section A:

1. mark progressing (and patch at once on a new generation or a reconcile request);
2. parse the image reference (invalid ⇒ Stalled ``ImageURLInvalid``, no retry);
3. resolve credentials, TLS and proxy (⇒ ``AuthenticationFailed``);
4. decide whether to scan (``should_scan``, six reasons plus A3's failed-scan retry);
5. scan and store (⇒ ``ReadOperationFailed``), or keep the last result;
6. record canonical name and exclusion list, requeue after the interval or remainder.

``--flux-compatibility=v1.2`` changes only what Flux v1.2 shows differently (R1, R2, R4,
R6, R7, R8, R9, R26): the Ready message carries the revision (``successful scan: found N
tags with checksum <revision>``), the routine note compares revisions (``tags did not
change``), tags are stored in descending order with Flux's revision formula, the image
messages quote the image, a suspended object records a requested reconcile, and a scan
because the store has no tags shows Ready=Unknown while it runs.

Invariants: Secrets are read only from the object's namespace (the resolver is handed
``metadata.namespace``); the tag store row is keyed by ``namespace/name`` (A1) and removed
when the object goes away; retries live in the workqueue, never here.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from imagereflector.api import meta
from imagereflector.api.compat import Compatibility
from imagereflector.api.duration import SECOND, DurationError, format_duration
from imagereflector.api.imagerepository import (
    ImageRepository,
    ImageRepositorySpec,
    ImageRepositoryStatus,
)
from imagereflector.controllers.scan import ScanError, TagLister, scan
from imagereflector.controllers.shell import (
    EventSink,
    ReadyMemory,
    describe_validation_error,
    ensure_finalizer,
    image_reference_error,
    log_failure,
    notify,
    release_if_deleting,
)
from imagereflector.credentials.resolver import CredentialResolver, CredentialsError
from imagereflector.credentials.workload import (
    FEATURE_GATE_DISABLED_REASON,
    repository_gate_error,
)
from imagereflector.kube import conditions as cond
from imagereflector.kube.client import IMAGE_REPOSITORIES
from imagereflector.kube.patch import PatchClient, SerialPatcher
from imagereflector.kube.reconcile import (
    ReconcileError,
    Result,
    StallingError,
    finalize_result,
    record_error,
    should_set_observed_generation,
    succeeds_when_requeued_after,
)
from imagereflector.metrics import Metrics
from imagereflector.registry.reference import (
    ImageReference,
    InvalidReferenceError,
    parse_image_reference,
)
from imagereflector.registry.tags import exclusion_lists_equal
from imagereflector.registry.types import RegistryAccess
from imagereflector.store.base import ObjectKey, StoreError, TagStore

KIND: Final = meta.IMAGE_REPOSITORY_KIND
CONTROLLER: Final = "imagerepository"

# should_scan reasons (contract §2.7), plus A3's retry of a failed scan.
FIRST_SCAN: Final = "first scan"
RECONCILE_REQUESTED: Final = "reconcile requested"
NEW_IMAGE_NAME: Final = "new image name"
UPDATED_EXCLUSION_LIST: Final = "updated exclusion list"
NO_TAGS_IN_DATABASE: Final = "no tags in database"
TRIGGERED_BY_INTERVAL: Final = "triggered by interval"
PREVIOUS_SCAN_FAILED: Final = "previous scan failed"

log = logging.getLogger("imagereflector.controllers.imagerepository")


@dataclass(frozen=True, slots=True)
class RepositoryDeps:
    """What the reconciler talks to; tests hand in real or small fakes per seam."""

    client: PatchClient
    store: TagStore
    lister: TagLister
    resolver: CredentialResolver
    events: EventSink
    metrics: Metrics
    now: Callable[[], datetime]
    compatibility: Compatibility = Compatibility.V0_31


@dataclass(frozen=True, slots=True)
class ScanDecision:
    """The outcome of ``should_scan``: scan or not, why, and when to come back."""

    scan: bool
    reason: str
    when_ns: int


def annotation(obj: dict[str, Any]) -> str | None:
    """The ``reconcile.fluxcd.io/requestedAt`` value, None when absent."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    value = annotations.get(meta.RECONCILE_REQUEST_ANNOTATION)
    return value if isinstance(value, str) else None


def object_key(obj: dict[str, Any]) -> ObjectKey:
    """The tag store key of an object."""
    metadata = obj.get("metadata", {})
    return ObjectKey(str(metadata.get("namespace", "")), str(metadata.get("name", "")))


async def should_scan(*, repo: ImageRepository, obj: dict[str, Any], ref: ImageReference,
                      store: TagStore, now: datetime) -> ScanDecision:
    """Contract §2.7: the first matching rule decides; a scan comes back after the interval."""
    spec, status = repo.spec, repo.status
    interval = spec.interval_ns()
    last = status.last_scan_result
    if last is None or last.scan_time is None:
        return ScanDecision(True, FIRST_SCAN, interval)
    requested = annotation(obj)
    if requested is not None and requested != (status.last_handled_reconcile_at or ""):
        return ScanDecision(True, RECONCILE_REQUESTED, interval)
    if ref.canonical != status.canonical_image_name:
        return ScanDecision(True, NEW_IMAGE_NAME, interval)
    if not exclusion_lists_equal(spec.effective_exclusion_list(),
                                 status.observed_exclusion_list or []):
        return ScanDecision(True, UPDATED_EXCLUSION_LIST, interval)
    # A3: a scan that failed is retried as a scan, never papered over by a no-op.
    ready = cond.get(status.conditions, meta.READY)
    if ready is not None and ready.status == "False" and (
            ready.reason == meta.READ_OPERATION_FAILED_REASON):
        return ScanDecision(True, PREVIOUS_SCAN_FAILED, interval)
    stored = await store.scan(object_key(obj))
    if stored is None or stored.tag_count == 0 or stored.canonical_image != ref.canonical:
        return ScanDecision(True, NO_TAGS_IN_DATABASE, interval)
    elapsed = int((now - last.scan_time).total_seconds() * SECOND)
    when = interval - elapsed
    if when < SECOND:
        return ScanDecision(True, TRIGGERED_BY_INTERVAL, interval)
    return ScanDecision(False, "", when)


def _status_of(obj: dict[str, Any]) -> ImageRepositoryStatus:
    """The stored status; one that does not parse (written by someone else) starts over."""
    try:
        return ImageRepositoryStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        log.info("ignoring a status that does not parse; it will be rewritten")
        return ImageRepositoryStatus()


async def _observe_suspended_generation(obj: dict[str, Any], patcher: SerialPatcher, *,
                                       record_request: bool) -> None:
    """Flux's final patch runs for a suspended object too: nothing in status changes
    except ``observedGeneration``, which follows the generation (the suspension itself)
    when the object is Ready or Stalled, and, with ``record_request`` (Flux v1.2, R9),
    ``lastHandledReconcileAt``, so ``flux reconcile`` of a suspended object returns."""
    status = _status_of(obj)
    generation = int(obj["metadata"].get("generation", 0))
    requested = annotation(obj) if record_request else None
    observe = (status.observed_generation != generation
               and should_set_observed_generation(status.conditions))
    if not observe and requested in (None, status.last_handled_reconcile_at):
        return
    if observe:
        status.observed_generation = generation
    if requested is not None:
        status.last_handled_reconcile_at = requested
    obj["status"] = status.dump()
    await patcher.patch(obj)


class ImageRepositoryReconciler:
    """Reconciles one ImageRepository per call; safe to call concurrently for other keys."""

    def __init__(self, deps: RepositoryDeps) -> None:
        self._deps = deps
        self._ready_memory = ReadyMemory()

    async def reconcile(self, obj: dict[str, Any]) -> Result:
        """Reconcile ``obj`` (the informer's current copy; it is not mutated)."""
        deps = self._deps
        loop = asyncio.get_running_loop()
        started = loop.time()
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
        patcher = SerialPatcher(deps.client, IMAGE_REPOSITORIES, obj)
        try:
            # Deletion: drop the stored tags, then let the object go.
            if metadata.get("deletionTimestamp"):
                await deps.store.delete(object_key(obj))
                await release_if_deleting(obj, patcher)
                deps.metrics.delete_object(kind=KIND, name=name, namespace=namespace)
                self._ready_memory.forget(obj)
                return Result()
            await ensure_finalizer(obj, patcher)
            if (obj.get("spec") or {}).get("suspend") is True:
                log.info("reconciliation is suspended for this object")
                await _observe_suspended_generation(
                    obj, patcher, record_request=deps.compatibility.latest)
                return Result()
            return await self._reconcile(obj, patcher)
        finally:
            self._record_metrics(obj, started=started, now=loop.time())

    def _record_metrics(self, obj: dict[str, Any], *, started: float, now: float) -> None:
        metadata = obj.get("metadata", {})
        name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
        if metadata.get("deletionTimestamp"):
            return
        status = ImageRepositoryStatus.model_validate(obj.get("status") or {})
        ready = cond.get(status.conditions, meta.READY)
        metrics = self._deps.metrics
        metrics.record_condition(kind=KIND, name=name, namespace=namespace,
                                 status=ready.status if ready else "Unknown")
        metrics.record_suspend(kind=KIND, name=name, namespace=namespace,
                               suspended=bool((obj.get("spec") or {}).get("suspend")))
        metrics.record_duration(kind=KIND, name=name, namespace=namespace,
                                seconds=now - started)

    async def _reconcile(self, obj: dict[str, Any], patcher: SerialPatcher) -> Result:
        deps = self._deps
        now = deps.now()
        generation = int(obj["metadata"].get("generation", 0))
        status = _status_of(obj)
        old_conditions = list(status.conditions)
        conditions = status.conditions
        requested = annotation(obj)
        outcome = _Outcome()

        async def progress(message: str, drift: bool = False) -> None:
            cond.progressive_status(conditions, message, generation=generation, now=deps.now())
            if drift:
                # Flux v1.2 (R26): what Ready said no longer holds while it runs.
                cond.mark_unknown(conditions, meta.READY, meta.PROGRESSING_REASON, message,
                                  generation=generation, now=deps.now())
            obj["status"] = status.dump()
            await patcher.patch(obj)

        result: Result = Result()
        error: BaseException | None = None
        try:
            result = await self._inner(obj, status, progress, outcome, generation=generation,
                                       requested=requested)
        except Exception as err:  # every failure is reported in status and retried
            error = err
            log_failure(log, err)
        # Finalise: conditions from the outcome, one patch, events.
        error = record_error(conditions, error, generation=generation, now=now) if error else None
        finalized = finalize_result(
            conditions, result=result, error=error,
            is_success=succeeds_when_requeued_after(outcome.next_scan_seconds),
            success_message=self._ready_message(status, outcome),
            requested_at=requested, generation=generation, now=now)
        if finalized.last_handled_reconcile_at is not None:
            status.last_handled_reconcile_at = finalized.last_handled_reconcile_at
        cond.keep_transition_times(conditions, old_conditions)
        if should_set_observed_generation(conditions):
            status.observed_generation = generation
        obj["status"] = status.dump()
        await patcher.patch(obj)
        notify(deps.events, obj, old_conditions, conditions, outcome.next_scan_message,
               self._ready_memory)
        if finalized.error is not None:
            raise finalized.error
        return result

    def _ready_message(self, status: ImageRepositoryStatus, outcome: _Outcome) -> str:
        """``successful scan: found N tags``, with the revision in v1.2 mode (R1)."""
        message = f"successful scan: found {outcome.found_tags} tags"
        if self._deps.compatibility.latest:
            last = status.last_scan_result
            message += f" with checksum {(last.revision if last else None) or ''}"
        return message

    async def _inner(self, obj: dict[str, Any], status: ImageRepositoryStatus,
                     progress: Callable[..., Any], outcome: _Outcome, *,
                     generation: int, requested: str | None) -> Result:
        deps = self._deps
        conditions = status.conditions
        now = deps.now()
        # 0. Object-level workload identity without its feature gate: nothing to do until
        # the spec (or the controller) changes (Flux v1.2, before anything else).
        gate = repository_gate_error(obj.get("spec") or {}, deps.resolver.workload_identity)
        if gate is not None:
            raise StallingError(gate, reason=FEATURE_GATE_DISABLED_REASON)
        # 1. Report progress; a new generation or a request is shown at once.
        cond.progressive_status(conditions, meta.PROGRESS_MESSAGE, generation=generation,
                                now=now)
        if generation != status.observed_generation:
            await progress(f"processing object: new generation {status.observed_generation} "
                           f"-> {generation}")
        elif (requested or "") != (status.last_handled_reconcile_at or ""):
            await progress(meta.PROGRESS_MESSAGE)
        # A spec the CRD schema would have refused (written around the schema) is reported
        # in status like any other failure instead of failing before status exists.
        try:
            spec = ImageRepositorySpec.model_validate(obj.get("spec") or {})
            interval_ns = spec.interval_ns()
            spec.timeout_ns()  # parsed now so a bad timeout fails here, not mid-scan
        except ValidationError as err:
            raise ReconcileError(f"invalid object: spec.{describe_validation_error(err)}",
                                 reason=meta.FAILED_REASON) from err
        except DurationError as err:
            raise ReconcileError(str(err), reason=meta.FAILED_REASON) from err
        repo = ImageRepository(spec=spec, status=status)
        outcome.next_scan_seconds = interval_ns / SECOND
        # 2. Parse the image reference; a bad one needs a spec change, so stall.
        try:
            ref = parse_image_reference(spec.image, insecure=spec.insecure)
        except InvalidReferenceError as err:
            raise StallingError(
                image_reference_error(spec.image, err, latest=deps.compatibility.latest),
                reason=meta.IMAGE_URL_INVALID_REASON) from err
        cond.delete(conditions, meta.STALLED)
        # 3. Credentials, TLS material and proxy, within the effective timeout.
        access = await self._access(obj, repo, ref)
        # 4. Decide whether to scan.
        try:
            decision = await should_scan(repo=repo, obj=obj, ref=ref, store=deps.store, now=now)
        except StoreError as err:
            raise ReconcileError(f"failed to determine if it's scan time: {err}",
                                 reason=meta.FAILURE_REASON) from err
        # 5. Scan and store, or keep what the last scan found.
        if decision.scan:
            latest_mode = deps.compatibility.latest
            await progress(f"scanning: {decision.reason}",
                           drift=latest_mode and decision.reason == NO_TAGS_IN_DATABASE)
            try:
                scanned = await scan(
                    lister=deps.lister, ref=ref, access=access,
                    exclusions=spec.effective_exclusion_list(), timeout_ns=spec.timeout_ns(),
                    now=deps.now(), store=deps.store, key=object_key(obj),
                    compatibility=deps.compatibility)
            except ScanError as err:
                raise ReconcileError(f"scan failed: {err}",
                                     reason=meta.READ_OPERATION_FAILED_REASON) from err
            previous = status.last_scan_result
            outcome.found_tags = scanned.result.tag_count
            # R2: v0.31 compares the tag counts, v1.2 the revisions.
            if latest_mode:
                unchanged = (previous is not None
                             and previous.revision == scanned.result.revision)
                prefix = "tags did not change, " if unchanged else "successful scan, "
            else:
                prefix = ("no new tags found, " if previous is not None
                          and previous.tag_count == scanned.result.tag_count
                          else "successful scan, ")
            outcome.next_scan_message = f"{prefix}next scan in {format_duration(decision.when_ns)}"
            status.last_scan_result = scanned.result
            if requested is not None:
                status.last_handled_reconcile_at = requested
        else:
            outcome.found_tags = status.last_scan_result.tag_count if status.last_scan_result else 0
            outcome.next_scan_message = ("no change in repository configuration since last "
                                         f"scan, next scan in {format_duration(decision.when_ns)}")
        # 6. Record what this reconcile observed; Ready is recomputed by the finaliser.
        status.canonical_image_name = ref.canonical
        status.observed_exclusion_list = spec.effective_exclusion_list()
        cond.delete(conditions, meta.READY)
        outcome.next_scan_seconds = decision.when_ns / SECOND
        return Result(requeue_after=decision.when_ns / SECOND)

    async def _access(self, obj: dict[str, Any], repo: ImageRepository,
                      ref: ImageReference) -> RegistryAccess:
        namespace = str(obj["metadata"].get("namespace", ""))
        name = str(obj["metadata"].get("name", ""))
        timeout_ns = repo.spec.timeout_ns()
        try:
            async with asyncio.timeout(timeout_ns / SECOND):
                return await self._deps.resolver.resolve(namespace=namespace, spec=repo.spec,
                                                         ref=ref, name=name)
        except TimeoutError as err:
            raise ReconcileError(
                "failed to configure authentication options: timed out after "
                f"{format_duration(timeout_ns)}", reason=meta.AUTHENTICATION_FAILED_REASON,
            ) from err
        except CredentialsError as err:
            raise ReconcileError(f"failed to configure authentication options: {err}",
                                 reason=meta.AUTHENTICATION_FAILED_REASON) from err


@dataclass(slots=True)
class _Outcome:
    """What the inner steps hand to the finaliser and the events."""

    found_tags: int = 0
    next_scan_message: str = ""
    next_scan_seconds: float = 0.0

