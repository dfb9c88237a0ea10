"""SOCKS5 proxies (``proxySecretRef`` with a ``socks5://`` address), in both modes.

A real SOCKS5 server (Debian's ``microsocks``) on loopback sits in front of the real
``docker-registry``; its log line per tunnel (``connected to <host>:<port>``) proves the
traffic went through it. Both with and without username/password (RFC 1929).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagereflector.registry.client import ClientSettings, RegistryClient
from imagereflector.registry.errors import AuthError, RegistryUnavailable
from imagereflector.registry.limiter import HostLimiter, SystemClock
from imagereflector.registry.reference import parse_image_reference
from imagereflector.registry.transport import NullObserver
from imagereflector.registry.types import Credentials, ProxyConfig
from tests.credentials.bench import Bench
from tests.fakes.ports import process_listens
from tests.fakes.registry import TEST_CREDS, RegistryProcess, free_port

SOCKS_USER = "socksuser"


@dataclass
class Socks:
    """A running microsocks; ``password`` is empty when it wants no credentials."""

    port: int
    password: str
    log_file: Path

    @property
    def address(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    def config(self, *, password: str | None = None) -> ProxyConfig:
        if not self.password and password is None:
            return ProxyConfig(address=self.address)
        return ProxyConfig(address=self.address, username=SOCKS_USER,
                           password=self.password if password is None else password)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@contextlib.asynccontextmanager
async def running_microsocks(directory: Path, *, auth: bool) -> AsyncIterator[Socks]:
    """Start microsocks on 127.0.0.1; fails (never skips) when it cannot start."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    port = free_port()
    password = "socks-" + secrets.token_hex(8) if auth else ""
    argv = ["microsocks", "-i", "127.0.0.1", "-p", str(port)]
    if auth:
        argv += ["-u", SOCKS_USER, "-P", password]
    log_file = directory / "microsocks.log"
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        for _ in range(200):  # until it listens; the process start is all we wait for
            if process.returncode is not None:
                raise RuntimeError(f"microsocks exited with {process.returncode} at start")
            if process_listens(process.pid, port):
                break
            await asyncio.sleep(0.025)
        else:
            raise RuntimeError("microsocks did not start listening")
        yield Socks(port=port, password=password, log_file=log_file)
    finally:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    found = RegistryClient(limiter=HostLimiter(qps=0, burst=0, clock=SystemClock()),
                           observer=NullObserver(), settings=ClientSettings(attempts=1))
    yield found
    await found.close()


@pytest.mark.parametrize("auth", [False, True], ids=["open", "username-password"])
async def test_tags_through_socks5(client: RegistryClient, basic_registry: RegistryProcess,
                                   tmp_path: Path, auth: bool) -> None:
    basic_registry.write_tags("app", ["1.0.0", "1.1.0"])
    async with running_microsocks(tmp_path / "socks", auth=auth) as socks:
        tags = await client.list_tags(parse_image_reference(basic_registry.ref("app")),
                                      credentials=Credentials(*TEST_CREDS),
                                      proxy=socks.config(), timeout=20)
        log = socks.log()
    assert sorted(tags) == ["1.0.0", "1.1.0"]
    assert f"connected to 127.0.0.1:{basic_registry.port}" in log


async def test_token_realm_goes_through_socks5_too(client: RegistryClient,
                                                   token_registry: RegistryProcess,
                                                   tmp_path: Path) -> None:
    token_registry.write_tags("app", ["a"])
    async with running_microsocks(tmp_path / "socks", auth=True) as socks:
        tags = await client.list_tags(parse_image_reference(token_registry.ref("app")),
                                      credentials=Credentials(*TEST_CREDS),
                                      proxy=socks.config(), timeout=20)
        tunnels = socks.log().count("connected to 127.0.0.1:")
    assert tags == ["a"]
    assert tunnels >= 2  # the registry and its token realm (another port)


async def test_refused_socks5_credentials_are_an_auth_error(
        client: RegistryClient, registry: RegistryProcess, tmp_path: Path) -> None:
    planted = "Wrong-Socks-Password-7d1e"
    async with running_microsocks(tmp_path / "socks", auth=True) as socks:
        ref = parse_image_reference(registry.ref("app"))
        for config in (socks.config(password=planted), ProxyConfig(address=socks.address)):
            with pytest.raises(AuthError) as info:
                await client.list_tags(ref, proxy=config, timeout=20)
            assert "the proxy refused the credentials (SOCKS5" in str(info.value)
            assert planted not in str(info.value)


async def test_socks5_proxy_down_is_unavailable(client: RegistryClient,
                                                registry: RegistryProcess) -> None:
    dead = ProxyConfig(address=f"socks5://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryUnavailable, match="SOCKS5 proxy"):
        await client.list_tags(parse_image_reference(registry.ref("app")), proxy=dead,
                               timeout=20)


async def test_proxy_secret_with_socks5_in_both_modes(bench: Bench,
                                                      basic_registry: RegistryProcess,
                                                      tmp_path: Path) -> None:
    basic_registry.write_tags("app", ["1.0.0"])
    async with running_microsocks(tmp_path / "socks", auth=True) as socks:
        proxy = bench.secret(bench.unique("socks"), {
            "address": socks.address, "username": SOCKS_USER, "password": socks.password})
        creds = bench.pull_secret(bench.unique("creds"), {basic_registry.host: TEST_CREDS})
        name = bench.unique("socks")
        bench.repository(name, basic_registry.ref("app"), proxySecretRef={"name": proxy},
                         secretRef={"name": creds})
        outcomes = await bench.both(name)
        log = socks.log()
    for outcome in outcomes:
        assert outcome.ready[0] == "True", outcome.ready
        assert outcome.ready[2].startswith("successful scan: found 1 tags")
    assert log.count(f"connected to 127.0.0.1:{basic_registry.port}") >= 2
