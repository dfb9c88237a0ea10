"""Scenarios as data: objects to create, steps to take, what each scenario covers.

A scenario's objects are written once, with namespace placeholders (``{ns}``, ``{ns2}``),
and instantiated per peer: each peer gets its own namespaces (``<scenario>-<ns>-<peer>``)
and its copies carry the peer's label, so one API server holds every peer's copy. The
registry is shared: a step that pushes tags or breaks a registry happens once, for all
peers at the same moment; a step on Kubernetes objects (annotate, patch, delete, label a
namespace) happens once per peer.

After the objects are created and after every step, the runner waits for every object to
settle and records one checkpoint of observations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conformance.world import World

JSON = dict[str, Any]
IMAGE_API = "image.toolkit.fluxcd.io/v1beta2"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


class Space(Protocol):
    """One peer's instance of a scenario (implemented by the runner)."""

    peer: str
    world: World

    def namespace(self, placeholder: str) -> str:
        """The real namespace of ``placeholder`` for this peer."""
        ...

    async def create(self, obj: JSON) -> None:
        """Create ``obj`` (placeholders resolved, peer label added)."""
        ...

    async def patch(self, kind: str, placeholder: str, name: str, patch: JSON) -> None:
        """Merge-patch an object of this peer."""
        ...

    async def delete(self, kind: str, placeholder: str, name: str) -> None:
        """Delete an object of this peer."""
        ...

    async def label_namespace(self, placeholder: str, labels: Mapping[str, str]) -> None:
        """Replace the scenario labels of a namespace of this peer."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    """One change to the world; ``requests`` names objects annotated with requestedAt."""

    label: str
    shared: Callable[[World], Awaitable[None]] | None = None
    per_peer: Callable[[Space], Awaitable[None]] | None = None
    # (kind, placeholder namespace, name, token) of requestedAt annotations this step sets
    requests: tuple[tuple[str, str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named situation: its objects, the steps taken, and what it covers."""

    name: str
    title: str
    covers: tuple[str, ...]
    build: Callable[[World], Sequence[JSON]]
    namespaces: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"ns": {}})
    prepare: Callable[[World], Awaitable[None]] | None = None
    steps: tuple[Step, ...] = ()


# --- object builders -------------------------------------------------------------------


def repository(name: str, image: str, *, ns: str = "{ns}", interval: str = "1h",
               **spec: Any) -> JSON:
    """An ImageRepository manifest in a placeholder namespace."""
    return {"apiVersion": IMAGE_API, "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"image": image, "interval": interval, **spec}}


def policy(name: str, repo: str, choice: JSON | None, *, ns: str = "{ns}",
           repo_ns: str | None = None, **spec: Any) -> JSON:
    """An ImagePolicy manifest; ``choice`` is ``spec.policy`` (None leaves it out)."""
    ref: JSON = {"name": repo}
    if repo_ns is not None:
        ref["namespace"] = repo_ns
    body: JSON = {"imageRepositoryRef": ref, **spec}
    if choice is not None:
        body["policy"] = choice
    return {"apiVersion": IMAGE_API, "kind": "ImagePolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": body}


def secret(name: str, data: Mapping[str, str], *, ns: str = "{ns}",
           type_: str = "kubernetes.io/dockerconfigjson") -> JSON:
    """A Secret with base64 ``data`` values."""
    return {"apiVersion": "v1", "kind": "Secret", "type": type_,
            "metadata": {"name": name, "namespace": ns}, "data": dict(data)}


def service_account(name: str, pull_secrets: Sequence[str], *, ns: str = "{ns}") -> JSON:
    """A ServiceAccount with ``imagePullSecrets``."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns},
            "imagePullSecrets": [{"name": s} for s in pull_secrets]}


# --- steps -------------------------------------------------------------------------------


def push(role: str, repo: str, tags: Sequence[str]) -> Step:
    """Add ``tags`` to ``repo`` of a registry (for every peer at once)."""
    async def run(world: World) -> None:
        world.registry_of(role).write_tags(repo, list(tags))
    return Step(f"push {', '.join(tags)} to {role}/{repo}", shared=run)


def request_reconcile(kind: str, name: str, *, token: str = "request-1",  # noqa: S107
                      ns: str = "{ns}") -> Step:
    """Annotate an object with ``reconcile.fluxcd.io/requestedAt`` as ``flux reconcile``
    does; ``token`` is the same for every peer (a scenario that asks twice uses two)."""
    async def run(space: Space) -> None:
        await space.patch(kind, ns, name, {"metadata": {"annotations": {REQUESTED_AT: token}}})
    return Step(f"request a reconcile of {kind}/{name}", per_peer=run,
                requests=((kind, ns, name, token),))


def patch_step(label: str, kind: str, name: str, patch: JSON, *, ns: str = "{ns}") -> Step:
    """Merge-patch an object (spec change, suspend, resume)."""
    async def run(space: Space) -> None:
        await space.patch(kind, ns, name, patch)
    return Step(label, per_peer=run)


def delete_step(kind: str, name: str, *, ns: str = "{ns}") -> Step:
    """Delete an object (a Secret, a repository)."""
    async def run(space: Space) -> None:
        await space.delete(kind, ns, name)
    return Step(f"delete {kind}/{name}", per_peer=run)


def label_namespace(placeholder: str, labels: Mapping[str, str]) -> Step:
    """Set the scenario labels of a namespace (cross-namespace access)."""
    async def run(space: Space) -> None:
        await space.label_namespace(placeholder, labels)
    return Step(f"label namespace {placeholder} {dict(labels)}", per_peer=run)


def break_front(front: str, status: int = 503) -> Step:
    """Make a fault front answer ``status`` to everything until healed."""
    async def run(world: World) -> None:
        world.faults[front].fail_next(1_000_000, status=status)
    return Step(f"break {front} ({status})", shared=run)


def heal_front(front: str) -> Step:
    """Let a fault front proxy again."""
    async def run(world: World) -> None:
        world.faults[front].heal()
    return Step(f"heal {front}", shared=run)


def both(label: str, *steps: Step) -> Step:
    """Several steps taken as one (one checkpoint after all of them)."""
    async def shared(world: World) -> None:
        for step in steps:
            if step.shared is not None:
                await step.shared(world)

    async def per_peer(space: Space) -> None:
        for step in steps:
            if step.per_peer is not None:
                await step.per_peer(space)
    return Step(label, shared=shared, per_peer=per_peer,
                requests=tuple(r for s in steps for r in s.requests))
