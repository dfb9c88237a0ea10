"""The ImagePolicy reconciler: pick the latest tag of a scanned repository.

The same shell as the ImageRepository reconciler (deletion, finalizer, and, as in Flux
v1, ``spec.suspend``), then contract §3.3 with Flux v1's additions:

1. mark progressing (patch at once on a new generation); in v0.31 mode clear
   ``latestImage`` so any failure below leaves it empty, as Flux v0.31 did;
2. resolve the referenced ImageRepository: ``--no-cross-namespace-refs``, existence, and
   the ``accessFrom`` ACL (⇒ ``AccessDenied`` / ``DependencyNotReady``, retried); in v1.2
   mode a repository whose ``spec.image`` does not parse stalls the policy
   (``ImageURLInvalid``), and in both modes one that needs the
   ``ObjectLevelWorkloadIdentity`` gate while it is off stalls it (``FeatureGateDisabled``);
3. v0.31 mode: an unscanned repository ⇒ ``DependencyNotReady``, no retry (its next scan
   triggers us); v1.2 mode has no such check, an unscanned repository has no tags;
4. build the policy and the tag filter (⇒ Stalled ``InvalidPolicy``), read the tags the
   repository stored under its own key (contract A1): none ⇒ ``DependencyNotReady``,
   retried after ``--requeue-dependency``; select (⇒ ``Failure``);
5. the result: ``latestRef`` (with the digest when digest reflection asks for it) and
   ``observedPreviousRef`` move as in Flux v1 in both modes, and ``latestImage`` /
   ``observedPreviousImage`` follow them for Flux 2.2's image automation.

Invariants: ``latestRef`` is never cleared by a failure (Flux 2.6+'s image automation
keeps using it); ``latestImage`` is ``latestRef.name:latestRef.tag`` whenever it is set;
``status.lastHandledReconcileAt`` records every ``reconcile.fluxcd.io/requestedAt``
seen, suspended or not. A status written by Flux 2.2 (``latestImage`` only) seeds the
refs on the first reconcile, split at the last ``:`` as Flux v0.35 did.

Policies are triggered by their own spec changes, by the requestedAt annotation, and,
through an index, by changes of the referenced repository's scan revision, spec or ACL
(contract A2) — never by every status patch of the repository.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from imagereflector.api import meta
from imagereflector.api.compat import Compatibility
from imagereflector.api.duration import SECOND, format_duration, parse_duration
from imagereflector.api.imagepolicy import ImagePolicy, ImagePolicyStatus, ImageRef
from imagereflector.api.imagerepository import ImageRepository
from imagereflector.controllers.shell import (
    EventSink,
    ReadyMemory,
    describe_validation_error,
    ensure_finalizer,
    image_reference_error,
    log_failure,
    notify,
    reconcile_request,
    release_if_deleting,
)
from imagereflector.credentials.workload import (
    FEATURE_GATE_DISABLED_REASON,
    WorkloadIdentity,
    policy_gate_error,
)
from imagereflector.kube import conditions as cond
from imagereflector.kube.client import IMAGE_POLICIES
from imagereflector.kube.patch import PatchClient, SerialPatcher
from imagereflector.kube.reconcile import (
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
from imagereflector.metrics import Metrics
from imagereflector.policy import (
    InvalidFilterError,
    InvalidPolicyError,
    PolicyChoice,
    SelectionError,
    TagFilter,
    build_policer,
    select_latest,
)
from imagereflector.registry.reference import InvalidReferenceError, parse_image_reference
from imagereflector.store.base import ObjectKey, StoreError, TagStore

KIND: Final = meta.IMAGE_POLICY_KIND
CONTROLLER: Final = "imagepolicy"
REPOSITORY_INDEX: Final = ".spec.imageRepository"
NOT_SCANNED_MESSAGE: Final = "referenced ImageRepository has not been scanned yet"
NO_TAGS_MESSAGE: Final = "no tags in database"
INTERVAL_NOT_CONFIGURED_MESSAGE: Final = (
    "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'")
SUSPENDED_MESSAGE: Final = "reconciliation is suspended for this object"

log = logging.getLogger("imagereflector.controllers.imagepolicy")


class RepositoryLookup(Protocol):
    """Read access to ImageRepositories and Namespaces (informer caches in production)."""

    def get_repository(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ImageRepository, or None when it does not exist."""
        ...

    async def get_namespace_labels(self, name: str) -> Mapping[str, str]:
        """The labels of a Namespace; raises when it cannot be read."""
        ...


class DigestResolver(Protocol):
    """Resolves a tag's manifest digest with the repository's own registry access."""

    async def digest(self, repository: Mapping[str, Any], tag: str, *,
                     policy_name: str = "", policy_namespace: str = "") -> str:
        """``sha256:…`` of ``tag`` in the repository's image; the policy is named for the
        cloud token cache's accounting."""
        ...


@dataclass(frozen=True, slots=True)
class PolicyDeps:
    """What the policy reconciler talks to."""

    client: PatchClient
    store: TagStore
    repositories: RepositoryLookup
    digests: DigestResolver
    events: EventSink
    metrics: Metrics
    now: Callable[[], datetime]
    no_cross_namespace_refs: bool = False
    compatibility: Compatibility = Compatibility.V0_31
    requeue_dependency: float = 30.0
    """``--requeue-dependency`` in seconds: the retry of a policy whose repository has
    no tags."""
    workload_identity: WorkloadIdentity = field(default_factory=WorkloadIdentity)
    """The ``ObjectLevelWorkloadIdentity`` gate, for repositories that need it."""


def repository_index(obj: Mapping[str, Any]) -> list[str]:
    """Index function: the ``namespace/name`` of the repository a policy refers to."""
    ref = (obj.get("spec") or {}).get("imageRepositoryRef") or {}
    name = ref.get("name")
    if not name:
        return []
    namespace = ref.get("namespace") or (obj.get("metadata") or {}).get("namespace", "")
    return [f"{namespace}/{name}"]


def policy_choice(policy: ImagePolicy) -> PolicyChoice:
    """The policy union as the policy package takes it (first non-nil wins)."""
    choice = policy.spec.policy
    return PolicyChoice(
        semver_range=choice.semver.range if choice.semver is not None else None,
        alphabetical_order=choice.alphabetical.order if choice.alphabetical is not None else None,
        numerical_order=choice.numerical.order if choice.numerical is not None else None,
    )


def compose_ready_message(image: str, tag: str, previous_tag: str) -> str:
    """Flux v0.31's Ready message: resolved, or updated from a different previous tag."""
    if previous_tag and previous_tag != tag:
        return f"Latest image tag for '{image}' updated from {previous_tag} to {tag}"
    return f"Latest image tag for '{image}' resolved to {tag}"


def compose_v1_ready_message(latest: ImageRef, previous: ImageRef | None) -> str:
    """Flux v1.2's Ready message: no quotes, the digest, and the previous ref for as long
    as it is kept (spec §3.5)."""
    message = f"Latest image tag for {latest.name} resolved to {latest.tag}"
    if latest.digest:
        message += f" with digest {latest.digest}"
    if previous is not None and _ref_tuple(previous) != _ref_tuple(latest):
        message += f" (previously {previous.name}:{previous.tag}"
        if previous.digest:
            message += f"@{previous.digest}"
        message += ")"
    return message


def _ref_tuple(ref: ImageRef) -> tuple[str, str, str]:
    # Go compares the structs, where an absent digest is "".
    return ref.name, ref.tag, ref.digest or ""


def ref_from_image(image: str) -> ImageRef | None:
    """The ref of a Flux 2.2 ``latestImage`` (``name:tag``), split at the last ``:`` as
    Flux v0.35's ``migrateImageToRef`` does; None for an empty one."""
    if not image:
        return None
    name, _, tag = image.rpartition(":")
    return ImageRef(name=name, tag=tag)


def _previous_tag(previous_image: str) -> str:
    """The tag of ``observedPreviousImage``; unparsable values give no tag (as in Flux)."""
    name, sep, tag = previous_image.rpartition(":")
    if not sep or "/" in tag or not name:
        return ""
    return tag


def _annotation(obj: Mapping[str, Any]) -> str | None:
    return reconcile_request(obj)


class ImagePolicyReconciler:
    """Reconciles one ImagePolicy per call."""

    def __init__(self, deps: PolicyDeps) -> None:
        self._deps = deps
        self._ready_memory = ReadyMemory()

    async def reconcile(self, obj: Mapping[str, Any]) -> Result:
        """Reconcile ``obj`` (the informer's copy; not mutated)."""
        deps = self._deps
        loop = asyncio.get_running_loop()
        started = loop.time()
        work: dict[str, Any] = copy.deepcopy(dict(obj))
        metadata = work.setdefault("metadata", {})
        name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
        patcher = SerialPatcher(deps.client, IMAGE_POLICIES, work)
        try:
            if await release_if_deleting(work, patcher):
                deps.metrics.delete_object(kind=KIND, name=name, namespace=namespace)
                self._ready_memory.forget(obj)
                return Result()
            await ensure_finalizer(work, patcher)
            if (work.get("spec") or {}).get("suspend") is True:
                log.info(SUSPENDED_MESSAGE)
                await self._suspended(work, patcher)
                return Result()
            return await self._reconcile(work, patcher)
        finally:
            if not metadata.get("deletionTimestamp"):
                status = _status_of(work)
                ready = cond.get(status.conditions, meta.READY)
                deps.metrics.record_condition(kind=KIND, name=name, namespace=namespace,
                                              status=ready.status if ready else "Unknown")
                deps.metrics.record_duration(kind=KIND, name=name, namespace=namespace,
                                             seconds=loop.time() - started)

    async def _suspended(self, obj: dict[str, Any], patcher: SerialPatcher) -> None:
        """Flux v1: a suspended policy changes nothing but what its final patch always
        writes: the handled reconcile request, and ``observedGeneration`` when Ready or
        Stalled (so ``flux suspend`` sees its own generation observed)."""
        raw = dict(obj.get("status") or {})
        requested = _annotation(obj)
        if requested is not None:
            raw["lastHandledReconcileAt"] = requested
        if should_set_observed_generation(_status_of(obj).conditions):
            raw["observedGeneration"] = int(obj["metadata"].get("generation", 0))
        obj["status"] = raw
        await patcher.patch(obj)

    async def _reconcile(self, obj: dict[str, Any], patcher: SerialPatcher) -> Result:
        deps = self._deps
        now = deps.now()
        generation = int(obj["metadata"].get("generation", 0))
        status = _status_of(obj)
        _seed_refs(status)
        old_conditions = list(status.conditions)
        conditions = status.conditions
        outcome = _Outcome()
        result: Result = Result()
        error: BaseException | None = None
        try:
            result = await self._inner(obj, status, patcher, outcome, generation=generation)
        except Exception as err:  # every failure is reported in status
            error = err
            log_failure(log, err)
        error = record_error(conditions, error, generation=generation, now=now) if error else None
        finalized = finalize_result(
            conditions, result=result, error=error, is_success=outcome.is_success,
            success_message=outcome.ready_message, requested_at=_annotation(obj),
            generation=generation, now=now)
        if finalized.last_handled_reconcile_at is not None:
            status.last_handled_reconcile_at = finalized.last_handled_reconcile_at
        cond.keep_transition_times(conditions, old_conditions)
        if should_set_observed_generation(conditions):
            status.observed_generation = generation
        obj["status"] = status.dump()
        await patcher.patch(obj)
        notify(deps.events, obj, old_conditions, conditions, outcome.ready_message,
               self._ready_memory)
        if finalized.error is not None:
            raise finalized.error
        return result

    async def _inner(self, obj: dict[str, Any], status: ImagePolicyStatus,
                     patcher: SerialPatcher, outcome: _Outcome, *, generation: int) -> Result:
        deps = self._deps
        latest_mode = deps.compatibility.latest
        conditions = status.conditions
        spec = obj.get("spec") or {}
        if latest_mode:
            # Flux v1.2 checks this before anything else; the CRDs' CEL rules normally
            # make it unreachable. An interval without Always is simply not used there.
            always = spec.get("digestReflectionPolicy") == "Always"
            if always and not spec.get("interval"):
                raise StallingError(INTERVAL_NOT_CONFIGURED_MESSAGE,
                                    reason=meta.INTERVAL_NOT_CONFIGURED_REASON)
            if not always and spec.get("interval"):
                spec = {k: v for k, v in spec.items() if k != "interval"}
        # 1. Report progress; a new generation is shown at once.
        cond.progressive_status(conditions, meta.PROGRESS_MESSAGE, generation=generation,
                                now=deps.now())
        if generation != status.observed_generation:
            cond.progressive_status(
                conditions, f"processing object: new generation {status.observed_generation}"
                f" -> {generation}", generation=generation, now=deps.now())
            obj["status"] = status.dump()
            await patcher.patch(obj)
        try:
            policy = ImagePolicy.model_validate({**obj, "spec": spec})
        except ValidationError as err:
            raise StallingError(f"invalid policy: {describe_validation_error(err)}",
                                reason=meta.INVALID_POLICY_REASON) from err
        if policy.spec.effective_digest_reflection_policy() == "Always" and policy.spec.interval:
            # Re-checked on the interval: a re-pushed mutable tag changes the digest.
            outcome.interval_seconds = parse_duration(policy.spec.interval) / SECOND
        if latest_mode:
            # Flux v1.2 succeeds only with a requeue after exactly the interval (none
            # unless digest reflection is Always), so a no-tags retry is not a success.
            outcome.is_success = succeeds_when_requeued_after(outcome.interval_seconds)
        previous_image = status.latest_image or ""
        if not latest_mode:
            # 2. Flux v0.31: a failure below leaves latestImage empty (latestRef stays).
            status.latest_image = None
        # 3. The referenced repository, subject to cross-namespace rules and its ACL.
        repo_obj = await self._repository(obj, policy)
        repo = ImageRepository.model_validate(repo_obj)
        if latest_mode:
            try:
                parse_image_reference(repo.spec.image, insecure=repo.spec.insecure)
            except InvalidReferenceError as err:
                raise StallingError(image_reference_error(repo.spec.image, err, latest=True),
                                    reason=meta.IMAGE_URL_INVALID_REASON) from err
        gate = policy_gate_error(repo_obj.get("spec") or {}, deps.workload_identity)
        if gate is not None:
            raise StallingError(gate, reason=FEATURE_GATE_DISABLED_REASON)
        if not latest_mode and repo.status.last_scan_result is None:
            cond.mark_false(conditions, meta.READY, meta.DEPENDENCY_NOT_READY_REASON,
                            NOT_SCANNED_MESSAGE, generation=generation, now=deps.now())
            return Result()
        # 4. Policy and filter (a bad one needs a spec change), then the stored tags.
        try:
            policer = build_policer(policy_choice(policy), compatibility=deps.compatibility)
        except InvalidPolicyError as err:
            raise StallingError(f"invalid policy: {err}",
                                reason=meta.INVALID_POLICY_REASON) from err
        repo_meta = repo_obj.get("metadata") or {}
        key = ObjectKey(str(repo_meta.get("namespace", "")), str(repo_meta.get("name", "")))
        try:
            tags = await deps.store.tags(key)
        except StoreError as err:
            raise ReconcileError(f"failed to read tags from database: {err}",
                                 reason=meta.FAILURE_REASON) from err
        if not tags:
            return self._no_tags(conditions, generation=generation)
        tag_filter = None
        if policy.spec.filter_tags is not None:
            try:
                tag_filter = TagFilter.compile(policy.spec.filter_tags.pattern,
                                               policy.spec.filter_tags.extract)
            except InvalidFilterError as err:
                raise StallingError(f"failed to filter tags: {err}",
                                    reason=meta.INVALID_POLICY_REASON) from err
        try:
            tag = select_latest(tags, policer=policer, tag_filter=tag_filter)
        except SelectionError as err:
            raise ReconcileError(str(err), reason=meta.FAILURE_REASON) from err
        # 5. The result.
        image = repo.spec.image
        if not latest_mode:
            # Flux v0.31: the previous image moves only when the result changes, and is
            # empty after a failure (latestImage was cleared above). Set before the digest
            # is read, as this mode always did.
            status.latest_image = f"{image}:{tag}"
            if previous_image != status.latest_image:
                status.observed_previous_image = previous_image or None
            outcome.ready_message = compose_ready_message(
                image, tag, _previous_tag(status.observed_previous_image or ""))
        latest = await self._latest_ref(obj, policy, status, repo_obj, image, tag)
        if status.latest_ref is None or _ref_tuple(latest) != _ref_tuple(status.latest_ref):
            status.observed_previous_ref = status.latest_ref
            status.latest_ref = latest
        if latest_mode:
            # Flux v1.2 has only the refs; the images follow them as Flux v0.35 wrote them.
            status.latest_image = latest.image()
            if status.observed_previous_ref is not None:
                status.observed_previous_image = status.observed_previous_ref.image()
            outcome.ready_message = compose_v1_ready_message(latest,
                                                             status.observed_previous_ref)
        cond.delete(conditions, meta.READY)
        return Result(requeue_after=outcome.interval_seconds)

    def _no_tags(self, conditions: list[meta.Condition], *, generation: int) -> Result:
        """The repository has no tags (none yet, or none left after its exclusions):
        retried after ``--requeue-dependency``, not as a failure with backoff."""
        deps = self._deps
        if not deps.compatibility.latest:
            raise WaitingError(NO_TAGS_MESSAGE, reason=meta.DEPENDENCY_NOT_READY_REASON,
                               requeue_after=deps.requeue_dependency)
        # Flux v1.2: Ready=False with the retry in the message, no error, a requeue.
        # Go's Duration.Round(time.Second): to the nearest second, halves away from zero.
        delay = int(deps.requeue_dependency + 0.5) * SECOND
        cond.mark_false(conditions, meta.READY, meta.DEPENDENCY_NOT_READY_REASON,
                        f"retrying in {format_duration(delay)} error: {NO_TAGS_MESSAGE}",
                        generation=generation, now=deps.now())
        return Result(requeue_after=deps.requeue_dependency)

    async def _latest_ref(self, obj: Mapping[str, Any], policy: ImagePolicy,
                          status: ImagePolicyStatus, repo_obj: Mapping[str, Any],
                          image: str, tag: str) -> ImageRef:
        """The chosen tag as a ref, with the digest digest reflection asks for."""
        mode = policy.spec.effective_digest_reflection_policy()
        if mode == "Never":
            return ImageRef(name=image, tag=tag)
        old = status.latest_ref
        digest = old.digest if (mode == "IfNotPresent" and old is not None
                                and old.name == image and old.tag == tag) else None
        if digest:
            return ImageRef(name=image, tag=tag, digest=digest)
        metadata = obj.get("metadata") or {}
        try:
            digest = await self._deps.digests.digest(
                repo_obj, tag, policy_name=str(metadata.get("name", "")),
                policy_namespace=str(metadata.get("namespace", "")))
        except Exception as err:
            if self._deps.compatibility.latest:
                # Flux v1.2 returns the error as it is: Ready=False reason Failed.
                raise ReconcileError(f"failed fetching digest of {image}:{tag}: {err}",
                                     reason=meta.FAILED_REASON) from err
            raise ReconcileError(f"failed to resolve digest of {image}:{tag}: {err}",
                                 reason=meta.READ_OPERATION_FAILED_REASON) from err
        return ImageRef(name=image, tag=tag, digest=digest)

    async def _repository(self, obj: Mapping[str, Any],
                          policy: ImagePolicy) -> Mapping[str, Any]:
        deps = self._deps
        own_namespace = str(obj["metadata"].get("namespace", ""))
        ref = policy.spec.image_repository_ref
        namespace = ref.namespace or own_namespace
        prefix = "failed to get the referred ImageRepository: "
        if deps.no_cross_namespace_refs and namespace != own_namespace:
            raise ReconcileError(
                f"{prefix}cannot access 'ImageRepository/{namespace}/{ref.name}', "
                "cross-namespace references have been blocked",
                reason=meta.ACCESS_DENIED_REASON)
        repo = deps.repositories.get_repository(namespace, ref.name)
        if repo is None:
            raise ReconcileError(
                f"{prefix}referenced ImageRepository does not exist: "
                f'ImageRepository.image.toolkit.fluxcd.io "{ref.name}" not found',
                reason=meta.DEPENDENCY_NOT_READY_REASON)
        if namespace == own_namespace:
            return repo
        access_from = (repo.get("spec") or {}).get("accessFrom")
        if not access_from:
            raise ReconcileError(
                f"{prefix}access denied: '{namespace}/{ref.name}' can't be accessed due to "
                "missing ACL labels on 'accessFrom'", reason=meta.ACCESS_DENIED_REASON)
        try:
            labels = await deps.repositories.get_namespace_labels(own_namespace)
        except Exception as err:
            raise ReconcileError(f"{prefix}access denied: {err}",
                                 reason=meta.ACCESS_DENIED_REASON) from err
        for selector in access_from.get("namespaceSelectors") or []:
            wanted = (selector or {}).get("matchLabels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                return repo
        raise ReconcileError(
            f"{prefix}access denied: '{namespace}/{ref.name}' can't be accessed due to ACL "
            f"labels mismatch on namespace '{own_namespace}'", reason=meta.ACCESS_DENIED_REASON)


def _status_of(obj: Mapping[str, Any]) -> ImagePolicyStatus:
    """The stored status; one that does not parse (written by someone else) starts over."""
    try:
        return ImagePolicyStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        log.info("ignoring a status that does not parse; it will be rewritten")
        return ImagePolicyStatus()


def _seed_refs(status: ImagePolicyStatus) -> None:
    """A status written by Flux 2.2 has images but no refs: derive them once, so the
    previous result is known and Flux 2.6+'s image automation has a ``latestRef`` at once."""
    if status.latest_ref is None:
        status.latest_ref = ref_from_image(status.latest_image or "")
    if status.observed_previous_ref is None:
        status.observed_previous_ref = ref_from_image(status.observed_previous_image or "")


@dataclass(slots=True)
class _Outcome:
    ready_message: str = ""
    interval_seconds: float = 0.0
    is_success: SuccessPredicate = succeeds_without_requeue
