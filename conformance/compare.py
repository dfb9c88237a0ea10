"""Comparing two peers' checkpoints, field by field, against the list of deliberate
differences.

An observation is flattened to ``path -> value`` (``status.conditions[Ready].message``,
``events[Warning ReadOperationFailed]``, ``get.TAGS``...). Every path where the two peers
disagree is a ``Difference``; each is then either explained by a rule of
``deliberate.RULES`` (a difference this project chose, with its reason) or left
unexplained. A scenario's verdict is ``same`` (no difference), ``deliberate`` (only
explained ones) or ``differs`` (at least one unexplained).

Invariant: comparison is symmetric in what it finds (a path present on one side only is
a difference with ``None`` on the other) and never looks at anything normalisation
removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """Both peers' flattened observations of the object a difference is about."""

    ours: Mapping[str, Any]
    theirs: Mapping[str, Any]

    def ready(self, side: str, field_name: str = "message") -> Any:
        """A field of the Ready condition on one side (``ours`` or ``theirs``)."""
        flat = self.ours if side == "ours" else self.theirs
        return flat.get(f"status.conditions[Ready].{field_name}")


@dataclass(frozen=True, slots=True)
class Difference:
    """One path where ours and the reference peer disagree at one checkpoint."""

    scenario: str
    checkpoint: int
    label: str
    obj: str
    path: str
    ours: Any
    theirs: Any
    rule: str = ""
    context: Context = field(default_factory=lambda: Context({}, {}), compare=False,
                             repr=False)

    def message_pairs(self) -> list[tuple[str, str]]:
        """The (ours, theirs) message pairs this difference is a consequence of.

        The Ready message and the ``kubectl get`` STATUS cell pair the two Ready messages.
        An Event only one side recorded pairs its message with each message the other
        side has and this side lacks: the other's Ready message and its own unmatched
        Events of the same type and reason (an older failure both peers reported in their
        own words).
        """
        ours, theirs = self.context.ready("ours"), self.context.ready("theirs")
        if self.path in ("status.conditions[Ready].message", "get.STATUS"):
            return [(ours, theirs)] if isinstance(ours, str) and isinstance(theirs, str) else []
        if not (self.path.startswith("events[") and ": " in self.path):
            return []
        kind_reason, message = self.path[len("events["):-1].split(": ", 1)
        mine = self.ours is not None
        other = self.context.theirs if mine else self.context.ours
        this = self.context.ours if mine else self.context.theirs
        prefix = f"events[{kind_reason}: "
        candidates = [key[len(prefix):-1] for key in other
                      if key.startswith(prefix) and key not in this]
        ready_other = theirs if mine else ours
        if isinstance(ready_other, str):
            candidates.append(ready_other)
        return [(message, c) if mine else (c, message) for c in candidates]

    def dump(self) -> JSON:
        """JSON for reports."""
        return {"scenario": self.scenario, "checkpoint": self.checkpoint, "step": self.label,
                "object": self.obj, "path": self.path, "ours": self.ours,
                "theirs": self.theirs, "rule": self.rule}


def flatten(observation: Mapping[str, Any]) -> dict[str, Any]:
    """``path -> value`` of one object's observation."""
    flat: dict[str, Any] = {}
    status = observation.get("status")
    if observation.get("exists") is False:
        return {"exists": False}
    if isinstance(status, Mapping):
        for key, value in status.items():
            if key == "conditions" and isinstance(value, list):
                for condition in value:
                    kind = condition.get("type")
                    for field_name in ("status", "reason", "message", "observedGeneration"):
                        flat[f"status.conditions[{kind}].{field_name}"] = condition.get(
                            field_name)
            elif isinstance(value, Mapping):
                for sub, inner in value.items():
                    flat[f"status.{key}.{sub}"] = _plain(inner)
            else:
                flat[f"status.{key}"] = _plain(value)
    for event in observation.get("events") or []:
        flat[f"events[{event['type']} {event['reason']}: {event['message']}]"] = event["count"]
    for column, cell in (observation.get("get") or {}).items():
        flat[f"get.{column}"] = cell
    return flat


def _plain(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def differences(scenario: str, ours: Sequence[JSON], theirs: Sequence[JSON]
                ) -> list[Difference]:
    """Every difference between two peers' checkpoints of one scenario."""
    found: list[Difference] = []
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=False)):
        label = str(mine.get("label", ""))
        if "error" in mine or "error" in other:
            found.append(Difference(scenario, index, label, "", "error", mine.get("error"),
                                    other.get("error")))
            continue
        objects = sorted(set(mine["objects"]) | set(other["objects"]))
        for key in objects:
            left = flatten(mine["objects"].get(key) or {"exists": False})
            right = flatten(other["objects"].get(key) or {"exists": False})
            context = Context(left, right)
            for path in sorted(set(left) | set(right)):
                if left.get(path) != right.get(path):
                    found.append(Difference(scenario, index, label, key, path,
                                            left.get(path), right.get(path),
                                            context=context))
    if len(ours) != len(theirs):
        found.append(Difference(scenario, min(len(ours), len(theirs)), "", "", "checkpoints",
                                len(ours), len(theirs)))
    return found


@dataclass(frozen=True, slots=True)
class Verdict:
    """A scenario's outcome against one reference peer."""

    scenario: str
    explained: tuple[Difference, ...]
    unexplained: tuple[Difference, ...]

    @property
    def word(self) -> str:
        """``same``, ``deliberate`` or ``differs``."""
        if self.unexplained:
            return "differs"
        return "deliberate" if self.explained else "same"


def judge(scenario: str, found: Iterable[Difference],
          explain: Any) -> Verdict:
    """Split ``found`` into explained (by ``explain(diff) -> rule id or ''``) and not."""
    explained, unexplained = [], []
    for diff in found:
        rule = explain(diff)
        if rule:
            explained.append(replace(diff, rule=rule))
        else:
            unexplained.append(diff)
    return Verdict(scenario, tuple(explained), tuple(unexplained))
