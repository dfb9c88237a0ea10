"""Kubernetes client: paths, rate limiting and the proxy rule (pure); typed errors, paging,
Leases, patches, CRDs and exec-plugin tokens against the real API server (through the
recording proxy, which also injects the 500 and the outage); a server without Priority and
Fairness, which no real one is, on the fake."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagereflector.kube.client import (
    EVENTS,
    IMAGE_REPOSITORIES,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    ApiError,
    ConflictError,
    KubeClient,
    NotFoundError,
    ResourceRef,
    TokenBucket,
    is_loopback_host,
)
from testbed.cluster import ApiError as BedApiError
from tests.controllers.harness import repository
from tests.controllers.realharness import KubeTest
from tests.fakes.kubeapi import running_kubeapi


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            IMAGE_REPOSITORIES.path(namespace="apps", name="pod info", subresource="status"),
            "/apis/image.toolkit.fluxcd.io/v1beta2/namespaces/apps/imagerepositories/pod%20info/status",
        ),
        (IMAGE_REPOSITORIES.path(), "/apis/image.toolkit.fluxcd.io/v1beta2/imagerepositories"),
        (NAMESPACES.path(namespace="ignored", name="apps"), "/api/v1/namespaces/apps"),
        (EVENTS.path(namespace="apps"), "/api/v1/namespaces/apps/events"),
    ],
    ids=["object-status", "all-namespaces", "cluster-scoped", "core"],
)
def test_paths(path: str, expected: str) -> None:
    assert path == expected


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Out of tokens: waiters are spaced 1/qps apart, in arrival order.
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock.t += 1.0  # refills 10 tokens, capped at the burst of 3 (after repaying the debt of 2)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_token_bucket_disabled() -> None:
    bucket = TokenBucket(qps=0, burst=1, clock=FakeClock())
    assert all(bucket.reserve() == 0.0 for _ in range(1000))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("10.96.0.1", False),
        ("kubernetes.default.svc", False),
        (None, False),
    ],
)
def test_loopback_hosts_bypass_proxies(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- against the real API server, through the recording proxy -----------------------------


class CountingObserver:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def observe_request(self, *, code: str, method: str, host: str) -> None:
        self.seen.append((code, method, host))


async def powerful_token(kube: KubeTest, account: str) -> tuple[str, str]:
    """A token of ServiceAccount ``account`` bound to ``cluster-admin``, and the namespace
    of its own the account lives in (so the test's namespace holds no ServiceAccount);
    returned once the API server's RBAC cache has the binding. The binding is removed
    after the test."""
    home = kube.namespace("accounts")
    kube.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": account, "namespace": home}})
    binding = f"client-test-{kube.run_id}-{account}"
    kube.api.create({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": home}]})
    kube.on_teardown(lambda: kube.api.delete("clusterrolebindings", None, binding))
    token = kube.testbed.service_account_token(home, account)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # a new binding takes effect a moment after it is stored
        try:
            kube.testbed.request("GET", f"/api/v1/namespaces/{kube.ns}", token=token)
            return token, home
        except BedApiError as err:
            if err.status != 403 or loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
async def admin_kubeconfig(kube: KubeTest) -> Path:
    token, _ = await powerful_token(kube, "client-test")
    return kube.kubeconfig(kube.tmp_path / "admin-kubeconfig", token)


@pytest.fixture
async def client(
    admin_kubeconfig: Path,
    observer: CountingObserver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[KubeClient]:
    # A dead proxy in the environment must not matter for a loopback API server.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kc = await KubeClient.connect(kubeconfig=str(admin_kubeconfig), observer=observer)
    yield kc
    await kc.close()


async def test_kubeconfig_from_environment(
    kube: KubeTest, admin_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig))
    kc = await KubeClient.connect()
    try:
        assert (await kc.get_namespace(kube.ns))["metadata"]["name"] == kube.ns
    finally:
        await kc.close()


async def test_errors_are_typed(
    kube: KubeTest, client: KubeClient, observer: CountingObserver
) -> None:
    with pytest.raises(NotFoundError) as nf:
        await client.get(IMAGE_REPOSITORIES, "missing", namespace=kube.ns)
    assert nf.value.status == 404
    assert nf.value.reason == "NotFound"
    assert '"missing" not found' in nf.value.message

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": kube.ns},
        "data": {"token": "c2VjcmV0LXZhbHVl"},
    }
    kube.api.create(secret)
    with pytest.raises(ConflictError) as conflict:
        await client.create(SECRETS, secret, namespace=kube.ns)
    assert conflict.value.status == 409
    assert "c2VjcmV0LXZhbHVl" not in str(conflict.value)
    assert (await client.get_secret(kube.ns, "creds"))["data"] == secret["data"]

    kube.proxy.fail_next("GET", rf"/namespaces/{kube.ns}$", 500)
    with pytest.raises(ApiError) as failed:
        await client.get_namespace(kube.ns)
    assert (failed.value.status, failed.value.reason) == (500, "InternalError")
    host = client.host
    assert observer.seen == [
        ("404", "GET", host),
        ("409", "POST", host),
        ("200", "GET", host),
        ("500", "GET", host),
    ]


async def test_transport_errors_have_status_zero(
    kube: KubeTest, client: KubeClient, observer: CountingObserver
) -> None:
    await kube.proxy.go_down()
    with pytest.raises(ApiError) as down:
        await client.get_namespace(kube.ns)
    assert down.value.status == 0
    assert observer.seen[-1][0] == "<error>"
    await kube.proxy.come_up()
    assert (await client.get_namespace(kube.ns))["metadata"]["name"] == kube.ns


async def test_list_pages_and_service_accounts(kube: KubeTest, client: KubeClient) -> None:
    for i in range(3):
        kube.api.create(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"sa{i}"}}
        )
    whole = [i["metadata"]["name"]
             for i in (await client.list(SERVICE_ACCOUNTS, namespace=kube.ns)).items]
    assert {"sa0", "sa1", "sa2"} <= set(whole)  # and what the namespace came with
    first = await client.list(SERVICE_ACCOUNTS, namespace=kube.ns, limit=2)
    assert len(first.items) == 2
    assert first.continue_token
    paged: list[dict[str, Any]] = list(first.items)
    token: str | None = first.continue_token
    while token:
        page = await client.list(SERVICE_ACCOUNTS, namespace=kube.ns, limit=2,
                                 continue_token=token)
        assert 0 < len(page.items) <= 2
        paged += page.items
        token = page.continue_token
    assert [i["metadata"]["name"] for i in paged] == whole
    assert (await client.get_service_account(kube.ns, "sa1"))["metadata"]["name"] == "sa1"


async def test_leases_create_get_update_with_optimistic_lock(
        kube: KubeTest, client: KubeClient) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "leader", "namespace": kube.ns},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 35},
    }
    created = await client.create_lease(kube.ns, lease)
    got = await client.get_lease(kube.ns, "leader")
    assert got["spec"]["holderIdentity"] == "a"
    got["spec"]["holderIdentity"] = "b"
    updated = await client.update_lease(kube.ns, got)
    assert updated["spec"]["holderIdentity"] == "b"
    created["spec"]["holderIdentity"] = "c"  # stale resourceVersion
    with pytest.raises(ConflictError):
        await client.update_lease(kube.ns, created)


async def test_status_and_metadata_patches(kube: KubeTest, client: KubeClient) -> None:
    kube.api.create(repository("r", "example.com/x"))
    out = await client.patch(
        IMAGE_REPOSITORIES, "r",
        {"status": {"observedGeneration": 7}, "spec": {"image": "example.com/y"}},
        namespace=kube.ns, subresource="status", patch_type="merge",
    )
    assert out["status"]["observedGeneration"] == 7
    assert out["spec"]["image"] == "example.com/x"  # /status ignores spec
    out = await client.patch(
        IMAGE_REPOSITORIES, "r", {"metadata": {"finalizers": ["example.com/f"]}},
        namespace=kube.ns, patch_type="merge",
    )
    assert out["metadata"]["finalizers"] == ["example.com/f"]
    patches = kube.proxy.calls(verb="patch")
    assert [p.subresource for p in patches] == ["status", ""]
    # Without its finalizer again, so the test's namespace can go.
    await client.patch(IMAGE_REPOSITORIES, "r", {"metadata": {"finalizers": None}},
                       namespace=kube.ns, patch_type="merge")


CRD_YAML = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  names: {{kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: not-a-crd-{run}}}
"""


async def test_apply_crds_creates_only_missing(
    kube: KubeTest, client: KubeClient, tmp_path: Path
) -> None:
    group = f"t{kube.run_id}.example.com"  # the session cluster is shared: a group of its own
    name = f"widgets.{group}"
    path = tmp_path / "crds.yaml"
    path.write_text(CRD_YAML.format(group=group, run=kube.run_id))
    kube.on_teardown(lambda: kube.testbed.request(
        "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"))
    assert await client.apply_crds([path]) == [name]
    assert await client.apply_crds([path]) == []
    widgets = ResourceRef(group, "v1", "widgets")
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:  # the new kind is served once the CRD is Established
        try:
            await client.create(widgets, widget, namespace=kube.ns)
            break
        except NotFoundError:
            assert loop.time() < deadline, "the CRD was never served"
            await asyncio.sleep(0.05)
    assert [w["metadata"]["name"] for w in (await client.list(widgets)).items] == ["w"]
    assert kube.api.get("namespaces", None, f"not-a-crd-{kube.run_id}") is None


# -- against the fake API server -----------------------------------------------------------
# A real API server always has Priority and Fairness (since 1.20, the testbed's included):
# only the fake can be a server without it.


@pytest.mark.parametrize("apf", [True, False], ids=["apf", "no-apf"])
async def test_priority_and_fairness_turns_the_client_limit_off(tmp_path: Path,
                                                               apf: bool) -> None:
    async with running_kubeapi(priority_and_fairness=apf) as api:
        client = await KubeClient.connect(kubeconfig=str(api.write_kubeconfig(tmp_path / "kc")),
                                          qps=1, burst=1)
        try:
            assert client.rate_limited
            assert await client.detect_priority_and_fairness() is apf
            assert client.rate_limited is not apf
            assert client.sibling().rate_limited is not apf
        finally:
            await client.close()


# An exec credential plugin as kubeconfigs for EKS, GKE and AKS use: each run issues the
# next token of a list kept in files (run n prints tok-<n>), valid for the given seconds.
_PLUGIN = """
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
status = {"token": (counter.parent / f"tok-{n}").read_text()}
if sys.argv[2] != "none":
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=float(sys.argv[2]))
    status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": status}))
"""


def _exec_kubeconfig(tmp_path: Path, url: str, lifetime: str,
                     tokens: list[str]) -> tuple[Path, Path]:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(_PLUGIN)
    for n, token in enumerate(tokens, start=1):
        (tmp_path / f"tok-{n}").write_text(token)
    counter = tmp_path / "runs"
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                     "command": sys.executable,
                     "args": [str(plugin), str(counter), lifetime]}}
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "c", "cluster": {"server": url}}],
              "users": [{"name": "u", "user": user}],
              "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
              "current-context": "x"}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, counter


async def refused(kube: KubeTest, token: str) -> None:
    """Wait until the API server refuses ``token`` (401): it notices a deleted
    ServiceAccount through its informer, a moment after the delete."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            kube.testbed.request("GET", f"/api/v1/namespaces/{kube.ns}", token=token)
        except BedApiError as err:
            if err.status != 401:
                raise
            return
        assert loop.time() < deadline, "the deleted account's token is still accepted"
        await asyncio.sleep(0.05)


async def test_exec_plugin_runs_again_before_its_token_expires(
        kube: KubeTest, tmp_path: Path) -> None:
    # kubernetes_asyncio treats a token as expired five minutes early; a lifetime of five
    # minutes and two seconds makes the first token due for renewal after two seconds.
    # The first token is a real ServiceAccount token; deleting that ServiceAccount makes
    # the API server refuse it, as a rotated cloud token is refused.
    (first, home), (second, _) = (await powerful_token(kube, "first"),
                                  await powerful_token(kube, "second"))
    path, runs = _exec_kubeconfig(tmp_path, kube.proxy.url, str(5 * 60 + 2), [first, second])
    client = await KubeClient.connect(kubeconfig=str(path))
    try:
        for _ in range(3):  # a fresh token is reused: no plugin run per request
            await client.get_namespace(kube.ns)
        assert runs.read_text() == "1"
        kube.api.delete("serviceaccounts", home, "first")
        await refused(kube, first)
        await asyncio.sleep(2.5)
        await client.get_namespace(kube.ns)
        assert runs.read_text() == "2"
        await asyncio.gather(*(client.get_namespace(kube.ns) for _ in range(5)))
        assert runs.read_text() == "2"
    finally:
        await client.close()


async def test_exec_token_without_expiry_is_kept(kube: KubeTest, tmp_path: Path) -> None:
    token, _ = await powerful_token(kube, "kept")
    path, runs = _exec_kubeconfig(tmp_path, kube.proxy.url, "none", [token])
    client = await KubeClient.connect(kubeconfig=str(path))
    try:
        for _ in range(3):
            await client.get_namespace(kube.ns)
        assert runs.read_text() == "1"
    finally:
        await client.close()
