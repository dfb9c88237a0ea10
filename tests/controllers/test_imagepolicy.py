"""The ImagePolicy controller end to end: policies over tags the real registry serves,
objects on the real API server, the controller as the manifests' ServiceAccount.

Covers the contract's reconciler cases (semver, alphabetical, numerical with extract,
invalid ranges and filters, missing and unscanned repositories, cross-namespace ACLs,
``--no-cross-namespace-refs``), re-evaluation on a new scan revision only, and digest
reflection noticing a re-pushed tag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import jsonschema

from imagereflector.api import meta
from imagereflector.kube import conditions as cond
from tests.controllers.harness import (
    conditions_of,
    failed_for_good,
    has_ready_reason,
    is_ready_with,
    kstatus_problems,
    ready,
    repository,
)
from tests.controllers.realharness import (
    POLICIES,
    REPOS,
    Cluster,
    KubeTest,
    events_of,
    reconciles,
    recorded_statuses,
    start_cluster,
)
from tests.controllers.test_imagerepository import crd_schema
from tests.fakes.registry import RegistryProcess

JSON = dict[str, Any]


def policy(name: str, repo: str, choice: JSON, *, namespace: str | None = None,
           repo_namespace: str | None = None, **spec: Any) -> JSON:
    """An ImagePolicy manifest (in the test's namespace unless ``namespace``)."""
    ref: JSON = {"name": repo}
    if repo_namespace is not None:
        ref["namespace"] = repo_namespace
    metadata: JSON = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImagePolicy",
            "metadata": metadata, "spec": {"imageRepositoryRef": ref, "policy": choice, **spec}}


def latest_is(image: str) -> Any:
    def check(obj: JSON) -> bool:
        return (obj.get("status") or {}).get("latestImage") == image and cond.is_ready(
            conditions_of(obj))
    return check


def message_has(part: str) -> Callable[[JSON], bool]:
    def check(obj: JSON) -> bool:
        found = ready(obj)
        return found is not None and part in found.message
    return check


def handled(value: str) -> Callable[[JSON], bool]:
    def check(obj: JSON) -> bool:
        return bool(obj["status"].get("lastHandledReconcileAt") == value
                    and cond.is_ready(conditions_of(obj)))
    return check


async def scanned_repo(cluster: Cluster, registry: RegistryProcess, tags: list[str], *,
                       name: str = "app", namespace: str | None = None, **spec: Any) -> str:
    registry.write_tags(name, tags)
    image = f"{registry.host}/{name}"
    namespace = namespace or cluster.ns
    cluster.api.create(repository(name, image, namespace=namespace, **spec))
    await cluster.wait_for(REPOS, namespace, name, is_ready_with(f"found {len(tags)} tags"))
    return image


async def test_semver_resolves_then_moves_on_a_new_scan(registry: RegistryProcess,
                                                        kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster, recorded_statuses(kube, POLICIES) as log:
        image = await scanned_repo(cluster, registry,
                                   ["1.0.0", "1.0.1", "1.1.0-alpha", "1.2.0", "v1.0.3x"])
        cluster.api.create(policy("pol", "app", {"semver": {"range": "1.0.x"}}))
        obj = await cluster.wait_for(POLICIES, cluster.ns, "pol", latest_is(f"{image}:1.0.1"))
        found = ready(obj)
        assert found is not None
        assert found.message == f"Latest image tag for '{image}' resolved to 1.0.1"
        assert obj["status"]["latestRef"] == {"name": image, "tag": "1.0.1"}
        assert obj["status"]["observedGeneration"] == 1
        registry.write_tags("app", ["1.0.0", "1.0.1", "1.0.2", "1.2.0"])
        cluster.api.patch(REPOS, cluster.ns, "app", {"metadata": {"annotations": {
            meta.RECONCILE_REQUEST_ANNOTATION: "push"}}})
        obj = await cluster.wait_for(POLICIES, cluster.ns, "pol", latest_is(f"{image}:1.0.2"))
        assert obj["status"]["observedPreviousImage"] == f"{image}:1.0.1"
        found = ready(obj)
        assert found is not None
        assert found.message == (f"Latest image tag for '{image}' updated from 1.0.1 "
                                 "to 1.0.2")
        # The status can be read before the controller, on the same loop, has read the
        # answer to its patch and recorded the event that follows it: wait for it.
        expected = [f"Latest image tag for '{image}' resolved to 1.0.1",
                    f"Latest image tag for '{image}' updated from 1.0.1 to 1.0.2"]
        messages: list[str] = []
        for _ in range(200):
            await cluster.manager.events.flush()
            messages = [e["message"] for e in events_of(kube, "pol") if e["type"] == "Normal"]
            if len(messages) >= len(expected):
                break
            await asyncio.sleep(0.05)
        assert messages == expected
        seen = await log.sync()
        assert kstatus_problems(seen) == []
        schema = crd_schema("ImagePolicy")
        for seen_obj in seen:
            jsonschema.validate(seen_obj, schema, format_checker=jsonschema.FormatChecker())


async def test_status_patches_of_the_repository_do_not_reevaluate_policies(
        registry: RegistryProcess, kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        image = await scanned_repo(cluster, registry, ["1", "2"])
        cluster.api.create(policy("pol", "app", {"numerical": {"order": "asc"}}))
        await cluster.wait_for(POLICIES, cluster.ns, "pol", latest_is(f"{image}:2"))
        before = reconciles(await cluster.scrape(), "imagepolicy")
        for value in ("a", "b", "c"):
            cluster.api.patch(REPOS, cluster.ns, "app", {"metadata": {"annotations": {
                meta.RECONCILE_REQUEST_ANNOTATION: value}}})
            await cluster.wait_for(REPOS, cluster.ns, "app", handled(value))
        assert reconciles(await cluster.scrape(), "imagepolicy") == before


async def test_alphabetical_and_numerical_with_extract(registry: RegistryProcess,
                                                       kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        ubuntu = await scanned_repo(cluster, registry, ["artful", "bionic", "zesty", "xenial"],
                                    name="ubuntu")
        rc = await scanned_repo(cluster, registry,
                                ["1.0.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.3",
                                 "1.0.1-rc.2"], name="rc")
        cluster.api.create(policy("alpha", "ubuntu", {"alphabetical": {}}))
        cluster.api.create(policy("num", "rc", {"numerical": {"order": "asc"}},
                                  filterTags={"pattern": r"1.0.0-rc\.(?P<num>[0-9]+)",
                                              "extract": "$num"}))
        await cluster.wait_for(POLICIES, cluster.ns, "alpha", latest_is(f"{ubuntu}:zesty"))
        await cluster.wait_for(POLICIES, cluster.ns, "num", latest_is(f"{rc}:1.0.0-rc.3"))


async def test_invalid_range_and_filter_stall(registry: RegistryProcess,
                                              kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        await scanned_repo(cluster, registry, ["1.0.0"])
        cluster.api.create(policy("range", "app", {"semver": {"range": "*-*"}}))
        cluster.api.create(policy("filter", "app", {"semver": {"range": ">=0.x"}},
                                  filterTags={"pattern": "^test-(.*", "extract": "$1"}))
        obj = await cluster.wait_for(POLICIES, cluster.ns, "range",
                                     has_ready_reason(meta.INVALID_POLICY_REASON))
        stalled = cond.get(conditions_of(obj), meta.STALLED)
        assert stalled is not None
        assert stalled.message == "invalid policy: improper constraint: *-*"
        assert "latestImage" not in obj["status"]
        obj = await cluster.wait_for(POLICIES, cluster.ns, "filter",
                                     has_ready_reason(meta.INVALID_POLICY_REASON))
        found = ready(obj)
        assert found is not None
        assert found.message.startswith(
            "failed to filter tags: invalid regular expression pattern '^test-(.*': ")


async def test_missing_then_created_repository(registry: RegistryProcess,
                                               kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(policy("pol", "app", {"semver": {"range": ">=1.0.0"}}))
        obj = await cluster.wait_for(POLICIES, cluster.ns, "pol",
                                     has_ready_reason(meta.DEPENDENCY_NOT_READY_REASON))
        found = ready(obj)
        assert found is not None
        assert found.message == (
            "failed to get the referred ImageRepository: referenced ImageRepository does not "
            'exist: ImageRepository.image.toolkit.fluxcd.io "app" not found')
        image = await scanned_repo(cluster, registry, ["1.0.0", "2.0.0"])
        await cluster.wait_for(POLICIES, cluster.ns, "pol", latest_is(f"{image}:2.0.0"))


async def test_unscanned_repository_waits_without_retry(registry: RegistryProcess,
                                                        kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        registry.write_tags("app", ["1.0.0"])
        cluster.api.create(repository("app", f"{registry.host}/app", suspend=True))
        cluster.api.create(policy("pol", "app", {"semver": {"range": ">=1.0.0"}}))
        obj = await cluster.wait_for(POLICIES, cluster.ns, "pol", failed_for_good(
            meta.DEPENDENCY_NOT_READY_REASON, retried=False))
        found = ready(obj)
        assert found is not None
        assert found.message == "referenced ImageRepository has not been scanned yet"
        assert cond.get(conditions_of(obj), meta.RECONCILING) is None
        cluster.api.patch(REPOS, cluster.ns, "app", {"spec": {"suspend": False}})
        await cluster.wait_for(POLICIES, cluster.ns, "pol",
                               latest_is(f"{registry.host}/app:1.0.0"))


async def test_cross_namespace_acl(registry: RegistryProcess, kube: KubeTest) -> None:
    images = kube.namespace("images")
    team = kube.namespace("team", tier="dev")
    async with start_cluster(kube) as cluster:
        image = await scanned_repo(cluster, registry, ["1.0.0"], namespace=images)
        cluster.api.create(policy("pol", "app", {"semver": {"range": ">=1.0.0"}},
                                  namespace=team, repo_namespace=images))
        obj = await cluster.wait_for(POLICIES, team, "pol",
                                     has_ready_reason(meta.ACCESS_DENIED_REASON))
        found = ready(obj)
        assert found is not None
        assert found.message == ("failed to get the referred ImageRepository: access denied: "
                                 f"'{images}/app' can't be accessed due to missing ACL labels "
                                 "on 'accessFrom'")
        cluster.api.patch(REPOS, images, "app", {"spec": {"accessFrom": {
            "namespaceSelectors": [{"matchLabels": {"tier": "prod"}}]}}})
        obj = await cluster.wait_for(POLICIES, team, "pol", message_has("mismatch"))
        found = ready(obj)
        assert found is not None
        assert found.message.endswith(
            f"'{images}/app' can't be accessed due to ACL labels mismatch on namespace "
            f"'{team}'")
        # The namespace informer (list and watch on namespaces, as the ClusterRole
        # allows) carries the new label to the policy.
        cluster.api.patch("namespaces", None, team, {"metadata": {"labels": {"tier": "prod"}}})
        await cluster.wait_for(POLICIES, team, "pol", latest_is(f"{image}:1.0.0"))
        cluster.api.create(policy("any", "app", {"semver": {"range": ">=1.0.0"}},
                                  repo_namespace=images))
        cluster.api.patch(REPOS, images, "app", {"spec": {"accessFrom": {
            "namespaceSelectors": [{"matchLabels": {}}]}}})
        await cluster.wait_for(POLICIES, cluster.ns, "any", latest_is(f"{image}:1.0.0"))


async def test_no_cross_namespace_refs_flag(registry: RegistryProcess, kube: KubeTest) -> None:
    images = kube.namespace("images")
    async with start_cluster(kube, no_cross_namespace_refs=True) as cluster:
        await scanned_repo(cluster, registry, ["1.0.0"], namespace=images,
                           accessFrom={"namespaceSelectors": [{"matchLabels": {}}]})
        cluster.api.create(policy("pol", "app", {"semver": {"range": ">=1.0.0"}},
                                  repo_namespace=images))
        obj = await cluster.wait_for(POLICIES, cluster.ns, "pol",
                                     has_ready_reason(meta.ACCESS_DENIED_REASON))
        found = ready(obj)
        assert found is not None
        assert found.message == ("failed to get the referred ImageRepository: cannot access "
                                 f"'ImageRepository/{images}/app', cross-namespace references "
                                 "have been blocked")


async def test_digest_reflection_notices_a_repushed_tag(registry: RegistryProcess,
                                                        kube: KubeTest) -> None:
    digests = await registry.push_tags("app", ["1.0.0", "latest"])
    async with start_cluster(kube) as cluster:
        image = f"{registry.host}/app"
        cluster.api.create(repository("app", image))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 2 tags"))
        cluster.api.create(policy("pinned", "app", {"semver": {"range": "1.0.x"}},
                                  digestReflectionPolicy="IfNotPresent"))
        cluster.api.create(policy("moving", "app", {"alphabetical": {}},
                                  digestReflectionPolicy="Always", interval="1s"))
        obj = await cluster.wait_for(POLICIES, cluster.ns, "pinned", latest_is(f"{image}:1.0.0"))
        assert obj["status"]["latestRef"] == {"name": image, "tag": "1.0.0",
                                              "digest": digests["1.0.0"]}
        obj = await cluster.wait_for(POLICIES, cluster.ns, "moving", latest_is(f"{image}:latest"))
        assert obj["status"]["latestRef"]["digest"] == digests["latest"]
        new_digest = await registry.repush("app", "latest")
        assert new_digest != digests["latest"]
        await cluster.wait_for(POLICIES, cluster.ns, "moving", lambda o: (
            o["status"].get("latestRef") or {}).get("digest") == new_digest)
