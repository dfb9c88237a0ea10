"""Bad ImagePolicy input end to end on the real API server: invalid ranges, choices,
filters and extracts, and policies that cannot pick a tag, each reach the contract's
reason and exact message (§3.3: Stalled ``InvalidPolicy`` without retry for a bad spec,
Ready=False ``Failure`` with retry when nothing can be selected), while a good policy on
the same repository in the same cluster resolves.

Values the CRD's schema forbids (an order other than ``asc``/``desc``, no ``policy`` at
all) never reach a controller on a real cluster: the API server refuses them at create
with a 422 naming the field, which is what a user sees, and that is asserted here. What
the controller itself says about them, should a server without that schema hand them
over, is proven on the fake API server in ``test_schemaless_inputs.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

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
from tests.controllers.harness import failed_for_good, is_ready_with, repository
from tests.controllers.realharness import (
    POLICIES,
    REPOS,
    ApiError,
    Cluster,
    KubeTest,
    start_cluster,
)
from tests.fakes.registry import RegistryProcess


async def _scanned(cluster: Cluster, registry: RegistryProcess) -> str:
    registry.write_tags("app", corpus.POLICY_TAGS)
    image = f"{registry.host}/app"
    cluster.api.create(repository("app", image))
    await cluster.wait_for(REPOS, cluster.ns, "app",
                           is_ready_with(f"found {len(corpus.POLICY_TAGS)} tags"))
    return image


async def test_policy_corpus(registry: RegistryProcess, kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        image = await _scanned(cluster, registry)
        for case in corpus.POLICY_CASES:
            spec: dict[str, Any] = ({"filterTags": case.filter_tags}
                                    if case.filter_tags is not None else {})
            cluster.api.create(image_policy(k8s_name(case.id), "app", case.policy, **spec))
        cluster.api.create(image_policy("good", "app", {"semver": {"range": ">=1.0.0"}}))
        for case in corpus.POLICY_CASES:
            name = k8s_name(case.id)
            obj = await cluster.wait_for(POLICIES, cluster.ns, name, failed_for_good(
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
        obj = await cluster.wait_for(POLICIES, cluster.ns, "good",
                                     is_ready_with("resolved to 1.1.0"))
        assert obj["status"]["latestImage"] == f"{image}:1.1.0"


@pytest.mark.parametrize(("choice", "field", "detail"), [
    ({"alphabetical": {"order": "sideways"}}, "spec.policy.alphabetical.order",
     'Unsupported value: "sideways": supported values: "asc", "desc"'),
    ({"alphabetical": {"order": "DESC"}}, "spec.policy.alphabetical.order",
     'Unsupported value: "DESC": supported values: "asc", "desc"'),
    ({"numerical": {"order": "up"}}, "spec.policy.numerical.order",
     'Unsupported value: "up": supported values: "asc", "desc"'),
    (None, "spec.policy", "Required value"),
], ids=["order-sideways", "order-upper-case", "numerical-order", "no-policy"])
def test_the_schema_refuses_what_the_controller_never_sees(
        kube: KubeTest, choice: dict[str, Any] | None, field: str, detail: str) -> None:
    with pytest.raises(ApiError) as refused:
        kube.api.create(image_policy("bad", "app", choice))
    assert refused.value.status == 422
    status = json.loads(refused.value.body)
    assert status["reason"] == "Invalid"
    # The CRDs carry Flux v1's CEL rules on the spec, which the API server does not run
    # on an object that already failed its schema, and says so.
    assert status["message"] == (
        f'ImagePolicy.image.toolkit.fluxcd.io "bad" is invalid: [{field}: {detail}, <nil>: '
        "Invalid value: null: some validation rules were not checked because the object was "
        "invalid; correct the existing errors to complete validation]")
    assert kube.api.get(POLICIES, kube.ns, "bad") is None
