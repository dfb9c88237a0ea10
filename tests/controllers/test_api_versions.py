"""v1beta2 and v1 side by side on the real API server, with the controller writing status.

The CRDs serve both versions with the same fields and store v1, with no conversion
webhook: the API server rewrites ``apiVersion`` and nothing else, and prunes what the
schema of the version written through (or stored) lacks. So the proof that no field is
lost is a round trip: objects created through v1beta2 and through v1, reconciled by the
controller (which reads and writes v1 here), and every one of them read back through both
versions with the same spec, the same status and the same metadata. The objects use every
spec field of both releases, and the status covers every field the controller writes:
``lastScanResult.revision``, ``latestRef`` with a digest, ``latestImage``, the previous
ref and image, and ``lastHandledReconcileAt`` on both kinds.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from imagereflector.api import meta
from tests.controllers.harness import is_ready_with, repository
from tests.controllers.realharness import (
    POLICIES,
    REPOS,
    RUN_LABEL,
    Cluster,
    KubeTest,
    start_cluster,
)
from tests.controllers.test_imagepolicy import policy
from tests.fakes.registry import RegistryProcess

JSON = dict[str, Any]
GROUP = meta.GROUP


def path(version: str, plural: str, namespace: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{version}/namespaces/{urllib.parse.quote(namespace)}/{plural}"
    return base if name is None else f"{base}/{urllib.parse.quote(name)}"


def create_in(kube: KubeTest, version: str, obj: JSON) -> JSON:
    """Create ``obj`` through ``version`` (the admin helper knows only v1beta2)."""
    obj = {**obj, "apiVersion": f"{GROUP}/{version}"}
    metadata = {**obj["metadata"], "namespace": obj["metadata"].get("namespace") or kube.ns}
    metadata["labels"] = {RUN_LABEL: kube.run_id, **(metadata.get("labels") or {})}
    obj["metadata"] = metadata
    plural = REPOS if obj["kind"] == "ImageRepository" else POLICIES
    created: JSON = kube.testbed.request("POST", path(version, plural, metadata["namespace"]),
                                         obj)
    return created


def read_in(kube: KubeTest, version: str, plural: str, name: str) -> JSON:
    found: JSON = kube.testbed.request("GET", path(version, plural, kube.ns, name))
    return found


def annotate(cluster: Cluster, plural: str, name: str, value: str) -> None:
    cluster.api.patch(plural, cluster.ns, name, {"metadata": {"annotations": {
        meta.RECONCILE_REQUEST_ANNOTATION: value}}})


def settled_with(**status: Any) -> Any:
    """Ready, and each given status field equal to its value."""
    def check(obj: JSON) -> bool:
        found = obj.get("status") or {}
        return is_ready_with("")(obj) and all(found.get(k) == v for k, v in status.items())
    return check


EVERY_REPOSITORY_FIELD: JSON = {
    "timeout": "30s", "exclusionList": ["^.*\\.sig$", "^skip-"], "provider": "generic",
    "insecure": True, "serviceAccountName": "default",
    "accessFrom": {"namespaceSelectors": [{"matchLabels": {"team": "a"}}]},
}
# Never reconciled past its finalizer (suspended), so its Secrets need not exist.
SUSPENDED_REPOSITORY_FIELDS: JSON = {
    "suspend": True, "secretRef": {"name": "pull"}, "certSecretRef": {"name": "tls"},
    "proxySecretRef": {"name": "proxy"},
}


async def test_written_through_one_version_read_the_same_through_the_other(
        registry: RegistryProcess, kube: KubeTest) -> None:
    digests = await registry.push_tags("app", ["1.0.0", "1.1.0", "skip-me"])
    image = registry.ref("app")
    for version in ("v1beta2", "v1"):
        create_in(kube, version, repository(f"repo-{version}", image,
                                            **EVERY_REPOSITORY_FIELD))
        create_in(kube, version, repository(f"parked-{version}", image,
                                            **SUSPENDED_REPOSITORY_FIELDS))
    create_in(kube, "v1beta2", policy(
        "pol-v1beta2", "repo-v1beta2", {"semver": {"range": ">=1.0.0"}},
        filterTags={"pattern": "^(?P<v>[0-9.]+)$", "extract": "$v"},
        digestReflectionPolicy="IfNotPresent"))
    create_in(kube, "v1", policy("pol-v1", "repo-v1", {"alphabetical": {"order": "asc"}},
                                 digestReflectionPolicy="Always", interval="1h"))
    create_in(kube, "v1", policy("parked-v1", "repo-v1", {"numerical": {"order": "desc"}},
                                 suspend=True))
    async with start_cluster(kube) as cluster:
        for version in ("v1beta2", "v1"):
            await cluster.wait_for(REPOS, kube.ns, f"repo-{version}",
                                   is_ready_with("found 2 tags"))
            await cluster.wait_for(POLICIES, kube.ns, f"pol-{version}", lambda o: (
                (o["status"].get("latestRef") or {}).get("tag") == "1.1.0"))
        # A new tag and requested reconciles: previous refs and handled requests appear.
        digests.update(await registry.push_tags("app", ["1.2.0"]))
        for version in ("v1beta2", "v1"):
            annotate(cluster, REPOS, f"repo-{version}", "push")
            await cluster.wait_for(POLICIES, kube.ns, f"pol-{version}", lambda o: (
                (o["status"].get("latestRef") or {}).get("tag") == "1.2.0"))
            annotate(cluster, POLICIES, f"pol-{version}", "look")
            await cluster.wait_for(POLICIES, kube.ns, f"pol-{version}",
                                   settled_with(lastHandledReconcileAt="look"))
            annotate(cluster, REPOS, f"parked-{version}", "ignored")
        annotate(cluster, POLICIES, "parked-v1", "noted")
        await cluster.wait_for(POLICIES, kube.ns, "parked-v1", lambda o: (
            (o.get("status") or {}).get("lastHandledReconcileAt") == "noted"))
    # The controller is stopped: nothing moves while both versions are read.
    for plural, names in ((REPOS, ["repo-v1beta2", "repo-v1", "parked-v1beta2", "parked-v1"]),
                          (POLICIES, ["pol-v1beta2", "pol-v1", "parked-v1"])):
        for name in names:
            beta, one = (read_in(kube, v, plural, name) for v in ("v1beta2", "v1"))
            assert beta.pop("apiVersion") == f"{GROUP}/v1beta2"
            assert one.pop("apiVersion") == f"{GROUP}/v1"
            assert beta == one, name
    # And nothing the controller wrote was pruned on the way.
    repo = read_in(kube, "v1beta2", REPOS, "repo-v1")
    assert repo["spec"] == {"image": image, "interval": "1h", **EVERY_REPOSITORY_FIELD}
    assert repo["status"]["lastScanResult"]["revision"].startswith("sha256:")
    assert repo["status"]["lastHandledReconcileAt"] == "push"
    parked = read_in(kube, "v1beta2", REPOS, "parked-v1")
    assert {k: parked["spec"][k] for k in SUSPENDED_REPOSITORY_FIELDS} == (
        SUSPENDED_REPOSITORY_FIELDS)
    pol = read_in(kube, "v1", POLICIES, "pol-v1beta2")
    assert pol["spec"]["filterTags"] == {"pattern": "^(?P<v>[0-9.]+)$", "extract": "$v"}
    status = pol["status"]
    assert status["latestRef"] == {"name": image, "tag": "1.2.0", "digest": digests["1.2.0"]}
    assert status["observedPreviousRef"] == {"name": image, "tag": "1.1.0",
                                             "digest": digests["1.1.0"]}
    assert status["latestImage"] == f"{image}:1.2.0"
    assert status["observedPreviousImage"] == f"{image}:1.1.0"
    assert status["lastHandledReconcileAt"] == "look"
    pol = read_in(kube, "v1beta2", POLICIES, "pol-v1")
    assert pol["spec"]["interval"] == "1h"
    assert pol["status"]["latestRef"]["tag"] == "1.2.0"  # skip-me is excluded
    assert read_in(kube, "v1beta2", POLICIES, "parked-v1")["spec"]["suspend"] is True
