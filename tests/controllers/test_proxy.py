"""``spec.proxySecretRef``: an object's registry traffic goes through its proxy.

A real tinyproxy sits between the controller and the real registry; its log proves the
requests went through it. Bad proxy Secrets are configuration errors with messages that
never echo credentials. The objects live on the real API server, and the controller
reads the Secrets as the manifests' ServiceAccount (``get`` on secrets, nothing more).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from imagereflector.api import meta
from tests.controllers.harness import has_ready_reason, is_ready_with, ready, repository
from tests.controllers.realharness import REPOS, KubeTest, start_cluster
from tests.fakes.proxy import PROXY_USER, running_tinyproxy
from tests.fakes.registry import RegistryProcess

JSON = dict[str, Any]


def proxy_secret(name: str, **data: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.mark.parametrize("auth", [True, False], ids=["basic-auth", "open"])
async def test_scan_goes_through_the_proxy(registry: RegistryProcess, tmp_path: Path,
                                           kube: KubeTest, auth: bool) -> None:
    registry.write_tags("app", ["a", "b"])
    async with running_tinyproxy(tmp_path / "proxy", auth=auth) as proxy, \
            start_cluster(kube) as cluster:
        data = {"address": proxy.address}
        if auth:
            data |= {"username": PROXY_USER, "password": proxy.password}
        cluster.api.create(proxy_secret("proxy", **data))
        cluster.api.create(repository("app", f"{registry.host}/app",
                                      proxySecretRef={"name": "proxy"}))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 2 tags"))
        log = proxy.log()
        assert f"{registry.host}/v2/app/tags/list" in log
        assert f"{registry.host}/v2/" in log


async def test_wrong_proxy_password_is_a_clear_failure(registry: RegistryProcess,
                                                       tmp_path: Path, kube: KubeTest,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    registry.write_tags("app", ["a"])
    caplog.set_level(logging.DEBUG, logger="imagereflector")
    planted = "Wrong-Proxy-Password-51ab"
    async with running_tinyproxy(tmp_path / "proxy") as proxy, \
            start_cluster(kube) as cluster:
        cluster.api.create(proxy_secret("proxy", address=proxy.address, username=PROXY_USER,
                                        password=planted))
        cluster.api.create(repository("app", f"{registry.host}/app",
                                      proxySecretRef={"name": "proxy"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
        found = ready(obj)
        assert found is not None
        assert "proxy" in found.message
        assert planted not in found.message
        assert planted not in caplog.text


@pytest.mark.parametrize(
    ("data", "message"),
    [({}, "invalid proxy secret 'proxy': key 'address' is missing"),
     ({"address": "ftp://127.0.0.1:21"},
      "invalid proxy secret 'proxy': 'address' must be an http://, https:// or socks5:// URL "
      "with a host"),
     ({"address": "http://user:Planted-9f@127.0.0.1:3128"},
      "invalid proxy secret 'proxy': 'address' must not contain credentials; use the "
      "'username' and 'password' keys")],
    ids=["no-address", "bad-scheme", "userinfo"])
async def test_bad_proxy_secret_is_authentication_failed(registry: RegistryProcess,
                                                         kube: KubeTest, data: dict[str, str],
                                                         message: str) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(proxy_secret("proxy", **data))
        cluster.api.create(repository("app", f"{registry.host}/app",
                                      proxySecretRef={"name": "proxy"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        found = ready(obj)
        assert found is not None
        assert found.message == f"failed to configure authentication options: {message}"


async def test_missing_proxy_secret(registry: RegistryProcess, kube: KubeTest) -> None:
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app",
                                      proxySecretRef={"name": "absent"}))
        obj = await cluster.wait_for(REPOS, cluster.ns, "app",
                                     has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        found = ready(obj)
        assert found is not None
        assert found.message == ('failed to configure authentication options: '
                                 'secrets "absent" not found')


async def test_aws_provider_on_a_non_ecr_host_scans_anonymously(registry: RegistryProcess,
                                                                 kube: KubeTest) -> None:
    registry.write_tags("app", ["a"])
    async with start_cluster(kube) as cluster:
        cluster.api.create(repository("app", f"{registry.host}/app", provider="aws"))
        await cluster.wait_for(REPOS, cluster.ns, "app", is_ready_with("found 1 tags"))
