"""Runs scenarios against running peers and records what each peer did.

For every scenario the runner makes one instance per peer (its namespaces and labelled
copies of the objects), then repeats: apply the step (registry changes once, object
changes per peer), wait until every image object of every instance has settled, and
record a checkpoint: per object its normalised status, the Events about it, and the
``kubectl get`` rows of its namespace.

Settled means: Ready is True or False for the object's current generation, Reconciling
is not a mid-reconcile ``Progressing``, every reconcile request of the step is handled
(``lastHandledReconcileAt``), and nothing changed for a second; or nothing changed for
five seconds (objects that never get a status, such as suspended ones). A checkpoint
that does not settle within a minute is recorded anyway and marked unsettled.

Invariant: instances of different peers never share a namespace or an object; the
registry state is the same for all peers at every checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conformance import normalize
from conformance.kube import IMAGE_GROUP, Kube
from conformance.model import REQUESTED_AT, Scenario, Step
from conformance.peers import PEER_LABEL, PEERS
from conformance.world import World

JSON = dict[str, Any]
IMAGE_KINDS = ("ImageRepository", "ImagePolicy")
SCENARIO_LABEL = "conformance.imagereflector.io/scenario"
SHORT = {"ours": "o", "ours-v1.2": "o12", "flux-v0.31": "f031", "flux-v1.2": "f12"}
QUIET = 1.0
IDLE = 5.0
SETTLE_WITHIN = 60.0
_PLACEHOLDER = re.compile(r"\{(ns[0-9]*)\}")


@dataclass
class Instance:
    """One peer's copy of one scenario (implements ``model.Space``)."""

    peer: str
    scenario: Scenario
    world: World
    kube: Kube
    kubectl: list[str]
    objects: list[tuple[str, str, str]] = field(default_factory=list)  # kind, real ns, name
    requests: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def namespace(self, placeholder: str) -> str:
        """``<scenario>-<placeholder>-<peer>``, at most 63 characters."""
        return f"{self.scenario.name[:45]}-{placeholder}-{SHORT[self.peer]}"

    def names(self, world: World) -> normalize.Names:
        """The real-to-stable name map of this instance."""
        real = {self.namespace(p): "{" + p + "}" for p in self.scenario.namespaces}
        return normalize.Names(namespaces=real,
                               hosts={host: role for role, host in world.hosts().items()})

    def resolve(self, raw: Any) -> Any:
        """``raw`` with ``{ns}`` placeholders replaced by this peer's namespaces."""
        if isinstance(raw, dict):
            return {k: self.resolve(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.resolve(v) for v in raw]
        if isinstance(raw, str):
            return _PLACEHOLDER.sub(lambda m: self.namespace(m.group(1)), raw)
        return raw

    async def create(self, obj: JSON) -> None:
        """Create a resolved, labelled copy of ``obj``."""
        resolved: JSON = self.resolve(obj)
        meta = resolved.setdefault("metadata", {})
        if resolved["kind"] in IMAGE_KINDS:
            meta.setdefault("labels", {})[PEER_LABEL] = self.peer
            self.objects.append((resolved["kind"], meta["namespace"], meta["name"]))
        await self.kube.create(resolved)

    async def patch(self, kind: str, placeholder: str, name: str, patch: JSON) -> None:
        """Merge-patch one of this peer's objects."""
        namespace = self.namespace(placeholder.strip("{}"))
        annotations = (patch.get("metadata") or {}).get("annotations") or {}
        if REQUESTED_AT in annotations:
            self.requests[(kind, namespace, name)] = str(annotations[REQUESTED_AT])
        await self.kube.patch(kind, namespace, name, patch)

    async def delete(self, kind: str, placeholder: str, name: str) -> None:
        """Delete one of this peer's objects."""
        namespace = self.namespace(placeholder.strip("{}"))
        await self.kube.delete(kind, namespace, name)

    async def label_namespace(self, placeholder: str, labels: Mapping[str, str]) -> None:
        """Set the namespace's scenario labels (the scenario label itself stays)."""
        namespace = self.namespace(placeholder.strip("{}"))
        current = await self.kube.get("Namespace", None, namespace) or {}
        old = (current.get("metadata") or {}).get("labels") or {}
        patch: dict[str, str | None] = {k: None for k in old if k != SCENARIO_LABEL
                                        and not k.startswith("kubernetes.io/")}
        patch.update(labels)
        await self.kube.patch("Namespace", None, namespace, {"metadata": {"labels": patch}})


@dataclass
class Checkpoint:
    """What every object of one instance looked like after one step."""

    label: str
    settled: bool
    objects: dict[str, JSON]

    def dump(self) -> JSON:
        """JSON for the recorded outcomes."""
        return {"label": self.label, "settled": self.settled, "objects": self.objects}


def _settled(obj: JSON | None, token: str | None) -> bool:
    if obj is None:
        return True
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready")
    generation = (obj.get("metadata") or {}).get("generation")
    if ready is None or ready.get("status") not in ("True", "False"):
        return False
    if ready.get("observedGeneration") != generation:
        return False
    reconciling = conditions.get("Reconciling")
    if reconciling is not None and reconciling.get("reason") == "Progressing":
        return False
    return token is None or status.get("lastHandledReconcileAt") == token


async def settle(instances: Sequence[Instance]) -> bool:
    """Wait until every image object of every instance settled; False on the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_WITHIN
    last: dict[tuple[str, str, str, str], tuple[str, float]] = {}
    while True:
        now = loop.time()
        pending = 0
        for inst in instances:
            for kind, namespace, name in inst.objects:
                obj = await inst.kube.get(kind, namespace, name)
                key = (inst.peer, kind, namespace, name)
                snapshot = json.dumps(obj.get("status") if obj else None, sort_keys=True)
                seen, since = last.get(key, ("", now))
                if seen != snapshot:
                    last[key] = (snapshot, now)
                    since = now
                quiet = now - since
                token = inst.requests.get((kind, namespace, name))
                done = (_settled(obj, token) and quiet >= QUIET) or quiet >= IDLE
                pending += not done
        if not pending:
            return True
        if now >= deadline:
            return False
        await asyncio.sleep(0.25)


async def _settled_copy(inst: Instance, kind: str, namespace: str, name: str) -> JSON | None:
    """The object once it shows a settled status: a retry may have started since ``settle``
    returned, and its progress patch is not the outcome to record (give up after 10 s)."""
    token = inst.requests.get((kind, namespace, name))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:
        obj = await inst.kube.get(kind, namespace, name)
        status = (obj or {}).get("status") or {}
        if _settled(obj, token) or not status.get("conditions") or loop.time() >= deadline:
            return obj
        await asyncio.sleep(0.1)


async def _kubectl_get(inst: Instance, namespace: str) -> str:
    # The version is named: a bare `kubectl get` shows the preferred version's columns
    # (v1), and a Flux 2.2 user reads v1beta2's.
    version = PEERS[inst.peer].api_version
    resources = ",".join(f"{plural}.{version}.{IMAGE_GROUP}"
                         for plural in ("imagerepositories", "imagepolicies"))
    process = await asyncio.create_subprocess_exec(
        *inst.kubectl, "get", resources, "-n", namespace,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return out.decode()


async def observe(inst: Instance, world: World, label: str, settled: bool) -> Checkpoint:
    """One checkpoint of ``inst``: status, events and table rows of every image object."""
    names = inst.names(world)
    events_by_ns: dict[str, list[JSON]] = {}
    tables: dict[str, dict[str, dict[str, str]]] = {}
    for namespace in {ns for _, ns, _ in inst.objects}:
        events_by_ns[namespace] = await inst.kube.list("Event", namespace)
        tables[namespace] = normalize.table(await _kubectl_get(inst, namespace), names)
    objects: dict[str, JSON] = {}
    for kind, namespace, name in inst.objects:
        obj = await _settled_copy(inst, kind, namespace, name)
        key = f"{kind}/{names.text(namespace)}/{name}"
        if obj is None:
            objects[key] = {"exists": False}
            continue
        events = sorted(
            (normalize.event(e, names) for e in events_by_ns[namespace]
             if (e.get("involvedObject") or {}).get("kind") == kind
             and (e.get("involvedObject") or {}).get("name") == name),
            key=lambda e: (e["type"], e["reason"], e["message"]))
        row = next((cells for shown, cells in tables[namespace].items()
                    if shown.split("/")[-1] == name and shown.split("/")[0].lower()
                    in (kind.lower(), f"{kind.lower()}.{IMAGE_GROUP}")), {})
        objects[key] = {"status": normalize.status(obj.get("status"), names),
                        "events": events, "get": row}
    return Checkpoint(label=label, settled=settled, objects=objects)


async def run_scenario(scenario: Scenario, world: World, kube: Kube, peers: Sequence[str],
                       kubectl: list[str]) -> dict[str, list[Checkpoint]]:
    """Run ``scenario`` for every peer at once; checkpoints per peer."""
    instances = [Instance(peer=p, scenario=scenario, world=world, kube=kube, kubectl=kubectl)
                 for p in peers]
    for inst in instances:
        for placeholder, labels in scenario.namespaces.items():
            await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": inst.namespace(placeholder),
                "labels": {SCENARIO_LABEL: scenario.name, **labels}}})
    if scenario.prepare is not None:
        await scenario.prepare(world)
    # Policies come after their repositories have settled: otherwise each peer's first
    # policy reconcile races its repository's first scan, and the outcome (an early
    # "not scanned yet") says more about timing than about the controller.
    objects = scenario.build(world)
    later = [o for o in objects if o["kind"] == "ImagePolicy"]
    for inst in instances:
        for obj in objects:
            if obj["kind"] != "ImagePolicy":
                await inst.create(obj)
    if later:
        await settle(instances)
        for inst in instances:
            for obj in later:
                await inst.create(obj)
    results: dict[str, list[Checkpoint]] = {inst.peer: [] for inst in instances}
    steps: list[Step | None] = [None, *scenario.steps]
    for step in steps:
        label = "created"
        if step is not None:
            label = step.label
            if step.shared is not None:
                await step.shared(world)
            if step.per_peer is not None:
                for inst in instances:
                    await step.per_peer(inst)
        settled = await settle(instances)
        await asyncio.sleep(QUIET)  # events are written after the status they follow
        for inst in instances:
            results[inst.peer].append(await observe(inst, world, label, settled))
    return results
