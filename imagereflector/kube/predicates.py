"""Update predicates: which informer updates are worth a reconcile.

Role: pure functions over two raw object dicts (old, new), used by the informer handlers to
decide whether to enqueue. Creates and deletes always pass; they never reach these functions.

Invariants (contract §2.1, §3.1, spec §3.1):
- An update passes when ``metadata.generation`` changed, or the
  ``reconcile.fluxcd.io/requestedAt`` annotation changed or appeared. For ImagePolicies
  the annotation is Flux v1's trigger (v0.31 ignored it), in both compatibility modes.
- For both, the update that sets ``metadata.deletionTimestamp`` passes, and so does a
  finalizer change while the object is being deleted: otherwise a deletion that does not
  bump the generation would never run the finalizer-removal pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagereflector.api import meta


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def generation_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """``metadata.generation`` differs (a spec change)."""
    return _metadata(old).get("generation") != _metadata(new).get("generation")


def reconcile_requested(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The ``reconcile.fluxcd.io/requestedAt`` annotation appeared or changed value.

    Removing the annotation is not a request (RT ``ReconcileRequestedPredicate``).
    """
    new_value = _annotation(new, meta.RECONCILE_REQUEST_ANNOTATION)
    if new_value is None:
        return False
    return new_value != _annotation(old, meta.RECONCILE_REQUEST_ANNOTATION)


def deletion_started(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """``metadata.deletionTimestamp`` was newly set."""
    return (
        _metadata(old).get("deletionTimestamp") is None
        and _metadata(new).get("deletionTimestamp") is not None
    )


def finalizers_changed_while_deleting(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The finalizers changed on an object that carries a deletionTimestamp."""
    if _metadata(new).get("deletionTimestamp") is None:
        return False
    return list(_metadata(old).get("finalizers") or []) != list(
        _metadata(new).get("finalizers") or []
    )


def _deletion(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return deletion_started(old, new) or finalizers_changed_while_deleting(old, new)


def image_repository_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether an ImageRepository update should be reconciled (§2.1)."""
    return generation_changed(old, new) or reconcile_requested(old, new) or _deletion(old, new)


def image_policy_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether an ImagePolicy update should be reconciled (spec §3.1)."""
    return generation_changed(old, new) or reconcile_requested(old, new) or _deletion(old, new)


def _annotation(obj: Mapping[str, Any], key: str) -> str | None:
    annotations = _metadata(obj).get("annotations")
    if not isinstance(annotations, Mapping):
        return None
    value = annotations.get(key)
    return value if isinstance(value, str) else None
