"""Per-call proxies (``spec.proxySecretRef``) with a real tinyproxy in between."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagereflector.registry.errors import AuthError, RegistryError
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.types import ProxyConfig, TLSConfig
from tests.fakes.registry import RegistryProcess, free_port
from tests.registry.conftest import MakeClient

pytestmark = pytest.mark.skipif(shutil.which("tinyproxy") is None, reason="needs tinyproxy")

TAGS = ["1.0", "2.0"]
PROXY_USER = "proxyuser"


@dataclass
class Proxy:
    """A running tinyproxy that wants Basic credentials, and its connection log."""

    port: int
    password: str
    log_file: Path

    def config(self, *, password: str | None = None) -> ProxyConfig:
        return ProxyConfig(
            address=f"http://127.0.0.1:{self.port}",
            username=PROXY_USER,
            password=self.password if password is None else password,
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    port = free_port()
    password = "proxy-" + secrets.token_hex(8)
    log_file = tmp_path / "tinyproxy.log"
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n"
        f"BasicAuth {PROXY_USER} {password}\nLogLevel Info\nLogFile \"{log_file}\"\n"
        "MaxClients 20\nDisableViaHeader Yes\n"
    )
    process = await asyncio.create_subprocess_exec(
        "tinyproxy", "-d", "-c", str(config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(200):  # until it listens; the process start is all we wait for
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.025)
                continue
            writer.close()
            await writer.wait_closed()
            break
        else:
            pytest.fail("tinyproxy did not start listening")
        yield Proxy(port=port, password=password, log_file=log_file)
    finally:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


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
