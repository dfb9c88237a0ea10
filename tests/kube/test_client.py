"""Kubernetes client: paths, rate limiting, proxy rule (pure parts; server parts use the fake)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

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
from tests.fakes.kubeapi import FakeKubeAPI, running_kubeapi


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


# -- against the fake API server ---------------------------------------------------------------


class CountingObserver:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def observe_request(self, *, code: str, method: str, host: str) -> None:
        self.seen.append((code, method, host))


@pytest.fixture
async def kubeapi() -> AsyncIterator[FakeKubeAPI]:
    async with running_kubeapi() as api:
        yield api


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
async def client(
    kubeapi: FakeKubeAPI,
    tmp_path: Path,
    observer: CountingObserver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[KubeClient]:
    # A dead proxy in the environment must not matter for a loopback API server.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kc = await KubeClient.connect(
        kubeconfig=str(kubeapi.write_kubeconfig(tmp_path / "kubeconfig")),
        observer=observer,
    )
    yield kc
    await kc.close()


async def test_kubeconfig_from_environment(
    kubeapi: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeapi.write_kubeconfig(tmp_path / "env-kc")))
    kc = await KubeClient.connect()
    try:
        assert (await kc.get_namespace("default"))["metadata"]["name"] == "default"
    finally:
        await kc.close()


async def test_errors_are_typed(
    kubeapi: FakeKubeAPI, client: KubeClient, observer: CountingObserver
) -> None:
    with pytest.raises(NotFoundError) as nf:
        await client.get(IMAGE_REPOSITORIES, "missing", namespace="default")
    assert nf.value.status == 404
    assert nf.value.reason == "NotFound"
    assert '"missing" not found' in nf.value.message

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "data": {".dockerconfigjson": "c2VjcmV0LXZhbHVl"},
    }
    kubeapi.create(secret)
    with pytest.raises(ConflictError) as conflict:
        await client.create(SECRETS, secret, namespace="default")
    assert "c2VjcmV0LXZhbHVl" not in str(conflict.value)
    assert (await client.get_secret("default", "creds"))["data"] == secret["data"]

    kubeapi.fail_next("GET", r"/namespaces/default$", 500)
    with pytest.raises(ApiError) as failed:
        await client.get_namespace("default")
    assert (failed.value.status, failed.value.reason) == (500, "InternalError")
    host = client.host
    assert observer.seen == [
        ("404", "GET", host),
        ("409", "POST", host),
        ("200", "GET", host),
        ("500", "GET", host),
    ]


async def test_transport_errors_have_status_zero(
    kubeapi: FakeKubeAPI, client: KubeClient, observer: CountingObserver
) -> None:
    await kubeapi.go_down()
    with pytest.raises(ApiError) as down:
        await client.get_namespace("default")
    assert down.value.status == 0
    assert observer.seen[-1][0] == "<error>"
    await kubeapi.come_up()
    assert (await client.get_namespace("default"))["metadata"]["name"] == "default"


async def test_list_pages_and_service_accounts(kubeapi: FakeKubeAPI, client: KubeClient) -> None:
    for i in range(3):
        kubeapi.create(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"sa{i}"}}
        )
    first = await client.list(SERVICE_ACCOUNTS, namespace="default", limit=2)
    assert len(first.items) == 2
    assert first.continue_token
    rest = await client.list(
        SERVICE_ACCOUNTS, namespace="default", limit=2, continue_token=first.continue_token
    )
    assert [i["metadata"]["name"] for i in first.items + rest.items] == ["sa0", "sa1", "sa2"]
    assert rest.continue_token is None
    assert (await client.get_service_account("default", "sa1"))["metadata"]["name"] == "sa1"


async def test_leases_create_get_update_with_optimistic_lock(client: KubeClient) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "leader", "namespace": "default"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 35},
    }
    created = await client.create_lease("default", lease)
    got = await client.get_lease("default", "leader")
    assert got["spec"]["holderIdentity"] == "a"
    got["spec"]["holderIdentity"] = "b"
    updated = await client.update_lease("default", got)
    assert updated["spec"]["holderIdentity"] == "b"
    created["spec"]["holderIdentity"] = "c"  # stale resourceVersion
    with pytest.raises(ConflictError):
        await client.update_lease("default", created)


async def test_status_and_metadata_patches(kubeapi: FakeKubeAPI, client: KubeClient) -> None:
    kubeapi.create(
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "kind": "ImageRepository",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"image": "x"},
        }
    )
    out = await client.patch(
        IMAGE_REPOSITORIES, "r", {"status": {"a": 1}, "spec": {"image": "y"}},
        namespace="default", subresource="status", patch_type="merge",
    )
    assert out["status"] == {"a": 1}
    assert out["spec"] == {"image": "x"}  # /status ignores spec
    out = await client.patch(
        IMAGE_REPOSITORIES, "r", {"metadata": {"finalizers": ["f"]}}, namespace="default",
        patch_type="merge",
    )
    assert out["metadata"]["finalizers"] == ["f"]
    patches = kubeapi.calls(verb="patch")
    assert [p.subresource for p in patches] == ["status", ""]


CRD_YAML = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: v1
kind: Namespace
metadata: {name: not-a-crd}
"""


async def test_apply_crds_creates_only_missing(
    kubeapi: FakeKubeAPI, client: KubeClient, tmp_path: Path
) -> None:
    path = tmp_path / "crds.yaml"
    path.write_text(CRD_YAML)
    assert await client.apply_crds([path]) == ["widgets.example.com"]
    assert await client.apply_crds([path]) == []
    widgets = ResourceRef("example.com", "v1", "widgets")
    await client.create(
        widgets,
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        namespace="default",
    )
    assert [w["metadata"]["name"] for w in (await client.list(widgets)).items] == ["w"]
    assert kubeapi.get("namespaces", None, "not-a-crd") is None


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
# next token of a counter kept in a file, valid for the given seconds.
_PLUGIN = """
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
status = {"token": f"tok-{n}"}
if sys.argv[2] != "none":
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=float(sys.argv[2]))
    status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": status}))
"""


def _exec_kubeconfig(tmp_path: Path, url: str, lifetime: str) -> tuple[Path, Path]:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(_PLUGIN)
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


async def test_exec_plugin_runs_again_before_its_token_expires(tmp_path: Path) -> None:
    # kubernetes_asyncio treats a token as expired five minutes early; a lifetime of five
    # minutes and two seconds makes the first token due for renewal after two seconds.
    async with running_kubeapi(token="tok-1") as api:
        path, runs = _exec_kubeconfig(tmp_path, api.url, str(5 * 60 + 2))
        client = await KubeClient.connect(kubeconfig=str(path))
        try:
            for _ in range(3):  # a fresh token is reused: no plugin run per request
                await client.get_namespace("default")
            assert runs.read_text() == "1"
            api.set_token("tok-2")  # the first token is no longer accepted
            await asyncio.sleep(2.5)
            await client.get_namespace("default")
            assert runs.read_text() == "2"
            await asyncio.gather(*(client.get_namespace("default") for _ in range(5)))
            assert runs.read_text() == "2"
        finally:
            await client.close()


async def test_exec_token_without_expiry_is_kept(tmp_path: Path) -> None:
    async with running_kubeapi(token="tok-1") as api:
        path, runs = _exec_kubeconfig(tmp_path, api.url, "none")
        client = await KubeClient.connect(kubeconfig=str(path))
        try:
            for _ in range(3):
                await client.get_namespace("default")
            assert runs.read_text() == "1"
        finally:
            await client.close()
