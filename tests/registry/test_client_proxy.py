"""Per-call proxies (``spec.proxySecretRef``) with a real tinyproxy in between."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagereflector.registry.errors import AuthError, RegistryError
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.types import ProxyConfig, TLSConfig
from tests.fakes.proxy import Proxy, running_tinyproxy
from tests.fakes.registry import RegistryProcess, free_port
from tests.registry.conftest import MakeClient

TAGS = ["1.0", "2.0"]


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    async with running_tinyproxy(tmp_path / "proxy") as running:
        yield running


def ref_of(reg: RegistryProcess) -> ImageReference:
    return ImageReference(registry=reg.host, repository="team/app")


async def test_every_request_of_the_call_goes_through_the_proxy(
    registry: RegistryProcess, proxy: Proxy, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    tags = await make_client().list_tags(ref_of(registry), proxy=proxy.config(), timeout=10)
    assert sorted(tags) == TAGS
    assert f"127.0.0.1:{registry.port}" in proxy.log()


async def test_https_registry_through_the_proxy_tunnel(
    tls_registry: RegistryProcess, proxy: Proxy, make_client: MakeClient
) -> None:
    tls_registry.write_tags("team/app", TAGS)
    assert tls_registry.ca is not None
    tags = await make_client().list_tags(
        ref_of(tls_registry),
        proxy=proxy.config(),
        tls=TLSConfig(ca_pem=tls_registry.ca.cert_pem),
        timeout=10,
    )
    assert sorted(tags) == TAGS
    assert f"127.0.0.1:{tls_registry.port}" in proxy.log()


async def test_wrong_proxy_password_fails_without_showing_it(
    registry: RegistryProcess, proxy: Proxy, make_client: MakeClient
) -> None:
    planted = "planted-" + secrets.token_hex(8)
    with pytest.raises(AuthError, match="proxy refused") as info:
        await make_client().list_tags(
            ref_of(registry), proxy=proxy.config(password=planted), timeout=10
        )
    assert planted not in str(info.value)
    assert planted not in repr(info.value)
    assert proxy.password not in str(info.value)


async def test_a_dead_proxy_is_an_error_not_a_direct_connection(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    dead = ProxyConfig(address=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryError):
        await make_client().list_tags(ref_of(registry), proxy=dead, timeout=10)
