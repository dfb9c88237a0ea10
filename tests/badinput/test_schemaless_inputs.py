"""Bad input that only a server without the CRD's schema could hand the controller.

The real API server refuses these at create (422, asserted in ``test_policy_inputs.py``
and ``test_repository_inputs.py``), so no user of a real cluster meets them. The
controller still checks them, as Flux's does, because its CRDs are not the only ones it
may meet (Flux's own of another version, or a CRD installed without validation), and
that check keeps its contract message. These tests prove it on the fake API server,
which validates nothing: it is the one server that will store such an object, and that
is the only reason they use it.
"""

from __future__ import annotations

from pathlib import Path

from imagereflector.api import meta
from tests.badinput import corpus
from tests.badinput.support import image_policy, ready_of
from tests.controllers.harness import (
    POLICIES,
    REPOS,
    Cluster,
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
