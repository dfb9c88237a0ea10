"""The RBAC in ``manifests/rbac/`` grants exactly what the controller's code calls.

``rbac_derive`` reads the source (see its docstring for the rules); these tests compare
its answer with the rendered ClusterRole and the leader-election Role, and check on small
synthetic modules that the derivation notices new calls and refuses patterns it cannot
follow, so the comparison can fail.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from tests.deploy.conftest import NAME, NAMESPACE, find
from tests.deploy.rbac_derive import (
    GENERIC_VERBS,
    Permission,
    UnderivableError,
    client_method_effects,
    controller_permissions,
    derive,
    reachable_modules,
    resource_constants,
)

LEASES_GROUP = "coordination.k8s.io"
ROLE = f"{NAME}-leader-election"


def granted(role: dict[str, Any]) -> set[Permission]:
    """Every (group, resource, verb) a Role or ClusterRole grants, refusing wildcards."""
    out: set[Permission] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, (
            f"unexpected rule fields (resourceNames, nonResourceURLs?): {rule}")
        for value in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
            assert "*" not in value, f"wildcard in {rule}"
        out.update(Permission(group, resource, verb) for group in rule["apiGroups"]
                   for resource in rule["resources"] for verb in rule["verbs"])
    return out


def _missing_and_extra(wanted: set[Permission], have: set[Permission]) -> str:
    missing = sorted(str(p) for p in wanted - have)
    extra = sorted(str(p) for p in have - wanted)
    return f"not granted: {missing}; granted but never called: {extra}"


def test_cluster_role_grants_exactly_the_controllers_calls(
        rendered: list[dict[str, Any]]) -> None:
    wanted = {p for p in controller_permissions() if p.group != LEASES_GROUP}
    have = granted(find(rendered, "ClusterRole", NAME))
    assert wanted == have, _missing_and_extra(wanted, have)


def test_the_derivation_sees_both_kinds_and_credentials() -> None:
    # Guards the analysis itself: if it silently stopped following the informers, the
    # patcher or the credential reads, the exact comparison above could pass vacuously.
    derived = {str(p) for p in controller_permissions()}
    assert {
        "image.toolkit.fluxcd.io:imagerepositories:watch",
        "image.toolkit.fluxcd.io:imagepolicies/status:patch",
        "core:secrets:get",
        "core:events:create",
    } <= derived


def _lease_capability() -> set[Permission]:
    """What KubeClient's lease methods can do: all leader election can ever call."""
    constants = resource_constants()
    leases = constants["LEASES"]
    verbs = {effect.verb for effects in client_method_effects(constants).values()
             for effect in effects if effect.ref == "LEASES"}
    return {Permission(leases.group, leases.plural, verb) for verb in verbs}


def test_leader_election_role_grants_the_lease_calls(rendered: list[dict[str, Any]]) -> None:
    role = find(rendered, "Role", ROLE)
    assert role["metadata"]["namespace"] == NAMESPACE
    have = granted(role)
    used = {p for p in controller_permissions() if p.group == LEASES_GROUP}
    lease_grants = {p for p in have if p.group == LEASES_GROUP}
    # Whatever leader election calls must be granted; and the Role grants on leases
    # exactly what KubeClient's lease methods do (get, create, optimistic update).
    assert used <= lease_grants, _missing_and_extra(used, lease_grants)
    assert lease_grants == _lease_capability()
    if used:
        assert used == lease_grants, _missing_and_extra(used, lease_grants)
    assert have - lease_grants == {Permission("", "events", "create")}


def test_bindings_point_at_the_controller_service_account(
        rendered: list[dict[str, Any]]) -> None:
    subject = {"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}
    cluster_binding = find(rendered, "ClusterRoleBinding", NAME)
    assert cluster_binding["subjects"] == [subject]
    assert cluster_binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME}
    binding = find(rendered, "RoleBinding", ROLE)
    assert binding["subjects"] == [subject]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE}
    pod = find(rendered, "Deployment", NAME)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME


def test_granted_refuses_wildcards() -> None:
    with pytest.raises(AssertionError, match="wildcard"):
        granted({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]})


def test_controller_modules_exclude_the_other_commands() -> None:
    modules = set(reachable_modules())
    assert {"imagereflector.cli", "imagereflector.app.manager",
            "imagereflector.kube.informer", "imagereflector.kube.patch"} <= modules
    assert "imagereflector.app.install" not in modules


def test_client_methods_are_classified_from_their_bodies() -> None:
    effects = client_method_effects(resource_constants())
    as_tuples = {name: {(e.ref, e.verb, e.subresource) for e in found}
                 for name, found in effects.items()}
    assert as_tuples["get_secret"] == {("SECRETS", "get", None)}
    assert as_tuples["update_lease"] == {("LEASES", "update", None)}
    assert as_tuples["patch_event"] == {("EVENTS", "patch", None)}
    assert as_tuples["apply_crds"] == {("CUSTOM_RESOURCE_DEFINITIONS", "get", None),
                                       ("CUSTOM_RESOURCE_DEFINITIONS", "create", None)}


# --- the derivation on synthetic modules ---------------------------------------------------

_PRELUDE = "from imagereflector.kube.client import *\n"


def _derive(source: str) -> set[str]:
    return {str(p) for p in derive({"m": _PRELUDE + textwrap.dedent(source)})}


def test_a_new_direct_call_is_derived() -> None:
    assert _derive("""
        async def purge(client, namespace: str) -> None:
            await client.delete(SECRETS, "old", namespace=namespace)
            await client.patch(IMAGE_POLICIES, "p", {}, namespace=namespace,
                               subresource="status")
    """) == {"core:secrets:delete", "image.toolkit.fluxcd.io:imagepolicies/status:patch"}


def test_a_client_method_on_its_own_ref_parameter_is_classified() -> None:
    # A wrapper such as patch_status(ref, ...) patches <ref>/status for whatever ref a
    # caller passes; shown on a KubeClient source with the generic methods and one wrapper.
    generic = "".join(f"    async def {name}(self, ref: ResourceRef) -> None: ...\n"
                      for name in GENERIC_VERBS)
    source = (
        "class KubeClient:\n" + generic
        + "    async def patch_status(self, ref: ResourceRef, name: str) -> None:\n"
          "        await self.patch(ref, name, {}, subresource='status')\n"
          "    async def get_secret(self, namespace: str, name: str) -> None:\n"
          "        await self.get(SECRETS, name, namespace=namespace)\n")
    effects = client_method_effects(resource_constants(), source)
    assert {(e.ref, e.verb, e.subresource) for e in effects["patch_status"]} == {
        (None, "patch", "status")}
    assert {(e.ref, e.verb, e.subresource) for e in effects["get_secret"]} == {
        ("SECRETS", "get", None)}


def test_a_consumer_class_carries_its_calls_to_each_constant() -> None:
    assert _derive("""
        class Scaler:
            def __init__(self, client, ref: ResourceRef) -> None:
                self._client = client
                self._ref = ref

            async def scale(self) -> None:
                await self._client.patch(self._ref, "x", {}, subresource="scale")
                await self._client.replace(self._ref, {})

        def build(kube):
            return Scaler(kube, IMAGE_POLICIES), Scaler(kube, ref=IMAGE_REPOSITORIES)
    """) == {"image.toolkit.fluxcd.io:imagepolicies/scale:patch",
             "image.toolkit.fluxcd.io:imagepolicies:update",
             "image.toolkit.fluxcd.io:imagerepositories/scale:patch",
             "image.toolkit.fluxcd.io:imagerepositories:update"}


def test_a_consumer_function_and_a_fixed_method_are_derived() -> None:
    assert _derive("""
        async def read(client, ref: ResourceRef) -> None:
            await client.list(ref)

        async def elect(client) -> None:
            await client.get_lease("ns", "lock")
            await read(client, NAMESPACES)
    """) == {"coordination.k8s.io:leases:get", "core:namespaces:list"}


@pytest.mark.parametrize("source", [
    # A constant stored in a variable: the analysis does not follow data flow.
    """
    async def f(client) -> None:
        ref = IMAGE_POLICIES
        await client.get(ref, "x")
    """,
    # A reference of unknown origin.
    """
    async def f(client, informer) -> None:
        await client.get(informer.ref, "x")
    """,
    # A consumer handing its reference on to a helper.
    """
    class Lister:
        def __init__(self, client, ref: ResourceRef) -> None:
            self._client = client
            self._ref = ref

        async def run(self) -> None:
            await helper(self._client, self._ref)
    """,
    # A constant given to something that takes no ResourceRef.
    """
    def f() -> None:
        print(SECRETS)
    """,
])
def test_patterns_it_cannot_follow_are_errors(source: str) -> None:
    with pytest.raises(UnderivableError):
        _derive(source)


def test_dict_get_and_friends_are_not_api_calls() -> None:
    assert _derive("""
        def f(obj: dict[str, str], store: dict[str, str]) -> None:
            obj.get("metadata")
            store.get("key")
            [].append(1)
    """) == set()
