"""Bad input that only a server without the API server's validation could hand over.

The real API server refuses these at create (400 or 422, asserted in
``test_policy_inputs.py`` and ``test_repository_inputs.py``), so no user of a real
cluster meets them: spec values outside the CRD's schema, Secret data that is not
base64, dockerconfigjson Secrets without a JSON object under their key. The controller
still checks them, as Flux's does, because its CRDs are not the only ones it may meet
(Flux's own of another version, or a CRD installed without validation) and because a
credential parser must not trust its input, and each check keeps its contract message.
These tests prove it on the fake API server, which validates nothing: it is the one
server that will store such objects, and that is the only reason they use it.
"""

from __future__ import annotations

from pathlib import Path

from imagereflector.api import meta
from tests.badinput import corpus
from tests.badinput.support import (
    RECONCILING,
    condition,
    image_policy,
    k8s_name,
    namespace,
    ready_of,
    secret,
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


async def test_spec_values_outside_the_schema_are_reported(tmp_path: Path) -> None:
    cases = {"interval-days": ({"interval": "1d"}, "invalid object: spec.interval"),
             "interval-negative": ({"interval": "-1s"}, "invalid object: spec.interval"),
             "timeout-hours": ({"timeout": "1h"}, "invalid object: spec.timeout"),
             "image-number": ({"image": 123}, "invalid object: spec.image")}
    async with start_cluster(tmp_path) as cluster:
        for name, (spec, _) in cases.items():
            obj = repository(name, "127.0.0.1:1/app")
            obj["spec"].update(spec)
            cluster.api.create(obj)
        for name, (_, prefix) in cases.items():
            obj = await cluster.wait_for(REPOS, "default", name,
                                         has_ready_reason(meta.FAILED_REASON), within=5)
            assert ready_of(obj).message.startswith(prefix), name


async def test_dockerconfig_secrets_a_real_server_refuses(registry: RegistryProcess,
                                                          tmp_path: Path) -> None:
    registry.write_tags("app", ["1.0.0"])
    image = f"{registry.host}/app"
    cases = [c for c in corpus.dockerconfig_cases(registry.host) if c.refused is not None]
    assert cases
    async with start_cluster(tmp_path) as cluster:
        for case in cases:
            ns = k8s_name(case.id)
            cluster.api.create(namespace(ns))
            cluster.api.create(secret("creds", case.type, case.data, namespace=ns))
            cluster.api.create(repository("app", image, namespace=ns, secretRef={"name": "creds"}))
        for case in cases:
            obj = await cluster.wait_for(REPOS, k8s_name(case.id), "app", failed_for_good(
                meta.AUTHENTICATION_FAILED_REASON))
            found = ready_of(obj)
            assert found.message == case.message, case.id
            assert all(value not in found.message for value in case.planted), case.id
            reconciling = condition(obj, RECONCILING)
            assert reconciling is not None
            assert reconciling.reason == meta.PROGRESSING_WITH_RETRY_REASON


async def test_dockerconfig_secret_without_its_data_key(tmp_path: Path) -> None:
    case = corpus.MISSING_DATA_KEY
    async with start_cluster(tmp_path) as cluster:
        cluster.api.create(secret("creds", case.type, case.data))
        cluster.api.create(repository("app", "127.0.0.1:1/app", secretRef={"name": "creds"}))
        obj = await cluster.wait_for(REPOS, "default", "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        message = ready_of(obj).message
        assert message.startswith(corpus.AUTH_PREFIX)
        assert ".dockerconfigjson" in message
        assert "creds" in message
        assert "not valid JSON" not in message
