"""URL parsing and discovery documents of the fake Kubernetes API server.

Role: turn a request path into the apiserver's ``RequestInfo`` (verb, group, version,
resource, subresource, namespace, name) and serve the discovery endpoints kubectl and
kubernetes_asyncio read (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/G``,
``/apis/G/V``).

Invariants:
* Paths follow the real layout: ``/api/v1/...`` for the core group and
  ``/apis/GROUP/VERSION/...`` otherwise, with ``namespaces/NS/`` before namespaced plurals.
  ``/api/v1/namespaces/X`` names the Namespace X itself.
* Verbs are derived as the apiserver derives them: GET is ``get`` with a name, else
  ``list`` or (``watch=true|1``) ``watch``; DELETE without a name is ``deletecollection``.
* Discovery is built from the store's current kinds, so a CRD's kinds appear as soon as
  it is created. Aggregated discovery (v2) is not offered: clients fall back to these
  legacy documents, as they do against older servers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tests.fakes.kubeapi_store import Store, version_priority
from tests.fakes.kubeapi_types import ALL_VERBS, JSON, ResourceType

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
FAKE_VERSION: JSON = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
"""What ``/version`` answers."""


def truthy(value: str | None) -> bool:
    """A boolean query parameter as the apiserver parses it (``true``, ``True``, ``1``)."""
    return (value or "").lower() in ("true", "1")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request addresses, in the apiserver's own terms."""

    verb: str
    """get, list, watch, create, update, patch, delete, deletecollection; for non-resource
    URLs the lower-cased method."""
    resource_request: bool
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    rt: ResourceType | None = None
    """The served resource, or None when the path names none (404)."""


def parse_request(method: str, path: str, query: Mapping[str, str], store: Store) -> RequestInfo:
    """Parse ``path`` like the apiserver's RequestInfoFactory."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(method.lower(), False)
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        if len(parts) < 2:
            return RequestInfo(method.lower(), False)
        group, rest = parts[1], parts[2:]
    if len(rest) < 2:
        # Discovery documents (/api/v1, /apis/G, /apis/G/V) are non-resource requests.
        return RequestInfo(method.lower(), False)
    version, after = rest[0], rest[1:]
    namespace = ""
    if after[0] == "namespaces" and len(after) >= 3:
        inner = store.lookup(group, version, after[2])
        if inner is not None and inner.namespaced:
            namespace, after = after[1], after[2:]
    resource = after[0]
    name = after[1] if len(after) > 1 else ""
    subresource = after[2] if len(after) > 2 else ""
    rt = store.lookup(group, version, resource)
    if len(after) > 3 or (rt is not None and rt.namespaced != bool(namespace) and name):
        rt = None
    if method == "GET":
        verb = "get" if name else ("watch" if truthy(query.get("watch")) else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _METHOD_VERBS.get(method, method.lower())
    return RequestInfo(verb, True, group, version, resource, subresource, namespace, name, rt)


def _group_versions(store: Store) -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    for rt in store.types:
        if rt.group and rt.version not in versions.setdefault(rt.group, []):
            versions[rt.group].append(rt.version)
    for group in versions:
        versions[group].sort(key=version_priority)
    return versions


def _api_group(group: str, versions: Sequence[str]) -> JSON:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def discovery(store: Store, path: str, host: str) -> JSON | None:
    """The discovery document at ``path``, or None if there is none."""
    parts = [p for p in path.split("/") if p]
    if parts == ["api"]:
        return api_versions(host)
    if parts == ["api", "v1"]:
        return api_resource_list(store, "", "v1")
    if parts == ["apis"]:
        return api_group_list(store)
    if len(parts) == 2 and parts[0] == "apis":
        return api_group(store, parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return api_resource_list(store, parts[1], parts[2])
    return None


def api_versions(host: str) -> JSON:
    """``/api``."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}


def api_group_list(store: Store) -> JSON:
    """``/apis``."""
    groups = [_api_group(g, vs) for g, vs in sorted(_group_versions(store).items())]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(store: Store, group: str) -> JSON | None:
    """``/apis/GROUP``, or None if the group is not served."""
    versions = _group_versions(store).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def api_resource_list(store: Store, group: str, version: str) -> JSON | None:
    """``/api/v1`` or ``/apis/GROUP/VERSION``, or None if not served."""
    resources: list[JSON] = []
    for rt in store.types:
        if (rt.group, rt.version) != (group, version):
            continue
        resources.append({"name": rt.plural, "singularName": rt.singular,
                          "namespaced": rt.namespaced, "kind": rt.kind,
                          "verbs": list(ALL_VERBS), "shortNames": list(rt.short_names)})
        if rt.status_subresource:
            resources.append({"name": f"{rt.plural}/status", "singularName": "",
                              "namespaced": rt.namespaced, "kind": rt.kind,
                              "verbs": ["get", "patch", "update"]})
    if not resources:
        return None
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}
