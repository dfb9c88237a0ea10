"""Selectors and patches for the fake Kubernetes API server: pure functions on JSON.

Role: parse and evaluate ``labelSelector``/``fieldSelector`` query values, and apply JSON
merge patches (RFC 7386) and JSON patches (RFC 6902) the way the API server does.

Invariants:
* Label selectors follow apimachinery's grammar: ``k``, ``!k``, ``k=v``, ``k==v``,
  ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>n``, ``k<n``, comma-separated (AND).
  ``!=`` and ``notin`` match objects without the label, as in Kubernetes.
* Field selectors accept ``=``, ``==`` and ``!=`` on the labels a resource declares;
  any other label is a 400, as on the real server.
* Patch functions never mutate their inputs; malformed patches raise ``ApiStatusError``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fakes.kubeapi_types import JSON, ApiStatusError, bad_request

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_OP_RE = re.compile(rf"^({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})$")
_EXISTS_RE = re.compile(rf"^(!?)\s*({_KEY})$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    op: str
    """``exists``, ``!``, ``=``, ``!=``, ``in``, ``notin``, ``>`` or ``<``."""
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether an object with ``labels`` satisfies this clause."""
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present:
            return False
        try:
            have, want = int(value), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == ">" else have < want


def _split_clauses(text: str) -> list[str]:
    """Split at commas outside parentheses (set values contain commas)."""
    clauses: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            clauses.append("".join(current))
            current = []
        else:
            current.append(ch)
    clauses.append("".join(current))
    return [c.strip() for c in clauses]


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a ``labelSelector`` query value; empty or None selects everything."""
    if not text or not text.strip():
        return ()
    requirements: list[Requirement] = []
    for clause in _split_clauses(text):
        if m := _SET_RE.match(clause):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _OP_RE.match(clause):
            op = "=" if m.group(2) == "==" else m.group(2)
            if op in (">", "<") and not re.fullmatch(r"-?\d+", m.group(3)):
                raise bad_request(f"unable to parse requirement: {clause!r}: not an integer")
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := _EXISTS_RE.match(clause):
            requirements.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found {clause!r}")
    return tuple(requirements)


def labels_match(requirements: Sequence[Requirement], obj: JSON) -> bool:
    """Whether ``obj``'s labels satisfy every requirement."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One clause of a field selector."""

    field: str
    value: str
    negate: bool

    def matches(self, obj: JSON) -> bool:
        """Whether ``obj``'s field equals (or, negated, differs from) the value."""
        current: Any = obj
        for part in self.field.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        text = "" if current is None else str(current)
        return (text == self.value) != self.negate


def parse_field_selector(text: str | None, allowed: Sequence[str]) -> tuple[FieldRequirement, ...]:
    """Parse a ``fieldSelector`` query value against the labels a resource supports."""
    if not text or not text.strip():
        return ()
    requirements: list[FieldRequirement] = []
    for clause in (c.strip() for c in text.split(",")):
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", clause)
        if m is None:
            raise bad_request(f"invalid selector: {text!r}; can't understand {clause!r}")
        name, op, value = m.groups()
        if name not in allowed:
            raise bad_request(f'field label not supported: {name}')
        requirements.append(FieldRequirement(name, value, op == "!="))
    return tuple(requirements)


def fields_match(requirements: Sequence[FieldRequirement], obj: JSON) -> bool:
    """Whether ``obj`` satisfies every field requirement."""
    return all(r.matches(obj) for r in requirements)


# --- patches -----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch; ``null`` deletes, objects merge, all else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _patch_error(f"JSON pointer {pointer!r} does not start with '/'")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _patch_error(message: str) -> ApiStatusError:
    # The API server reports inapplicable JSON patches as 422 with the jsonpatch error text.
    return ApiStatusError(422, "Invalid", message)


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise _patch_error(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise _patch_error(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise _patch_error(f"missing path element {token!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, allow_end=False)]
        else:
            raise _patch_error(f"path element {token!r} is not a container")
    return current


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _patch_error(f"missing value at {last!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise _patch_error(f"path element {last!r} is not a container")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise _patch_error(f"cannot add to non-container at {last!r}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _patch_error("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _patch_error(f"cannot remove missing key {last!r}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, allow_end=False)]
    else:
        raise _patch_error(f"cannot remove from non-container at {last!r}")
    return doc


def _op_replace(doc: Any, op: JSON) -> Any:
    tokens = _parse_pointer(str(op["path"]))
    _get(doc, tokens)
    return _add(_remove(doc, tokens) if tokens else doc, tokens, copy.deepcopy(op["value"]))


def _op_move(doc: Any, op: JSON) -> Any:
    source = _parse_pointer(str(op["from"]))
    value = _get(doc, source)
    return _add(_remove(doc, source), _parse_pointer(str(op["path"])), value)


def _op_test(doc: Any, op: JSON) -> Any:
    if _get(doc, _parse_pointer(str(op["path"]))) != op["value"]:
        raise _patch_error(f"testing value {op['path']} failed")
    return doc


_OPS: dict[str, Callable[[Any, JSON], Any]] = {
    "add": lambda d, op: _add(d, _parse_pointer(str(op["path"])), copy.deepcopy(op["value"])),
    "remove": lambda d, op: _remove(d, _parse_pointer(str(op["path"]))),
    "replace": _op_replace,
    "move": _op_move,
    "copy": lambda d, op: _add(
        d, _parse_pointer(str(op["path"])),
        copy.deepcopy(_get(d, _parse_pointer(str(op["from"])))),
    ),
    "test": _op_test,
}


def json_patch(target: JSON, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (all operations or none)."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    doc: Any = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in _OPS:
            raise bad_request(f"unknown json patch operation: {op!r}")
        try:
            doc = _OPS[str(op["op"])](doc, op)
        except KeyError as err:
            raise bad_request(f"json patch operation {op['op']!r} lacks {err}") from err
    return doc
