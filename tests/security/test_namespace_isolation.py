"""Secrets and ServiceAccounts are read only from the object's own namespace.

Three tenants reach the same htpasswd registry, on the real API server. Each namespace
has a Secret called ``creds`` and a ServiceAccount called ``puller`` (pull secret
``pull``): in ``team-a`` they hold the right password, in ``team-b`` a wrong one, and a
fourth namespace with no repository at all (the test's own, standing where ``default``
stood on the fake) holds a decoy with the right password while ``team-c`` has neither.
Proven:

* each object authenticates with its own namespace's Secret (``team-a`` Ready, ``team-b``
  401), through ``secretRef`` and through ``serviceAccountName`` alike;
* an object whose namespace lacks the Secret or ServiceAccount fails with ``not found``
  rather than borrowing the same-named one of another namespace;
* every Secret and ServiceAccount request the controller sent (recorded by the proxy in
  front of the API server) is a GET of a named object in the namespace of an object that
  refers to it: no list, no watch, nothing cluster-wide, nothing in the decoy's namespace.
  The manifests' ClusterRole, which the controller runs with, would refuse a list or
  watch anyway; this shows it never even tries.
"""

from __future__ import annotations

import json

from imagereflector.api import meta
from tests.badinput.corpus import AUTH_PREFIX
from tests.badinput.support import b64, ready_of, secret, service_account
from tests.controllers.harness import has_ready_reason, is_ready_with, repository
from tests.controllers.realharness import REPOS, KubeTest, start_cluster
from tests.fakes.registry import TEST_CREDS, RegistryProcess


def pull_config(host: str, password: str) -> dict[str, str]:
    auth = b64(f"{TEST_CREDS[0]}:{password}")
    return {".dockerconfigjson": b64(json.dumps({"auths": {host: {"auth": auth}}}))}


async def test_each_object_uses_only_its_own_namespace(basic_registry: RegistryProcess,
                                                       kube: KubeTest) -> None:
    basic_registry.write_tags("app", ["1.0.0", "2.0.0"])
    host = basic_registry.host
    image = f"{host}/app"
    team_a, team_b, team_c = (kube.namespace(stem) for stem in ("team-a", "team-b", "team-c"))
    decoy = kube.ns
    passwords = {team_a: TEST_CREDS[1], team_b: "wrong-password", decoy: TEST_CREDS[1]}
    async with start_cluster(kube) as cluster:
        for ns, password in passwords.items():
            for name in ("creds", "pull"):
                cluster.api.create(secret(name, "kubernetes.io/dockerconfigjson",
                                          pull_config(host, password), namespace=ns))
            cluster.api.create(service_account("puller", ["pull"], namespace=ns))
        for ns in (team_a, team_b, team_c):
            cluster.api.create(repository("by-secret", image, namespace=ns,
                                          secretRef={"name": "creds"}))
            cluster.api.create(repository("by-account", image, namespace=ns,
                                          serviceAccountName="puller"))
        for name in ("by-secret", "by-account"):
            await cluster.wait_for(REPOS, team_a, name, is_ready_with("found 2 tags"))
            obj = await cluster.wait_for(REPOS, team_b, name,
                                         has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
            assert "401" in ready_of(obj).message or "UNAUTHORIZED" in ready_of(obj).message
        obj = await cluster.wait_for(REPOS, team_c, "by-secret",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert ready_of(obj).message == AUTH_PREFIX + 'secrets "creds" not found'
        obj = await cluster.wait_for(REPOS, team_c, "by-account",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        assert ready_of(obj).message == AUTH_PREFIX + 'ServiceAccount "puller" not found'

        reads = (cluster.api.calls(resource="secrets")
                 + cluster.api.calls(resource="serviceaccounts"))
        assert reads
        assert {(r.verb, r.method) for r in reads} == {("get", "GET")}
        assert {r.namespace for r in reads} == {team_a, team_b, team_c}
        # The failing objects are still being retried, so the newest read may be in
        # flight (no status yet); every answered one must be a 200 or a 404.
        answered = [r for r in reads if r.status is not None]
        assert answered
        assert all(r.status in (200, 404) for r in answered)  # none refused by RBAC
        allowed = {("secrets", "creds"), ("secrets", "pull"), ("serviceaccounts", "puller")}
        assert {(r.resource, r.name) for r in reads} <= allowed
