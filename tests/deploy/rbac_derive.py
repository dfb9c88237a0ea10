"""Derive, from the source, every Kubernetes permission ``imagereflector controller`` uses.

Role: the static half of the RBAC contract. ``test_rbac`` compares what this module
finds with what ``manifests/rbac/`` grants, so adding an API call without granting it (or
granting something no code calls) fails the tests.

How the derivation works (all by AST, nothing is executed but the import of
``imagereflector.kube.client`` for its ``ResourceRef`` constants):

1. ``KubeClient``'s *generic* methods (``get``, ``list``, ``watch``, ``create``,
   ``replace``, ``patch``, ``delete``) take a ``ResourceRef`` first and map to one RBAC
   verb each (``GENERIC_VERBS``). Every other public method is classified from its body:
   the generic calls it makes on ``self`` with a constant (``get_secret`` → secrets/get),
   or with its own ``ref`` parameter (a ``patch_status(ref, …)`` wrapper would be a
   ``<ref>/status`` patch).
2. The modules the controller can run are those imported, transitively, from
   ``imagereflector.cli``, minus the other commands' modules (``CONTROLLER_EXCLUDES``).
3. In those modules every call of a ``KubeClient`` method is resolved: fixed-resource
   methods by name (whatever object they are called on: protocols and wrappers forward
   them); generic ones by their first argument, which must be a ``ResourceRef`` constant,
   an attribute of the enclosing class that holds a ``ResourceRef`` parameter, or a
   ``ResourceRef`` parameter of the enclosing function.
4. Classes and functions with a ``ResourceRef`` parameter (``Informer``,
   ``SerialPatcher``) are *consumers*: their verbs are the calls in their body on that
   parameter, and each call site that passes a constant grants those verbs on it.
5. Any other use of a ``ResourceRef`` constant, or a generic call whose first argument
   looks like a reference but cannot be resolved, is an :class:`UnderivableError`: the
   analysis refuses to guess, and this module must be taught the new pattern.

What it cannot see: calls made through ``getattr``/``eval``, or through a variable whose
name does not say it is a reference. Both would be odd in this code base and are what the
review of a change to ``kube/client.py`` is for.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from imagereflector.kube import client as kube_client
from imagereflector.kube.client import ResourceRef

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGE: Final = "imagereflector"
CLIENT_MODULE: Final = "imagereflector.kube.client"
CONTROLLER_ROOT: Final = "imagereflector.cli"
# The `scan`, `policy` and `install-crds` commands: never run by the deployed controller.
CONTROLLER_EXCLUDES: Final = frozenset({
    "imagereflector.app.install", "imagereflector.app.scan", "imagereflector.app.policy"})

GENERIC_VERBS: Final[Mapping[str, str]] = {
    "get": "get",
    "list": "list",
    "watch": "watch",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
}


class UnderivableError(Exception):
    """The source uses the Kubernetes client in a way this analysis does not understand."""


@dataclass(frozen=True, order=True, slots=True)
class Permission:
    """One RBAC grant: API group, resource (``plural`` or ``plural/subresource``), verb."""

    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.group or 'core'}:{self.resource}:{self.verb}"


@dataclass(frozen=True, slots=True)
class _Effect:
    """A verb on a reference: ``ref`` is a constant name, or None for "the parameter"."""

    ref: str | None
    verb: str
    subresource: str | None


@dataclass(slots=True)
class _Consumer:
    """A class or function taking a ``ResourceRef``: which parameter, and what it does."""

    params: dict[str, int | None] = field(default_factory=dict)  # name -> positional index
    effects: set[_Effect] = field(default_factory=set)


def resource_constants() -> dict[str, ResourceRef]:
    """The module-level ``ResourceRef`` constants of ``kube/client.py`` by name."""
    return {name: value for name, value in vars(kube_client).items()
            if isinstance(value, ResourceRef)}


def module_path(name: str, root: Path = ROOT) -> Path:
    """The source file of module ``name`` (a package's ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return (base / "__init__.py").is_file() or base.with_suffix(".py").is_file()


def reachable_modules(root_module: str = CONTROLLER_ROOT, *, root: Path = ROOT,
                      exclude: Iterable[str] = CONTROLLER_EXCLUDES) -> list[str]:
    """Modules of the package imported, transitively, from ``root_module``."""
    excluded = set(exclude)
    seen: set[str] = set()
    todo = [root_module]
    while todo:
        name = todo.pop()
        if name in seen or name in excluded or not _is_module(name, root):
            continue
        seen.add(name)
        tree = ast.parse(module_path(name, root).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:
                    package = name if module_path(name, root).name == "__init__.py" \
                        else name.rpartition(".")[0]
                    base = importlib.util.resolve_name("." * node.level + node.module, package)
                todo.append(base)
                todo.extend(f"{base}.{alias.name}" for alias in node.names)
            # Parent packages run their __init__ on import.
        for parent in _parents(name):
            todo.append(parent)
    return sorted(m for m in seen if m == PACKAGE or m.startswith(PACKAGE + "."))


def _parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def _literal_kw(call: ast.Call, key: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == key:
            if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                return kw.value.value
            if isinstance(kw.value, ast.Constant) and kw.value.value is None:
                return None
            raise UnderivableError(f"{key}= is not a literal at line {call.lineno}")
    return None


def _annotation_is_ref(annotation: ast.expr | None) -> bool:
    if annotation is None:
        return False
    text = ast.unparse(annotation)
    return text in ("ResourceRef", "client.ResourceRef", "kube_client.ResourceRef")


def client_method_effects(constants: Mapping[str, ResourceRef],
                          source: str | None = None) -> dict[str, set[_Effect]]:
    """What each public ``KubeClient`` method does, from ``kube/client.py``'s source."""
    text = source if source is not None else module_path(CLIENT_MODULE).read_text("utf-8")
    tree = ast.parse(text)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "KubeClient"),
               None)
    if cls is None:
        raise UnderivableError("class KubeClient not found in kube/client.py")
    methods = {n.name: n for n in cls.body
               if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)}
    effects: dict[str, set[_Effect]] = {
        name: {_Effect(None, verb, None)} for name, verb in GENERIC_VERBS.items()}
    missing = set(GENERIC_VERBS) - set(methods)
    if missing:
        raise UnderivableError(f"KubeClient lost generic methods {sorted(missing)}")

    def resolve(name: str, stack: tuple[str, ...]) -> set[_Effect]:
        if name in effects:
            return effects[name]
        if name in stack:
            raise UnderivableError(f"KubeClient.{name} is recursive")
        func = methods[name]
        params = [a.arg for a in func.args.args[1:] + func.args.kwonlyargs
                  if _annotation_is_ref(a.annotation)]
        found: set[_Effect] = set()
        for call in ast.walk(func):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "self"
                    and call.func.attr in methods and not call.func.attr.startswith("_")):
                continue
            inner = resolve(call.func.attr, (*stack, name))
            first = call.args[0] if call.args else None
            for effect in inner:
                sub = effect.subresource or _literal_kw(call, "subresource")
                if effect.ref is not None:
                    found.add(_Effect(effect.ref, effect.verb, sub))
                elif isinstance(first, ast.Name) and first.id in constants:
                    found.add(_Effect(first.id, effect.verb, sub))
                elif isinstance(first, ast.Name) and first.id in params:
                    found.add(_Effect(None, effect.verb, sub))
                else:
                    raise UnderivableError(
                        f"KubeClient.{name} calls {call.func.attr} on an unknown reference "
                        f"at line {call.lineno}")
        effects[name] = found
        return found

    for name in methods:
        if not name.startswith("_"):
            resolve(name, ())
    return effects


def _ref_params(func: ast.FunctionDef | ast.AsyncFunctionDef, *, skip_self: bool
                ) -> dict[str, int | None]:
    positional = func.args.posonlyargs + func.args.args
    if skip_self:
        positional = positional[1:]
    found: dict[str, int | None] = {
        a.arg: i for i, a in enumerate(positional) if _annotation_is_ref(a.annotation)}
    found.update({a.arg: None for a in func.args.kwonlyargs if _annotation_is_ref(a.annotation)})
    return found


def _class_consumer(cls: ast.ClassDef) -> tuple[dict[str, int | None], set[str]]:
    """A class's ResourceRef ``__init__`` parameters and the ``self`` attributes holding them."""
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None)
    if init is None:
        # A dataclass: annotated fields are the __init__ parameters and the attributes.
        names = [n.target.id for n in cls.body
                 if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
        fields = {n.target.id: n.annotation for n in cls.body
                  if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        params: dict[str, int | None] = {
            name: i for i, name in enumerate(names) if _annotation_is_ref(fields[name])}
        return params, set(params)
    params = _ref_params(init, skip_self=True)
    attrs: set[str] = set()
    for node in ast.walk(init):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = list(node.targets), node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Name) and value.id in params:
            attrs.update(t.attr for t in targets if isinstance(t, ast.Attribute)
                         and isinstance(t.value, ast.Name) and t.value.id == "self")
    return params, attrs


def _looks_like_ref(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    lowered = str(name).lower()
    return "ref" in lowered and not lowered.endswith("refs")


def _callee_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return ""


@dataclass(slots=True)
class _Module:
    """One module's tree with parent links, and its consumers."""

    name: str
    tree: ast.Module
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    classes: dict[ast.ClassDef, tuple[dict[str, int | None], set[str]]] = field(
        default_factory=dict)
    functions: dict[ast.AST, dict[str, int | None]] = field(default_factory=dict)
    consumers: dict[ast.AST, _Consumer] = field(default_factory=dict)

    def enclosing(self, node: ast.AST) -> Iterator[ast.AST]:
        current = self.parents.get(node)
        while current is not None:
            yield current
            current = self.parents.get(current)


@dataclass(slots=True)
class _Analysis:
    constants: Mapping[str, ResourceRef]
    methods: Mapping[str, set[_Effect]]
    consumers: dict[str, list[_Consumer]] = field(default_factory=dict)
    effects: set[_Effect] = field(default_factory=set)

    def generic(self, name: str) -> bool:
        return any(e.ref is None for e in self.methods.get(name, ()))


def _load_module(name: str, text: str, analysis: _Analysis) -> _Module:
    mod = _Module(name=name, tree=ast.parse(text))
    for node in ast.walk(mod.tree):
        for child in ast.iter_child_nodes(node):
            mod.parents[child] = node
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ClassDef):
            params, attrs = _class_consumer(node)
            if params:
                mod.classes[node] = (params, attrs)
                consumer = _Consumer(params=params)
                mod.consumers[node] = consumer
                analysis.consumers.setdefault(node.name, []).append(consumer)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # Protocols mirroring KubeClient methods are not consumers: calls to them
            # are client calls, resolved by their first argument.
            if node.name in analysis.methods or node.name == "__init__":
                continue
            in_class = isinstance(mod.parents.get(node), ast.ClassDef)
            fparams = _ref_params(node, skip_self=in_class)
            if fparams:
                mod.functions[node] = fparams
                consumer = _Consumer(params=fparams)
                mod.consumers[node] = consumer
                analysis.consumers.setdefault(node.name, []).append(consumer)
    return mod


def _holder(mod: _Module, node: ast.expr) -> _Consumer | None:
    """The consumer whose ResourceRef parameter ``node`` is, or None."""
    if isinstance(node, ast.Name):
        for scope in mod.enclosing(node):
            if scope in mod.functions and node.id in mod.functions[scope]:
                return _scope_consumer(mod, scope)
            if (isinstance(scope, ast.FunctionDef) and scope.name == "__init__"
                    and isinstance(mod.parents.get(scope), ast.ClassDef)):
                cls = mod.parents[scope]
                assert isinstance(cls, ast.ClassDef)
                if cls in mod.classes and node.id in mod.classes[cls][0]:
                    return _scope_consumer(mod, cls)
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "self"):
        for scope in mod.enclosing(node):
            if isinstance(scope, ast.ClassDef):
                if scope in mod.classes and node.attr in mod.classes[scope][1]:
                    return _scope_consumer(mod, scope)
                break
    return None


def _scope_consumer(mod: _Module, scope: ast.AST) -> _Consumer:
    return mod.consumers[scope]


def _resolve_calls(mod: _Module, analysis: _Analysis) -> None:
    """Attribute every KubeClient call in ``mod`` to a constant or to a consumer."""
    for call in ast.walk(mod.tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr in analysis.methods):
            continue
        method = call.func.attr
        first = call.args[0] if call.args else None
        for effect in analysis.methods[method]:
            if effect.ref is not None:
                analysis.effects.add(effect)
                continue
            sub = effect.subresource or _literal_kw(call, "subresource")
            if isinstance(first, ast.Name) and first.id in analysis.constants:
                analysis.effects.add(_Effect(first.id, effect.verb, sub))
                continue
            holder = _holder(mod, first) if first is not None else None
            if isinstance(holder, _Consumer):
                holder.effects.add(_Effect(None, effect.verb, sub))
            elif first is not None and _looks_like_ref(first):
                raise UnderivableError(
                    f"{mod.name}: .{method}({ast.unparse(first)}, ...) at line {call.lineno} "
                    "uses a reference this analysis cannot resolve")


def _check_ref_loads(mod: _Module, analysis: _Analysis) -> None:
    """A reference held by a consumer may only be read, returned, stored or used in a call."""
    for node in ast.walk(mod.tree):
        if not (isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load)):
            continue
        if isinstance(node, ast.Name) and node.id in analysis.constants:
            continue  # checked by _constant_uses
        if not isinstance(_holder(mod, node), _Consumer):
            continue
        parent = mod.parents.get(node)
        if isinstance(parent, ast.Attribute | ast.Return):
            continue  # ref.plural, or a property handing it out (then used as `.ref`)
        if isinstance(parent, ast.Assign) and all(
                isinstance(t, ast.Attribute) for t in parent.targets):
            continue  # self._ref = ref
        if isinstance(parent, ast.AnnAssign) and isinstance(parent.target, ast.Attribute):
            continue  # self._ref: ResourceRef = ref
        if (isinstance(parent, ast.Call) and parent.args and parent.args[0] is node
                and _callee_name(parent) in analysis.methods):
            continue  # a client call, resolved by _resolve_calls
        raise UnderivableError(
            f"{mod.name}: the reference {ast.unparse(node)} at line {node.lineno} is passed on "
            "in a way the RBAC derivation does not follow")


def _constant_uses(mod: _Module, analysis: _Analysis) -> None:
    """Resolve every use of a ResourceRef constant; anything unexplained is an error."""
    for node in ast.walk(mod.tree):
        if not (isinstance(node, ast.Name) and node.id in analysis.constants
                and isinstance(node.ctx, ast.Load)):
            continue
        parent = mod.parents.get(node)
        if isinstance(parent, ast.Attribute):
            continue  # CONST.plural and friends: reading a field makes no call
        position: int | str
        if isinstance(parent, ast.keyword):
            call = mod.parents.get(parent)
            position = str(parent.arg)
        elif isinstance(parent, ast.Call) and node in parent.args:
            call = parent
            position = parent.args.index(node)
        else:
            raise UnderivableError(
                f"{mod.name}: {node.id} used at line {node.lineno} in a way the RBAC "
                "derivation does not understand (pass it straight to a client call "
                "or to a class/function with a ResourceRef parameter)")
        assert isinstance(call, ast.Call)
        name = _callee_name(call)
        if position == 0 and analysis.generic(name):
            continue  # a direct client call, counted by _resolve_calls
        consumers = analysis.consumers.get(name)
        if not consumers:
            raise UnderivableError(
                f"{mod.name}: {node.id} passed to {name or '?'}() at line {node.lineno}, "
                "which has no ResourceRef parameter in the controller's modules")
        for consumer in consumers:
            if not any(p == position or (index is not None and index == position)
                       for p, index in consumer.params.items()):
                raise UnderivableError(
                    f"{mod.name}: {node.id} passed to {name}() at line {node.lineno} in "
                    "a position that is not its ResourceRef parameter")
            analysis.effects.update(_Effect(node.id, e.verb, e.subresource)
                                    for e in consumer.effects)


def derive(sources: Mapping[str, str], *, client_source: str | None = None) -> set[Permission]:
    """Every permission the code in ``sources`` (module name → source) uses."""
    constants = resource_constants()
    analysis = _Analysis(constants=constants,
                         methods=client_method_effects(constants, client_source))
    modules = [_load_module(name, text, analysis) for name, text in sorted(sources.items())
               if name != CLIENT_MODULE]
    for mod in modules:
        _resolve_calls(mod, analysis)
        _check_ref_loads(mod, analysis)
    for mod in modules:
        _constant_uses(mod, analysis)
    permissions: set[Permission] = set()
    for effect in analysis.effects:
        assert effect.ref is not None
        ref = constants[effect.ref]
        resource = ref.plural + (f"/{effect.subresource}" if effect.subresource else "")
        permissions.add(Permission(ref.group, resource, effect.verb))
    return permissions


def controller_permissions() -> set[Permission]:
    """The permissions of ``imagereflector controller`` as the source stands."""
    sources = {name: module_path(name).read_text(encoding="utf-8")
               for name in reachable_modules()}
    return derive(sources)
