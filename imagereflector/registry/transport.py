"""aiohttp sessions for registry traffic: TLS material, proxies and their reuse.

A session (and its connection pool) is kept per (TLS fingerprint, proxy fingerprint) in a
bounded LRU, so the periodic scans of many objects reuse connections instead of building
a pool and an ``SSLContext`` on every reconcile.

Invariants:

* Sessions never read the process environment (``trust_env=False``): a proxy applies only
  when an object asks for one, and then to every request of that call. An ``http://`` or
  ``https://`` proxy is given to each request (``CONNECT`` for https registries); a
  ``socks5://`` proxy is the session's connector, so every connection of that session
  is a SOCKS5 tunnel, with the host name resolved by the proxy (Go's ``socks5`` does the
  same).
* The system trust store is always loaded; a TLSConfig's CA adds to it, never replaces it.
* A client key exists on disk only while ``load_cert_chain`` reads it: in a fresh
  ``0600`` file that is removed before the context is used.
* A session evicted from the LRU while a call still uses it is closed when that call
  releases it, never under it.
* Host names never resolve to a link-local or cloud metadata address
  (``GuardedResolver``): ``urls.parse_target`` refuses such addresses written as IP
  literals, and this refuses a name a registry made point there. A registry that really
  lives on a link-local address is reached by its IP literal, which needs no resolving.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiohttp_socks
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from imagereflector.registry.errors import TLSError
from imagereflector.registry.types import ProxyConfig, TLSConfig
from imagereflector.registry.urls import is_metadata_address

_NO_KEY_PASSWORD: Final = b""
SOCKS5_SCHEME: Final = "socks5"
SOCKS_ERRORS: Final = (aiohttp_socks.ProxyError, aiohttp_socks.ProxyConnectionError,
                       aiohttp_socks.ProxyTimeoutError)
"""What a SOCKS5 connector raises instead of aiohttp's errors (``socks_refused`` tells
the proxy's refusal of the credentials from a failure to connect)."""


class RegistryObserver(Protocol):
    """Receives what the client sees on the wire (implemented by the metrics layer)."""

    def request_done(self, host: str, method: str, code: str) -> None:
        """One HTTP exchange finished; ``code`` is the status or ``"error"`` (no answer)."""
        ...

    def ratelimit_remaining(self, host: str, remaining: int) -> None:
        """The registry reported how many requests are left (Docker Hub's header)."""
        ...

    def invalid_tags(self, host: str, count: int) -> None:
        """A scan skipped ``count`` tags that do not match the tag grammar."""
        ...


class NullObserver:
    """An observer that records nothing (the CLI and tests)."""

    def request_done(self, host: str, method: str, code: str) -> None:
        """Ignore the exchange."""

    def ratelimit_remaining(self, host: str, remaining: int) -> None:
        """Ignore the report."""

    def invalid_tags(self, host: str, count: int) -> None:
        """Ignore the count."""


@dataclass(frozen=True, slots=True)
class Channel:
    """What one call sends its requests through: a pooled session and its proxy."""

    session: aiohttp.ClientSession
    proxy: str | None
    proxy_headers: Mapping[str, str] | None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return _NO_KEY_PASSWORD


def build_ssl_context(tls: TLSConfig | None) -> ssl.SSLContext:
    """A verifying client context: system roots plus ``tls.ca_pem``, and the client cert.

    Raises ``TLSError`` (without any PEM text) when the material cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls is None:
        return context
    if tls.ca_pem:
        try:
            context.load_verify_locations(cadata=tls.ca_pem.decode("ascii"))
        except (ssl.SSLError, ValueError) as err:
            raise TLSError(f"cannot use CA certificate: {type(err).__name__}") from None
    if bool(tls.cert_pem) != bool(tls.key_pem):
        raise TLSError("both client certificate and private key need to be provided")
    if tls.cert_pem and tls.key_pem:
        descriptor, path = tempfile.mkstemp(prefix="imagereflector-", suffix=".pem")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(tls.cert_pem.rstrip() + b"\n" + tls.key_pem)
            context.load_cert_chain(path, password=_no_password)
        except (ssl.SSLError, ValueError) as err:
            raise TLSError(f"cannot use client certificate and key: {_ssl_reason(err)}"
                           ) from None
        finally:
            os.unlink(path)
    return context


# OpenSSL's reason codes carry no key material; the ones a user can act on get words.
_SSL_REASONS: Final = {
    "KEY_VALUES_MISMATCH": "private key does not match public key",
    "NO_START_LINE": "no PEM data found",
    "PEM_LIB": "the PEM data does not parse",
    "BAD_BASE64_DECODE": "the PEM data is not valid base64",
}


def _ssl_reason(err: BaseException) -> str:
    """A short, secret-free reason for a certificate or key that cannot be loaded."""
    reason = getattr(err, "reason", None)
    if isinstance(reason, str):
        return _SSL_REASONS.get(reason, reason.lower().replace("_", " "))
    return type(err).__name__


def is_socks(proxy: ProxyConfig | None) -> bool:
    """Whether ``proxy`` is a SOCKS5 proxy."""
    return proxy is not None and urlsplit(proxy.address).scheme == SOCKS5_SCHEME


def socks_refused(err: BaseException) -> bool:
    """Whether a SOCKS error is the proxy refusing to authenticate us (no retry helps),
    as opposed to failing to connect or to reach the registry."""
    if not isinstance(err, aiohttp_socks.ProxyError) or getattr(err, "error_code", None):
        return False
    text = str(err).lower()
    return "authentication" in text


def socks_connector(proxy: ProxyConfig, *, ssl_context: ssl.SSLContext) -> aiohttp.TCPConnector:
    """A connector that tunnels every connection through the SOCKS5 ``proxy``."""
    parts = urlsplit(proxy.address)
    return aiohttp_socks.ProxyConnector(
        proxy_type=aiohttp_socks.ProxyType.SOCKS5, host=parts.hostname or "",
        port=parts.port or 1080, username=proxy.username or None,
        password=proxy.password if proxy.username else None, rdns=True,
        ssl=ssl_context, limit=64)


def proxy_settings(proxy: ProxyConfig | None) -> tuple[str | None, Mapping[str, str] | None]:
    """The proxy URL (never with userinfo) and the ``Proxy-Authorization`` header.

    Both are None for a SOCKS5 proxy, which is the session's connector instead.
    """
    if proxy is None or not proxy.address or is_socks(proxy):
        return None, None
    address = proxy.address if "://" in proxy.address else f"http://{proxy.address}"
    parts = urlsplit(address)
    # The address should carry no userinfo; if it does, drop it rather than log it.
    netloc = parts.netloc.rsplit("@", 1)[-1]
    url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if not proxy.username:
        return url, None
    pair = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode("ascii")
    return url, {"Proxy-Authorization": f"Basic {pair}"}


class GuardedResolver(AbstractResolver):
    """Resolves like ``inner`` but never hands out link-local or metadata addresses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The addresses of ``host`` minus the forbidden ones; ``OSError`` when none remain
        (aiohttp reports it as a connection failure naming the host)."""
        found = await self._inner.resolve(host, port, family)
        allowed = [entry for entry in found if not is_metadata_address(entry["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to link-local or cloud metadata addresses; "
                          "refused")
        return allowed

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


@dataclass(eq=False, slots=True)
class _Entry:
    channel: Channel
    users: int = 0
    retired: bool = False


class SessionPool:
    """A bounded LRU of aiohttp sessions keyed by TLS and proxy fingerprints."""

    def __init__(self, *, max_sessions: int, connect_timeout: float, user_agent: str) -> None:
        self._max = max(1, max_sessions)
        self._connect_timeout = connect_timeout
        self._user_agent = user_agent
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # Contexts being built, shared by every call that needs the same pair meanwhile:
        # the workers of a fresh process all ask at once, and each build reads the
        # whole system trust store.
        self._building: dict[tuple[str, str], asyncio.Future[ssl.SSLContext]] = {}
        self._closed = False

    @asynccontextmanager
    async def lease(
        self, *, tls: TLSConfig | None, proxy: ProxyConfig | None
    ) -> AsyncIterator[Channel]:
        """Borrow the channel for this TLS/proxy pair for the duration of one call."""
        entry = await self._entry(tls, proxy)
        entry.users += 1
        try:
            yield entry.channel
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                await entry.channel.session.close()

    async def _entry(self, tls: TLSConfig | None, proxy: ProxyConfig | None) -> _Entry:
        if self._closed:
            raise RuntimeError("the registry session pool is closed")
        key = (tls.fingerprint() if tls else "", proxy.fingerprint() if proxy else "")
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        context = await self._context(key, tls)
        entry = self._entries.get(key)
        if entry is not None:  # another call built the same pair meanwhile
            return entry
        if self._closed:
            raise RuntimeError("the registry session pool is closed")
        proxy_url, proxy_headers = proxy_settings(proxy)
        connector = (socks_connector(proxy, ssl_context=context)
                     if proxy is not None and is_socks(proxy)
                     else aiohttp.TCPConnector(ssl=context, limit=64, ttl_dns_cache=60,
                                               resolver=GuardedResolver()))
        session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
            headers={"User-Agent": self._user_agent},
            auto_decompress=True,
        )
        entry = _Entry(Channel(session=session, proxy=proxy_url, proxy_headers=proxy_headers))
        self._entries[key] = entry
        while len(self._entries) > self._max:
            _, oldest = self._entries.popitem(last=False)
            await self._retire(oldest)
        return entry

    async def _context(self, key: tuple[str, str], tls: TLSConfig | None) -> ssl.SSLContext:
        """The SSL context for ``key``: built once however many calls wait for it. A
        failed build (``TLSError``) is raised to each of them and not remembered."""
        pending = self._building.get(key)
        if pending is None:
            # Loading the system trust store reads files: keep it off the event loop.
            pending = asyncio.ensure_future(asyncio.to_thread(build_ssl_context, tls))
            self._building[key] = pending
            pending.add_done_callback(lambda done: self._built(key, done))
        # Shielded: one caller cancelled (its reconcile timed out) must not cancel the
        # build the others wait for.
        return await asyncio.shield(pending)

    def _built(self, key: tuple[str, str], done: asyncio.Future[ssl.SSLContext]) -> None:
        self._building.pop(key, None)
        if not done.cancelled():
            # Retrieved here, so a failure whose every waiter was cancelled is not
            # reported as "never retrieved"; the waiters still get it from the future.
            done.exception()

    async def _retire(self, entry: _Entry) -> None:
        entry.retired = True
        if entry.users == 0:
            await entry.channel.session.close()

    def __len__(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        """Close idle sessions now and busy ones when their call ends; refuse new leases."""
        self._closed = True
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            await self._retire(entry)

