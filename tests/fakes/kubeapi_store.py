"""The object store behind the fake Kubernetes API server: etcd plus the registry strategies.

Role: every read and write of the fake (HTTP or Python-side) goes through :class:`Store`,
so resourceVersion, generation, finalizers and watch events are the same either way.
All methods are synchronous: one write is atomic with respect to the event loop, which
is what makes "register a watcher, then replay history" race-free.

Invariants (each mirrors the real API server):
* One global resourceVersion counter; every stored change bumps it exactly once and is
  appended to a bounded history that watches resume from. A write that changes nothing
  (ignoring resourceVersion) stores nothing and emits no event, as etcd3's store does.
* ``generation`` (kinds with ``has_generation``) starts at 1 and bumps when anything but
  ``metadata`` and (with a status subresource) ``status`` changes, and once more when the
  object is first marked for deletion (``markAsDeleting``).
* With a status subresource, create drops ``status``, main-resource writes keep the stored
  ``status``, and ``/status`` writes change nothing but ``status``.
* Deleting an object with finalizers sets ``deletionTimestamp`` and
  ``deletionGracePeriodSeconds: 0``; the write that empties its finalizers removes it
  (one DELETED event). No finalizer may be added once deletion started.
* A watcher sees an update that makes an object match its selector as ADDED and one that
  makes it stop matching as DELETED (the previous object at the new resourceVersion), like
  the watch cache. A watch from a resourceVersion older than the history raises 410.
"""

from __future__ import annotations

import base64
import builtins
import copy
import datetime as dt
import json
import random
import re
import uuid
from collections import deque
from collections.abc import Iterable, Sequence

from tests.fakes.kubeapi_match import (
    FieldRequirement,
    Requirement,
    fields_match,
    json_patch,
    labels_match,
    merge_patch,
)
from tests.fakes.kubeapi_types import (
    BUILTIN_TYPES,
    FLUX_TYPES,
    JSON,
    STALE_OBJECT,
    ApiStatusError,
    ResourceType,
    already_exists,
    bad_request,
    conflict,
    custom_type,
    invalid,
    not_found,
)
from tests.fakes.kubeapi_watch import Change, Watcher, present

_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "generation", "namespace", "name", "selfLink")
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}
"""Patch content types the fake accepts, by the short names the Python helpers use."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key putting versions in Kubernetes' preference order (v1 > v1beta2 > v1alpha1)."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0)
    level = {"alpha": 2, "beta": 1, None: 0}[m.group(2)]
    return (level, -int(m.group(1)), -int(m.group(3) or 0))


def _meta(obj: JSON) -> JSON:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


class Store:
    """Objects, resource kinds, history and watchers of one fake API server."""

    def __init__(self, *, history_limit: int = 1000, flux_types: bool = True) -> None:
        self._rv = 1
        self._floor = 1
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self._objects: dict[tuple[str, str], dict[tuple[str, str], JSON]] = {}
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        self._watchers: set[Watcher] = set()
        for rt in (*BUILTIN_TYPES, *(FLUX_TYPES if flux_types else ())):
            self._types[(rt.group, rt.version, rt.plural)] = rt

    # --- kinds ----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the latest write."""
        return self._rv

    @property
    def types(self) -> builtins.list[ResourceType]:
        """Every served resource, preferred versions first within a group."""
        return sorted(self._types.values(), key=lambda t: (t.group, version_priority(t.version)))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The served resource at ``/apis/group/version/plural``, if any."""
        return self._types.get((group, version, plural))

    def resolve(self, resource: str) -> ResourceType:
        """A resource by ``plural`` or ``plural.group`` (core wins a bare ``events``)."""
        plural, _, group = resource.partition(".")
        found = [t for t in self.types if t.plural == plural and (not group or t.group == group)]
        if not found:
            raise KeyError(f"no served resource {resource!r}")
        return min(found, key=lambda t: (t.group != "", version_priority(t.version)))

    def for_object(self, obj: JSON) -> ResourceType:
        """The resource an object's ``apiVersion``/``kind`` name."""
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for rt in self._types.values():
            if (rt.group, rt.version, rt.kind) == (group, version, obj.get("kind")):
                return rt
        raise KeyError(f"no served kind {obj.get('apiVersion')}/{obj.get('kind')}")

    # --- reads ----------------------------------------------------------------------------

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], JSON]:
        return self._objects.setdefault(rt.storage_key, {})

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> JSON:
        """The object, or 404."""
        obj = self._bucket(rt).get(((namespace or "") if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt, name)
        return present(obj, rt)

    def list(self, rt: ResourceType, namespace: str | None, *,
             labels: Sequence[Requirement] = (), fields: Sequence[FieldRequirement] = (),
             limit: int | None = None, continue_token: str | None = None) -> JSON:
        """A list response; ``limit``/``continue`` page over the current state."""
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                raw = json.loads(base64.b64decode(continue_token))["start"]
                start = (str(raw[0]), str(raw[1]))
            except (ValueError, KeyError, TypeError, IndexError) as err:
                raise bad_request("continue key is not valid") from err
        items = [
            obj for key, obj in sorted(self._bucket(rt).items())
            if (start is None or key > start)
            and (namespace is None or key[0] == namespace)
            and labels_match(labels, obj) and fields_match(fields, obj)
        ]
        list_meta: JSON = {"resourceVersion": str(self._rv)}
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = json.dumps({"start": [last.get("namespace", ""), last["name"]]})
            list_meta["continue"] = base64.b64encode(token.encode()).decode()
            list_meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        presented = [present(obj, rt) for obj in items]
        if not rt.custom:
            # Typed Go lists encode items without TypeMeta; clients must not rely on it.
            for item in presented:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        return {"apiVersion": rt.api_version, "kind": rt.list_kind, "metadata": list_meta,
                "items": presented}

    # --- writes ---------------------------------------------------------------------------

    def _commit(self, rt: ResourceType, type_: str, obj: JSON, prev: JSON | None) -> JSON:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if type_ == "DELETED":
            self._bucket(rt).pop(key, None)
        else:
            self._bucket(rt)[key] = obj
        change = Change(self._rv, type_, rt.storage_key, copy.deepcopy(obj),
                         copy.deepcopy(prev) if prev is not None else None)
        if len(self._history) >= self._history_limit:
            self._floor = self._history.popleft().rv
        self._history.append(change)
        for watcher in builtins.list(self._watchers):
            watcher.offer(change)
        return obj

    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        ns_type = self.resolve("namespaces")
        ns = self._bucket(ns_type).get(("", namespace))
        if ns is None:
            raise not_found(ns_type, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiStatusError(
                403, "Forbidden",
                f'{rt.qualified} "{namespace}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": rt.plural},
            )

    def _check_identity(self, rt: ResourceType, meta: JSON, namespace: str | None,
                        name: str | None) -> None:
        if name is not None and meta.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the "
                              f"name on the URL ({name})")
        if rt.namespaced and namespace and meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")

    def _check_kind(self, rt: ResourceType, body: JSON) -> None:
        if body.get("kind") not in (None, rt.kind):
            raise bad_request(f"the kind in the data ({body.get('kind')}) does not match the "
                              f"expected kind ({rt.kind})")

    def create(self, rt: ResourceType, namespace: str | None, body: JSON) -> JSON:
        """POST: store a new object (201), or 409 AlreadyExists / 404 missing namespace."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        self._check_kind(rt, body)
        obj = copy.deepcopy(body)
        meta = _meta(obj)
        self._check_identity(rt, meta, namespace, None)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = str(meta["generateName"]) + "".join(
                random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        if not name:
            raise invalid(rt, "", "metadata.name: Required value: name or generateName is "
                          "required")
        if meta.get("resourceVersion"):
            raise ApiStatusError(500, "InternalError",
                                 "resourceVersion should not be set on objects to be created")
        ns = (namespace or meta.get("namespace") or "") if rt.namespaced else ""
        if rt.namespaced and not ns:
            raise bad_request("the namespace of the object must be set")
        self._check_namespace(rt, ns)
        if (ns, name) in self._bucket(rt):
            raise already_exists(rt, name)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            meta.pop(key, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now())
        if rt.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if rt.has_generation:
            meta["generation"] = 1
        if rt.status_subresource:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        self._prepare(rt, obj, None)
        return present(self._commit(rt, "ADDED", obj, None), rt)

    def _prepare(self, rt: ResourceType, obj: JSON, old: JSON | None) -> None:
        """Per-kind defaulting the real registry strategies do on create and update."""
        if rt.storage_key == ("", "secrets"):
            obj.setdefault("type", "Opaque")
            for key, value in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()
        elif rt.storage_key == ("", "namespaces"):
            name = obj["metadata"]["name"]
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            if old is None:
                obj["status"] = {"phase": "Active"}
            else:
                obj["status"] = copy.deepcopy(old.get("status", {"phase": "Active"}))
        elif rt.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(rt, obj)

    def _register_crd(self, rt: ResourceType, crd: JSON) -> None:
        spec = crd.get("spec") or {}
        name = crd["metadata"]["name"]
        names = spec.get("names") or {}
        group = spec.get("group")
        if not group or not names.get("plural") or not names.get("kind"):
            raise invalid(rt, name, "spec.group, spec.names.plural and spec.names.kind: "
                          "Required value")
        if name != f"{names['plural']}.{group}":
            raise invalid(rt, name, f'metadata.name: Invalid value: "{name}": must be '
                          'spec.names.plural+"."+spec.group')
        served = [v for v in spec.get("versions") or () if v.get("served")]
        new_types = [
            custom_type(group, str(v["name"]), names,
                        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                        status_subresource="status" in (v.get("subresources") or {}))
            for v in served
        ]
        self._unregister_crd(name)
        for t in new_types:
            self._types[(t.group, t.version, t.plural)] = t
        self._crd_types[name] = new_types
        storage = [str(v["name"]) for v in spec.get("versions") or () if v.get("storage")]
        status = crd.get("status") or {}
        if status.get("conditions"):
            # Already established: only the accepted names and versions follow the spec.
            status.update(acceptedNames=copy.deepcopy(names), storedVersions=sorted(
                set(status.get("storedVersions") or ()) | set(storage)))
            return
        now = _now()
        crd["status"] = {
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "acceptedNames": copy.deepcopy(names),
            "storedVersions": storage,
        }

    def _unregister_crd(self, name: str) -> None:
        for t in self._crd_types.pop(name, []):
            self._types.pop((t.group, t.version, t.plural), None)

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: JSON, *,
               subresource: str | None = None, precondition_required: bool = True) -> JSON:
        """PUT (or the end of a PATCH): optimistic concurrency, status isolation, finalizers."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        self._check_kind(rt, body)
        meta = body.get("metadata") or {}
        self._check_identity(rt, meta, namespace, name)
        ns = (namespace or "") if rt.namespaced else ""
        current = self._bucket(rt).get((ns, name))
        if current is None:
            if rt.create_on_update and subresource is None:
                return self.create(rt, namespace, {**body, "metadata": {
                    k: v for k, v in meta.items() if k != "resourceVersion"} | {"name": name}})
            raise not_found(rt, name)
        want_rv = meta.get("resourceVersion")
        if not want_rv and precondition_required and not rt.unconditional_update:
            raise invalid(rt, name, "metadata.resourceVersion: Invalid value: 0x0: must be "
                          "specified for an update")
        if want_rv and want_rv != current["metadata"]["resourceVersion"]:
            raise conflict(rt, name, STALE_OBJECT)
        new = self._next_state(rt, current, body, subresource)
        if current["metadata"].get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or ()) - set(
                current["metadata"].get("finalizers") or ())
            if added:
                raise invalid(rt, name, "metadata.finalizers: Forbidden: no new finalizers can "
                              f"be added if the object is being deleted, found new finalizers "
                              f"{sorted(added)}")
        if new == current:
            return present(current, rt)
        if rt.has_generation and self._spec_of(rt, new) != self._spec_of(rt, current):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            gone = self._commit(rt, "DELETED", new, current)
            self._finish_namespace(gone["metadata"].get("namespace", ""))
            return present(gone, rt)
        return present(self._commit(rt, "MODIFIED", new, current), rt)

    @staticmethod
    def _spec_of(rt: ResourceType, obj: JSON) -> JSON:
        drop = {"metadata", "status"} if rt.status_subresource else {"metadata"}
        return {k: v for k, v in obj.items() if k not in drop}

    def _next_state(self, rt: ResourceType, current: JSON, body: JSON,
                    subresource: str | None) -> JSON:
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(body)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta = _meta(new)
        for key in _SYSTEM_META:
            meta.pop(key, None)
            if key in current["metadata"]:
                meta[key] = copy.deepcopy(current["metadata"][key])
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        if rt.status_subresource:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        self._prepare(rt, new, current)
        return new

    def patch(self, rt: ResourceType, namespace: str | None, name: str, patch: object,
              content_type: str, *, subresource: str | None = None) -> JSON:
        """PATCH: apply to the current object, then store it like an update."""
        kind = PATCH_TYPES.get(content_type)
        if kind is None or (kind == "strategic" and rt.custom):
            accepted = [t for t, k in PATCH_TYPES.items() if not (k == "strategic" and rt.custom)]
            raise ApiStatusError(
                415, "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(accepted)}",
            )
        current = self.get(rt, namespace, name)
        if kind == "json":
            patched = json_patch(current, patch)
        elif isinstance(patch, dict):
            # Strategic merge is applied as a JSON merge patch: lists are replaced, not merged
            # by key. Nothing this project sends to built-in kinds depends on list merging.
            patched = merge_patch(current, patch)
        else:
            raise bad_request("a merge patch must be a JSON object")
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        return self.update(rt, namespace, name, patched, subresource=subresource,
                           precondition_required=False)

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               options: JSON | None = None) -> JSON:
        """DELETE: mark (finalizers) or remove; answers the object or a Success Status."""
        current = self._bucket(rt).get(((namespace or "") if rt.namespaced else "", name))
        if current is None:
            raise not_found(rt, name)
        pre = (options or {}).get("preconditions") or {}
        meta = current["metadata"]
        for field_, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if pre.get(field_) and pre[field_] != meta.get(field_):
                raise conflict(rt, name, f"Precondition failed: {label} in precondition: "
                               f"{pre[field_]}, {label} in object meta: {meta.get(field_)}")
        if rt.storage_key == ("", "namespaces"):
            return present(self._delete_namespace(rt, current), rt)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return present(current, rt)
            marked = copy.deepcopy(current)
            self._mark_deleting(marked)
            return present(self._commit(rt, "MODIFIED", marked, current), rt)
        gone = self._commit(rt, "DELETED", copy.deepcopy(current), current)
        if rt.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._drop_crd(gone)
        self._finish_namespace(gone["metadata"].get("namespace", ""))
        if rt.delete_returns_object:
            return present(gone, rt)
        details: JSON = {"name": name, "kind": rt.plural, "uid": meta.get("uid")}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    @staticmethod
    def _mark_deleting(obj: JSON) -> None:
        meta = obj["metadata"]
        if meta.get("generation"):
            meta["generation"] = int(meta["generation"]) + 1
        meta["deletionTimestamp"] = _now()
        meta["deletionGracePeriodSeconds"] = 0

    def _drop_crd(self, crd: JSON) -> None:
        """The CRD cleanup: every instance goes at once, then the kinds stop being served."""
        name = crd["metadata"]["name"]
        for t in self._crd_types.get(name, [])[:1]:
            for obj in builtins.list(self._bucket(t).values()):
                self._commit(t, "DELETED", copy.deepcopy(obj), obj)
        self._unregister_crd(name)

    def _delete_namespace(self, rt: ResourceType, ns_obj: JSON) -> JSON:
        name = ns_obj["metadata"]["name"]
        if not ns_obj["metadata"].get("deletionTimestamp"):
            marked = copy.deepcopy(ns_obj)
            self._mark_deleting(marked)
            marked.setdefault("status", {})["phase"] = "Terminating"
            last = self._commit(rt, "MODIFIED", marked, ns_obj)
            for t in self._namespaced_storages():
                for (ns, obj_name) in builtins.list(self._bucket(t)):
                    if ns == name:
                        self.delete(t, ns, obj_name)
            # The last child's removal may already have finished the namespace.
            ns_obj = self._bucket(rt).get(("", name)) or last
        return self._finish_namespace(name) or ns_obj

    def _namespaced_storages(self) -> Iterable[ResourceType]:
        seen: set[tuple[str, str]] = set()
        for t in self.types:
            if t.namespaced and t.storage_key not in seen:
                seen.add(t.storage_key)
                yield t

    def _finish_namespace(self, name: str) -> JSON | None:
        """The namespace controller's last step: drop a terminating namespace once empty."""
        if not name:
            return None
        rt = self.resolve("namespaces")
        ns_obj = self._bucket(rt).get(("", name))
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return None
        if ns_obj["metadata"].get("finalizers"):
            return None
        for t in self._namespaced_storages():
            if any(ns == name for ns, _ in self._bucket(t)):
                return None
        return present(self._commit(rt, "DELETED", copy.deepcopy(ns_obj), ns_obj), rt)

    # --- watch ----------------------------------------------------------------------------

    def watch(self, rt: ResourceType, namespace: str | None, *,
              labels: Sequence[Requirement] = (), fields: Sequence[FieldRequirement] = (),
              resource_version: str | None = None) -> Watcher:
        """Open a watcher: synthetic ADDED for "" / "0", else history after the version."""
        watcher = Watcher(rt, namespace, labels, fields)
        if resource_version in (None, "", "0"):
            for _, obj in sorted(self._bucket(rt).items()):
                if watcher.matches(obj):
                    watcher.put("ADDED", obj)
        else:
            assert resource_version is not None
            if not resource_version.isdigit():
                raise bad_request(f"invalid resource version: {resource_version!r}")
            since = int(resource_version)
            if since < self._floor:
                raise ApiStatusError(
                    410, "Expired", f"too old resource version: {since} ({self._floor})")
            for change in self._history:
                if change.rv > since:
                    watcher.offer(change)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        """Forget a watcher whose stream ended."""
        self._watchers.discard(watcher)

    def stop_watchers(self, mode: str) -> int:
        """End every open watch (``"abort"``, ``"end"``, or ``"mid-event"``: halfway through
        each one's next event); returns how many there were."""
        watchers = builtins.list(self._watchers)
        for watcher in watchers:
            if mode == "mid-event":
                watcher.cut_inside_next_event()
            else:
                watcher.stop(mode)
        return len(watchers)

    @property
    def watcher_count(self) -> int:
        """Open watches right now."""
        return len(self._watchers)

    def compact(self) -> None:
        """Forget all history: watches from any earlier resourceVersion get 410 Expired."""
        self._history.clear()
        self._floor = self._rv
