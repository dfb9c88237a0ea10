"""The ImagePolicy reconciler: pick the latest tag of a scanned repository.

The same shell as the ImageRepository reconciler, then contract §3.3:

1. mark progressing (patch at once on a new generation); clear ``latestImage`` so any
   failure below leaves it empty;
2. resolve the referenced ImageRepository: ``--no-cross-namespace-refs``, existence, and
   the ``accessFrom`` ACL (⇒ ``AccessDenied`` / ``DependencyNotReady``, retried);
3. an unscanned repository ⇒ ``DependencyNotReady``, no retry (its next scan triggers us);
4. build the policy and the tag filter (⇒ Stalled ``InvalidPolicy``), read the tags the
   repository stored under its own key (contract A1), select (⇒ ``Failure``);
5. set ``latestImage``/``observedPreviousImage``, and with digest reflection resolve
   ``latestRef.digest`` with a manifest HEAD.

Policies are triggered by their own spec changes and, through an index, by changes of
the referenced repository's scan revision, spec or ACL (contract A2) — never by every
status patch of the repository.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from imagereflector.api import meta
from imagereflector.api.compat import Compatibility
from imagereflector.api.duration import SECOND, parse_duration
from imagereflector.api.imagepolicy import ImagePolicy, ImagePolicyStatus, ImageRef
from imagereflector.api.imagerepository import ImageRepository
from imagereflector.controllers.shell import (
    EventSink,
    ReadyMemory,
    describe_validation_error,
    ensure_finalizer,
    log_failure,
    notify,
    release_if_deleting,
)
from imagereflector.kube import conditions as cond
from imagereflector.kube.client import IMAGE_POLICIES
from imagereflector.kube.patch import PatchClient, SerialPatcher
from imagereflector.kube.reconcile import (
    ReconcileError,
    Result,
    StallingError,
    WaitingError,
    finalize_result,
    record_error,
    should_set_observed_generation,
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
from imagereflector.store.base import ObjectKey, StoreError, TagStore

KIND: Final = meta.IMAGE_POLICY_KIND
CONTROLLER: Final = "imagepolicy"
REPOSITORY_INDEX: Final = ".spec.imageRepository"
NOT_SCANNED_MESSAGE: Final = "referenced ImageRepository has not been scanned yet"

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

    async def digest(self, repository: Mapping[str, Any], tag: str) -> str:
        """``sha256:…`` of ``tag`` in the repository's image."""
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
    """Flux's Ready message: resolved, or updated from a different previous tag."""
    if previous_tag and previous_tag != tag:
        return f"Latest image tag for '{image}' updated from {previous_tag} to {tag}"
    return f"Latest image tag for '{image}' resolved to {tag}"


def _previous_tag(previous_image: str) -> str:
    """The tag of ``observedPreviousImage``; unparsable values give no tag (as in Flux)."""
    name, sep, tag = previous_image.rpartition(":")
    if not sep or "/" in tag or not name:
        return ""
    return tag


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
            return await self._reconcile(work, patcher)
        finally:
            if not metadata.get("deletionTimestamp"):
                status = ImagePolicyStatus.model_validate(work.get("status") or {})
                ready = cond.get(status.conditions, meta.READY)
                deps.metrics.record_condition(kind=KIND, name=name, namespace=namespace,
                                              status=ready.status if ready else "Unknown")
                deps.metrics.record_duration(kind=KIND, name=name, namespace=namespace,
                                             seconds=loop.time() - started)

    async def _reconcile(self, obj: dict[str, Any], patcher: SerialPatcher) -> Result:
        deps = self._deps
        now = deps.now()
        generation = int(obj["metadata"].get("generation", 0))
        status = ImagePolicyStatus.model_validate(obj.get("status") or {})
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
            conditions, result=result, error=error, is_success=succeeds_without_requeue,
            success_message=outcome.ready_message, requested_at=None,
            generation=generation, now=now)
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
        conditions = status.conditions
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
            policy = ImagePolicy.model_validate(obj)
        except ValidationError as err:
            raise StallingError(f"invalid policy: {describe_validation_error(err)}",
                                reason=meta.INVALID_POLICY_REASON) from err
        previous_image = status.latest_image or ""
        # 2. A failure below leaves latestImage empty.
        status.latest_image = None
        # 3. The referenced repository, subject to cross-namespace rules and its ACL.
        repo_obj = await self._repository(obj, policy)
        repo = ImageRepository.model_validate(repo_obj)
        if repo.status.last_scan_result is None:
            cond.mark_false(conditions, meta.READY, meta.DEPENDENCY_NOT_READY_REASON,
                            NOT_SCANNED_MESSAGE, generation=generation, now=deps.now())
            return Result()
        # 4. Policy and filter (a bad one needs a spec change), then the stored tags.
        try:
            policer = build_policer(policy_choice(policy))
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
            raise WaitingError("no tags in database", reason=meta.DEPENDENCY_NOT_READY_REASON)
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
        # 5. The result; previous image only moves when the result changes.
        image = repo.spec.image
        latest = f"{image}:{tag}"
        status.latest_image = latest
        if previous_image != latest:
            status.observed_previous_image = previous_image or None
        outcome.ready_message = compose_ready_message(
            image, tag, _previous_tag(status.observed_previous_image or ""))
        result = await self._reflect_digest(policy, status, repo_obj, image, tag)
        cond.delete(conditions, meta.READY)
        return result

    async def _reflect_digest(self, policy: ImagePolicy, status: ImagePolicyStatus,
                              repo_obj: Mapping[str, Any], image: str, tag: str) -> Result:
        mode = policy.spec.effective_digest_reflection_policy()
        old_ref = status.latest_ref
        if mode == "Never":
            status.latest_ref = ImageRef(name=image, tag=tag)
            return Result()
        digest = old_ref.digest if (old_ref is not None and old_ref.tag == tag
                                    and old_ref.name == image) else None
        if mode == "Always" or digest is None:
            try:
                digest = await self._deps.digests.digest(repo_obj, tag)
            except Exception as err:
                raise ReconcileError(f"failed to resolve digest of {image}:{tag}: {err}",
                                     reason=meta.READ_OPERATION_FAILED_REASON) from err
        status.latest_ref = ImageRef(name=image, tag=tag, digest=digest)
        if mode == "Always" and policy.spec.interval:
            # Re-checked on the interval: a re-pushed mutable tag changes the digest.
            return Result(requeue_after=parse_duration(policy.spec.interval) / SECOND)
        return Result()

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


@dataclass(slots=True)
class _Outcome:
    ready_message: str = ""

