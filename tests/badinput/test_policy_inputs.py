"""Bad ImagePolicy input end to end: invalid ranges, choices, filters and extracts, and
policies that cannot pick a tag, each reach the contract's reason and exact message
(§3.3: Stalled ``InvalidPolicy`` without retry for a bad spec, Ready=False ``Failure``
with retry when nothing can be selected), while a good policy on the same repository in
the same cluster resolves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagereflector.api import meta
from tests.badinput import corpus
from tests.badinput.support import (
    RECONCILING,
    STALLED,
    condition,
    image_policy,
    k8s_name,
    ready_of,
)
from tests.controllers.harness import (
    POLICIES,
    REPOS,
    Cluster,
    failed_for_good,
    has_ready_reason,
    is_ready_with,
    repository,
    start_cluster,
)
from tests.fakes.registry import RegistryProcess


async def _scanned(cluster: Cluster, registry: RegistryProcess) -> str:
    registry.write_tags("app", corpus.POLICY_TAGS)
    image = f"{registry.host}/app"
    cluster.api.create(repository("app", image))
    await cluster.wait_for(REPOS, "default", "app",
                           is_ready_with(f"found {len(corpus.POLICY_TAGS)} tags"))
    return image


async def test_policy_corpus(registry: RegistryProcess, tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        image = await _scanned(cluster, registry)
        for case in corpus.POLICY_CASES:
            spec: dict[str, Any] = ({"filterTags": case.filter_tags}
                                    if case.filter_tags is not None else {})
            cluster.api.create(image_policy(k8s_name(case.id), "app", case.policy, **spec))
        cluster.api.create(image_policy("good", "app", {"semver": {"range": ">=1.0.0"}}))
        for case in corpus.POLICY_CASES:
            name = k8s_name(case.id)
            obj = await cluster.wait_for(POLICIES, "default", name, failed_for_good(
                case.reason, stalled=case.stalled))
            found = ready_of(obj)
            if case.message.endswith("'"):
                assert found.message.startswith(case.message), (case.id, found.message)
            else:
                assert found.message == case.message, case.id
            stalled = condition(obj, STALLED)
            reconciling = condition(obj, RECONCILING)
            if case.stalled:
                assert stalled is not None, case.id
                assert (stalled.status, stalled.reason) == ("True", meta.INVALID_POLICY_REASON)
                assert reconciling is None, case.id
                assert obj["status"]["observedGeneration"] == 1, case.id
            else:
                assert stalled is None, case.id
                assert reconciling is not None, case.id
                assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON
            assert "latestImage" not in obj["status"], case.id
        obj = await cluster.wait_for(POLICIES, "default", "good",
                                     is_ready_with("resolved to 1.1.0"))
        assert obj["status"]["latestImage"] == f"{image}:1.1.0"


async def test_invalid_order_has_the_contract_message(registry: RegistryProcess,
                                                      tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        await _scanned(cluster, registry)
        cluster.api.create(image_policy("order", "app", {"alphabetical": {"order": "sideways"}}))
        obj = await cluster.wait_for(POLICIES, "default", "order",
                                     has_ready_reason(meta.INVALID_POLICY_REASON))
        assert ready_of(obj).message == corpus.INVALID_ORDER_MESSAGE


async def test_upper_case_order_is_accepted(registry: RegistryProcess, tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        image = await _scanned(cluster, registry)
        cluster.api.create(image_policy("order", "app", {"alphabetical": {"order": "DESC"}}))
        obj = await cluster.wait_for(POLICIES, "default", "order",
                                     lambda o: bool((o.get("status") or {}).get("conditions")))
        obj = await cluster.wait_for(POLICIES, "default", "order",
                                     lambda o: ready_of(o).reason != meta.PROGRESSING_REASON)
        assert obj["status"].get("latestImage") == f"{image}:1.0.0", ready_of(obj)


async def test_absent_policy_has_the_contract_message(registry: RegistryProcess,
                                                      tmp_path: Path) -> None:
    async with start_cluster(tmp_path) as cluster:
        await _scanned(cluster, registry)
        cluster.api.create(image_policy("absent", "app", None))
        obj = await cluster.wait_for(POLICIES, "default", "absent",
                                     has_ready_reason(meta.INVALID_POLICY_REASON))
        assert ready_of(obj).message == ("invalid policy: given ImagePolicyChoice object is "
                                         "invalid")
