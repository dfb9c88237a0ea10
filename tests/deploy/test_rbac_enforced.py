"""The manifests' RBAC is needed, verb by verb, on a real API server.

Every controller test on the real API server runs as the manifests' ServiceAccount with
exactly the manifests' roles (``tests/controllers/realharness.py``), which shows they are
enough. This shows a verb of them is needed: a copy of the ClusterRole with one verb
taken out, bound to a ServiceAccount of its own, runs the same controller on the same
scenario, and the scenario fails the way an operator would see it: 403 answers from the
API server (recorded by the proxy), a ``code="403"`` series in ``/metrics``, the
forbidden message in the log, and an object that never becomes Ready. Putting the verb
back into that copy, and nothing else, lets the same controller finish the scenario:
the failure was that verb's absence and no other difference.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

from imagereflector.api import meta
from testbed.cluster import ApiError
from tests.controllers.harness import is_ready_with, ready, repository
from tests.controllers.realharness import REPOS, KubeTest, start_cluster
from tests.deploy.conftest import NAME
from tests.fakes.registry import RegistryProcess

JSON = dict[str, Any]
GROUP = meta.GROUP
ACCOUNT = "narrowed"


def without(rules: list[JSON], group: str, resource: str, verb: str) -> list[JSON]:
    """``rules`` with ``verb`` on ``group``/``resource`` taken out, and nothing else."""
    out: list[JSON] = []
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"] \
                and verb in rule["verbs"]:
            # Split the rule: the other resources keep the verb, this one loses it.
            others = [r for r in rule["resources"] if r != resource]
            if others:
                out.append({**rule, "resources": others})
            verbs = [v for v in rule["verbs"] if v != verb]
            if verbs:
                out.append({**rule, "resources": [resource], "verbs": verbs})
        else:
            out.append(rule)
    assert out != rules, f"no rule grants {verb} on {group}/{resource}"
    return out


def narrowed_identity(kube: KubeTest, rules: list[JSON]) -> tuple[str, str]:
    """A ServiceAccount in the test's namespace bound to a ClusterRole with ``rules``;
    (ClusterRole name, token). Both cluster-scoped objects are deleted after the test."""
    role = f"{NAME}-narrowed-{kube.run_id}"
    kube.api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": role}, "rules": rules})
    kube.on_teardown(lambda: kube.api.delete("clusterroles", None, role))
    kube.api.create({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": kube.ns}]})
    kube.on_teardown(lambda: kube.api.delete("clusterrolebindings", None, role))
    kube.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": ACCOUNT}})
    return role, kube.testbed.service_account_token(kube.ns, ACCOUNT)


async def allowed(kube: KubeTest, token: str, path: str) -> None:
    """Wait until the API server's RBAC cache lets ``token`` GET ``path`` (a new
    binding takes effect a moment after it is stored)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            kube.testbed.request("GET", path, token=token)
            return
        except ApiError as err:
            if err.status != 403 or loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)


def forbidden_in(text: str, verb: str, resource: str) -> bool:
    """Whether ``text`` carries the API server's forbidden message for the account."""
    return f':{ACCOUNT}" cannot {verb} resource "{resource}"' in text


@pytest.mark.parametrize(("group", "resource", "verb"), [
    (GROUP, "imagerepositories/status", "patch"),
    ("", "namespaces", "list"),
], ids=["no-status-patch", "no-namespace-list"])
async def test_one_verb_less_and_the_scenario_fails_with_403(
        registry: RegistryProcess, kube: KubeTest, caplog: pytest.LogCaptureFixture,
        group: str, resource: str, verb: str) -> None:
    caplog.set_level(logging.INFO, logger="imagereflector")
    installed = kube.api.get("clusterroles", None, NAME)
    assert installed is not None
    full_rules: list[JSON] = installed["rules"]
    role, token = narrowed_identity(kube, without(full_rules, group, resource, verb))
    await allowed(kube, token, f"/apis/{GROUP}/v1beta2/imagerepositories")
    registry.write_tags("app", ["1.0.0", "1.1.0"])
    plural, _, subresource = resource.partition("/")
    async with start_cluster(kube, token=token) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app"))
        # Let the controller try, and retry, what it may no longer do.
        denied = await asyncio.wait_for(cluster.proxy.wait_for_calls(
            3 if verb == "patch" else 2, verb=verb, resource=plural,
            subresource=subresource, status=403), 60)
        assert all(c.authorization for c in denied)
        obj = cluster.api.get(REPOS, cluster.ns, "app")
        assert obj is not None
        assert ready(obj) is None, obj["status"]
        assert obj["status"] == {"observedGeneration": -1}  # the CRD's default, untouched
        text = await cluster.scrape()
        method = "PATCH" if verb == "patch" else "GET"
        assert re.search(rf'rest_client_requests_total\{{code="403",host="[^"]+",'
                         rf'method="{method}"\}} [1-9]', text)
        assert forbidden_in(caplog.text, verb, resource), caplog.text[-2000:]
        if verb == "patch":
            # Everything else the role grants still works: the finalizer went on with a
            # patch of the object itself, in the same pass that failed on /status.
            assert obj["metadata"].get("finalizers") == [meta.FINALIZER]
            assert 'controller_runtime_reconcile_errors_total{controller="imagerepository"}' \
                ' 0.0' not in text
        else:
            # Without the namespaces list the informers never sync: no worker starts,
            # nothing is written, and the controller says it is not ready.
            assert cluster.proxy.calls(verb="patch") == []
            assert not cluster.manager.synced()

        # Put the one verb back into the same ClusterRole: the scenario completes.
        cluster.api.patch("clusterroles", None, role, {"rules": full_rules})
        obj = await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 2 tags"),
                                     within=60)
        assert obj["metadata"]["finalizers"] == [meta.FINALIZER]
    assert json.dumps(full_rules) == json.dumps(installed["rules"])
