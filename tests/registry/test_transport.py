"""TLS contexts from PEM material, proxy settings and the bounded session pool."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from imagereflector.registry import transport
from imagereflector.registry.errors import TLSError
from imagereflector.registry.transport import (
    Channel,
    GuardedResolver,
    SessionPool,
    build_ssl_context,
    proxy_settings,
)
from imagereflector.registry.types import ProxyConfig, TLSConfig
from tests.fakes.certs import make_ca


def _closed(channel: Channel) -> bool:
    # A function, not the property: mypy would otherwise narrow it after the first assert.
    return channel.session.closed


def _leftover_key_files() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("imagereflector-")}


def test_context_verifies_and_adds_the_ca_to_the_system_roots(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    system = build_ssl_context(None)
    context = build_ssl_context(TLSConfig(ca_pem=ca.cert_pem))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == system.cert_store_stats()["x509_ca"] + 1


def test_client_certificate_is_loaded_and_no_key_file_is_left(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    client = ca.issue(tmp_path, "client", server=False, client=True, sans=())
    before = _leftover_key_files()
    build_ssl_context(TLSConfig(cert_pem=client.cert_pem, key_pem=client.key_pem))
    assert _leftover_key_files() == before


@pytest.mark.parametrize(
    "tls",
    [
        TLSConfig(ca_pem=b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
        TLSConfig(cert_pem=b"cert only"),
        TLSConfig(key_pem=b"key only"),
        TLSConfig(cert_pem=b"garbage", key_pem=b"PRIVATE KEY garbage"),
    ],
    ids=["bad-ca", "cert-without-key", "key-without-cert", "garbage-pair"],
)
def test_bad_material_is_a_tls_error_without_pem_text(tls: TLSConfig) -> None:
    before = _leftover_key_files()
    with pytest.raises(TLSError) as info:
        build_ssl_context(tls)
    assert "garbage" not in str(info.value)
    assert "base64" not in str(info.value)
    assert _leftover_key_files() == before


def test_client_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    one = ca.issue(tmp_path, "one", server=False, client=True, sans=())
    two = ca.issue(tmp_path, "two", server=False, client=True, sans=())
    with pytest.raises(TLSError, match="client certificate"):
        build_ssl_context(TLSConfig(cert_pem=one.cert_pem, key_pem=two.key_pem))


@pytest.mark.parametrize(
    ("proxy", "url", "user"),
    [
        (None, None, None),
        (ProxyConfig("http://proxy.example:3128"), "http://proxy.example:3128", None),
        (ProxyConfig("proxy.example:3128", "u", "p"), "http://proxy.example:3128", "u"),
        (ProxyConfig("http://x:y@proxy.example:3128/"), "http://proxy.example:3128/", None),
    ],
    ids=["none", "plain", "no-scheme-with-auth", "userinfo-dropped"],
)
def test_proxy_settings(proxy: ProxyConfig | None, url: str | None, user: str | None) -> None:
    proxy_url, headers = proxy_settings(proxy)
    assert proxy_url == url
    if user is None:
        assert headers is None
    else:
        assert headers is not None
        value = headers["Proxy-Authorization"]
        assert base64.b64decode(value.removeprefix("Basic ")).decode().startswith(f"{user}:")


async def test_pool_reuses_a_session_per_tls_and_proxy_pair(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    pool = SessionPool(max_sessions=4, connect_timeout=5, user_agent="t")
    try:
        async with pool.lease(tls=None, proxy=None) as a:
            pass
        async with pool.lease(tls=None, proxy=None) as b:
            pass
        async with pool.lease(tls=TLSConfig(ca_pem=ca.cert_pem), proxy=None) as c:
            pass
        async with pool.lease(tls=None, proxy=ProxyConfig("http://p.example:1")) as d:
            pass
        assert a.session is b.session
        assert len({id(a.session), id(c.session), id(d.session)}) == 3
        assert d.proxy == "http://p.example:1"
        assert not _closed(a)
    finally:
        await pool.close()
    assert a.session.closed
    assert c.session.closed
    assert d.session.closed


async def test_pool_is_bounded_and_closes_evicted_sessions_after_their_call() -> None:
    pool = SessionPool(max_sessions=1, connect_timeout=5, user_agent="t")
    try:
        async with pool.lease(tls=None, proxy=None) as busy:
            async with pool.lease(tls=None, proxy=ProxyConfig("http://p.example:1")) as other:
                assert len(pool) == 1
                assert not _closed(busy)  # evicted, but its call is still running
            assert not _closed(other)
        assert _closed(busy)
    finally:
        await pool.close()
    assert _closed(other)


async def test_closed_pool_refuses_leases() -> None:
    pool = SessionPool(max_sessions=1, connect_timeout=5, user_agent="t")
    await pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with pool.lease(tls=None, proxy=None):
            pass


class _FixedResolver(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=family, proto=0,
                              flags=0) for a in self.addresses]

    async def close(self) -> None:
        pass


async def test_names_never_resolve_to_metadata_addresses() -> None:
    mixed = GuardedResolver(_FixedResolver("169.254.169.254", "10.0.0.7"))
    assert [r["host"] for r in await mixed.resolve("registry.example", 443)] == ["10.0.0.7"]
    only = GuardedResolver(_FixedResolver("169.254.169.254", "fd00:ec2::254"))
    with pytest.raises(OSError, match="resolves only to link-local or cloud metadata"):
        await only.resolve("evil.example", 80)


async def test_workers_asking_at_once_share_one_context_build(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh process's workers all lease at once: the trust store is read once, one
    session serves them all, and a waiter cancelled meanwhile does not cancel the build
    the others wait for. A failed build reaches every waiter and is not remembered."""
    builds: list[TLSConfig | None] = []
    release = threading.Event()
    bad = TLSConfig(ca_pem=b"not a certificate")

    def slow_build(tls: TLSConfig | None) -> ssl.SSLContext:
        builds.append(tls)
        release.wait(10)
        return build_ssl_context(tls)

    monkeypatch.setattr(transport, "build_ssl_context", slow_build)
    pool = SessionPool(max_sessions=4, connect_timeout=5, user_agent="t")

    async def lease(tls: TLSConfig | None) -> Channel:
        async with pool.lease(tls=tls, proxy=None) as channel:
            return channel

    try:
        waiters = [asyncio.create_task(lease(None)) for _ in range(8)]
        await asyncio.sleep(0.05)
        waiters[0].cancel()
        release.set()
        done = await asyncio.gather(*waiters, return_exceptions=True)
        assert isinstance(done[0], asyncio.CancelledError)
        sessions = {id(c.session) for c in done[1:] if isinstance(c, Channel)}
        assert len(sessions) == 1
        assert builds == [None]

        failed = await asyncio.gather(lease(bad), lease(bad), return_exceptions=True)
        assert all(isinstance(f, TLSError) for f in failed)
        assert builds == [None, bad]
        with pytest.raises(TLSError):
            await lease(bad)
        assert builds == [None, bad, bad]
    finally:
        await pool.close()
