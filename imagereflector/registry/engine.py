"""One logical HTTP request to a registry: politeness, retries, redirects, bounded bodies.

Every request of the client (ping, token, tags page, manifest) goes through
``HttpEngine.send``, so the rules hold everywhere:

* each attempt first takes a token from the shared per-host limiter;
* 408/429/500/502/503/504 and network failures are retried (``attempts`` in all) with
  100 ms * 3^n backoff, or after ``Retry-After`` when the registry sent it, never past
  the call's deadline; a 429/503 with ``Retry-After`` pauses the host for every caller;
* redirects are followed by hand, at most ``max_redirects``; every target passes
  ``urls.parse_target`` (parses, http(s), no metadata address); ``Authorization`` is
  dropped when a hop leaves the origin, and a body is never replayed to another origin;
* bodies are read up to a bound: a success body past it is an error, an error body is
  cut (it only feeds the message);
* every attempt is reported to the observer, and so is ``ratelimit-remaining``.

Messages raised here are raw material: ``RegistryClient`` scrubs each one with the
call's secrets (``redact.scrub``) before it leaves the package.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from imagereflector.registry.errors import (
    AuthError,
    CertificateError,
    InvalidResponseError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailable,
    ResponseTooLargeError,
    TLSError,
)
from imagereflector.registry.limiter import (
    HostLimiter,
    backoff_delay,
    parse_ratelimit_remaining,
    parse_retry_after,
)
from imagereflector.registry.transport import (
    SOCKS_ERRORS,
    Channel,
    RegistryObserver,
    socks_refused,
)
from imagereflector.registry.urls import display_url, resolve_target, same_origin

RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT_STATUS: Final = frozenset({301, 302, 303, 307, 308})
_HOST_PAUSING_STATUS: Final = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One final answer: after redirects and retries, with a size-bounded body."""

    method: str
    url: str
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes
    retry_after: float | None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """Retry, redirect and size rules for every request the engine sends."""

    attempts: int
    max_retry_after: float
    max_redirects: int
    max_error_body: int
    connect_timeout: float


def _size(limit: int) -> str:
    mib = 1024 * 1024
    return f"{limit // mib} MiB" if limit >= mib and limit % mib == 0 else f"{limit} bytes"


async def _read_bounded(
    response: aiohttp.ClientResponse, limit: int, *, truncate: bool, what: str
) -> bytes:
    too_large = ResponseTooLargeError(f"{what}: response body larger than {_size(limit)}")
    if not truncate and response.content_length is not None and response.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk[: limit + 1 - len(body)]
        if len(body) > limit:
            if truncate:
                return bytes(body[:limit])
            raise too_large
    return bytes(body)


class HttpEngine:
    """Sends one logical request: per-host limiter, retries, manual redirects, bounded body.

    A 2xx body larger than ``max_body`` raises ``ResponseTooLargeError``; other bodies are
    cut to the policy's error bound (they only feed error messages). Network failures
    that outlive the retries raise ``RegistryUnavailable``; TLS failures ``TLSError``.
    """

    def __init__(
        self,
        *,
        limiter: HostLimiter,
        observer: RegistryObserver,
        policy: RequestPolicy,
        rng: random.Random,
    ) -> None:
        self._limiter = limiter
        self._clock = limiter.clock
        self._observer = observer
        self._policy = policy
        self._rng = rng

    async def send(
        self,
        channel: Channel,
        method: str,
        url: str,
        *,
        registry: str,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None = None,
        max_body: int,
        deadline: float,
    ) -> HttpResponse:
        """Send and follow up to ``max_redirects`` redirects by hand.

        ``registry`` is the host the call is for: redirect targets are checked against it
        (``urls.parse_target``) and requests are counted under it. A hop to another
        origin (scheme, host or port) drops ``Authorization``; a hop that would replay a
        body (307/308 after a ``POST``, i.e. a token exchange) to another origin is
        refused, because the body holds the credential.
        """
        hop = urlsplit(url)
        hop_url, hop_method, hop_headers, hop_data = url, method, dict(headers), data
        for _ in range(self._policy.max_redirects + 1):
            response = await self._with_retries(
                channel, hop_method, hop_url, registry=registry, headers=hop_headers,
                data=hop_data, max_body=max_body, deadline=deadline,
            )
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUS or not location:
                return response
            target = resolve_target(hop_url, location, registry=registry,
                                    what=f"redirect target (answer to {hop_method} "
                                    f"{display_url(hop_url)})")
            keeps_body = response.status in (307, 308) and hop_data is not None
            if not same_origin(hop, target):
                if keeps_body:
                    raise InvalidResponseError(
                        f"{hop_method} {display_url(hop_url)}: redirected a credential "
                        f"exchange to another origin ({target.shown}); not followed")
                hop_headers = {k: v for k, v in hop_headers.items()
                               if k.lower() != "authorization"}
            if response.status == 303 or (response.status in (301, 302) and hop_method == "POST"):
                hop_method, hop_data = "GET", None
            hop_url, hop = target.url, urlsplit(target.url)
        raise InvalidResponseError(
            f"{method} {display_url(url)}: more than {self._policy.max_redirects} redirects"
        )

    async def _with_retries(
        self,
        channel: Channel,
        method: str,
        url: str,
        *,
        registry: str,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None,
        max_body: int,
        deadline: float,
    ) -> HttpResponse:
        host = urlsplit(url).netloc
        attempts = max(1, self._policy.attempts)
        for attempt in range(attempts):
            await self._limiter.acquire(host, deadline=deadline)
            last = attempt == attempts - 1
            try:
                response = await self._once(
                    channel, method, url, registry=registry, headers=headers, data=data,
                    max_body=max_body, deadline=deadline,
                )
            except aiohttp.ClientConnectorCertificateError as err:
                reason = _reason(err.certificate_error)
                raise CertificateError(f"{method} {url}: untrusted certificate: {reason}") from None
            except (aiohttp.ClientError, TimeoutError) as err:
                tls_failure = _tls_failure(err)
                if tls_failure is not None:
                    raise TLSError(f"{method} {url}: TLS failed: {tls_failure}") from None
                if isinstance(err, aiohttp.ClientHttpProxyError):
                    # The proxy refused the tunnel: only its 5xx/429 are worth retrying.
                    if err.status in (401, 407):  # tinyproxy, for one, answers 401
                        raise AuthError(
                            f"{method} {url}: the proxy refused the credentials ({err.status})",
                            status=err.status,
                        ) from None
                    if err.status not in RETRYABLE_STATUS:
                        raise RegistryError(
                            f"{method} {url}: the proxy answered {err.status}", status=err.status
                        ) from None
                now = self._clock.monotonic()
                if isinstance(err, TimeoutError) and now >= deadline:
                    raise RegistryTimeoutError(f"{method} {url}: timed out") from None
                delay = backoff_delay(attempt, rng=self._rng)
                if last or now + delay > deadline:
                    raise RegistryUnavailable(f"{method} {url}: {_reason(err)}") from None
                await self._clock.sleep(delay)
                continue
            except SOCKS_ERRORS as err:
                # A SOCKS5 proxy (the session's connector) failed, not the registry.
                if socks_refused(err):
                    raise AuthError(
                        f"{method} {url}: the proxy refused the credentials (SOCKS5: {err})",
                        status=407) from None
                now = self._clock.monotonic()
                delay = backoff_delay(attempt, rng=self._rng)
                if last or now + delay > deadline:
                    raise RegistryUnavailable(f"{method} {url}: SOCKS5 proxy: {err}") from None
                await self._clock.sleep(delay)
                continue
            if response.status not in RETRYABLE_STATUS or last:
                return response
            if not await self._wait_to_retry(host, response, attempt=attempt, deadline=deadline):
                return response
        raise AssertionError("unreachable: the last attempt always returns or raises")

    async def _wait_to_retry(
        self, host: str, response: HttpResponse, *, attempt: int, deadline: float
    ) -> bool:
        """Wait before the next attempt; False when the wait is not allowed."""
        now = self._clock.monotonic()
        retry_after = response.retry_after
        if retry_after is None:
            delay = backoff_delay(attempt, rng=self._rng)
            if now + delay > deadline:
                return False
            await self._clock.sleep(delay)
            return True
        if response.status in _HOST_PAUSING_STATUS:
            # Every caller of this host waits, not only this one.
            self._limiter.pause(host, until=now + min(retry_after, self._policy.max_retry_after))
        if retry_after > self._policy.max_retry_after or now + retry_after > deadline:
            return False
        if response.status not in _HOST_PAUSING_STATUS:
            await self._clock.sleep(retry_after)
        return True

    async def _once(
        self,
        channel: Channel,
        method: str,
        url: str,
        *,
        registry: str,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None,
        max_body: int,
        deadline: float,
    ) -> HttpResponse:
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            raise RegistryTimeoutError(f"{method} {url}: timed out")
        timeout = aiohttp.ClientTimeout(
            total=remaining, connect=min(remaining, self._policy.connect_timeout)
        )
        if channel.proxy_headers and url.startswith("http://"):
            # aiohttp sends proxy_headers only on CONNECT (https); a plain-http request
            # through the proxy carries Proxy-Authorization itself.
            headers = {**headers, **channel.proxy_headers}
        code = "error"
        try:
            async with channel.session.request(
                method, url, headers=headers, data=data, proxy=channel.proxy,
                proxy_headers=channel.proxy_headers, allow_redirects=False, timeout=timeout,
            ) as raw:
                code = str(raw.status)
                self._report_ratelimit(registry, raw.headers)
                ok = 200 <= raw.status < 300
                body = b"" if method == "HEAD" else await _read_bounded(
                    raw, max_body if ok else self._policy.max_error_body,
                    truncate=not ok, what=f"{method} {url}",
                )
                retry_header = raw.headers.get("Retry-After")
                return HttpResponse(
                    method=method, url=url, status=raw.status, reason=raw.reason or "",
                    headers=raw.headers, body=body,
                    retry_after=(
                        parse_retry_after(retry_header, now_wall=self._clock.wall())
                        if retry_header is not None else None
                    ),
                )
        except ResponseTooLargeError:
            raise
        except (aiohttp.ClientError, ssl.SSLError):
            code = "error"  # some of these are ValueErrors too; they are handled by the caller
            raise
        except ValueError as err:
            # aiohttp and yarl refuse a URL or header they cannot put on the wire (a bad
            # port, a control character) with ValueError: the registry's doing, not ours.
            code = "error"
            raise InvalidResponseError(
                f"{method} {display_url(url)}: the request cannot be sent "
                f"({type(err).__name__})") from None
        except Exception:
            code = "error"
            raise
        finally:
            # Counted under the call's registry, not the hop's host: a registry must not be
            # able to mint metric series by redirecting to ever new names.
            self._observer.request_done(registry, method, code)

    def _report_ratelimit(self, host: str, headers: Mapping[str, str]) -> None:
        value = headers.get("ratelimit-remaining")
        if value is None:
            return
        remaining = parse_ratelimit_remaining(value)
        if remaining is not None:
            self._observer.ratelimit_remaining(host, remaining)


_PEER_REFUSED_CERT: Final = ("ALERT_BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "UNKNOWN_CA")


def _tls_failure(err: BaseException) -> str | None:
    """The TLS reason when ``err`` is (or was caused by) a TLS failure, else ``None``.

    TLS 1.3 servers reject a client certificate after the handshake, so the alert shows
    up as an ``OSError`` on the first read; it is no more retryable than a bad handshake.
    """
    pending: list[object] = [err]
    for _ in range(8):  # a short walk: wrappers nest two or three deep
        if not pending:
            return None
        seen = pending.pop(0)
        if not isinstance(seen, BaseException):
            continue
        # aiohttp's wrappers subclass SSLError without its attributes: read it defensively.
        reason = getattr(seen, "reason", None)
        if isinstance(seen, ssl.SSLError) and isinstance(reason, str) and reason:
            if any(marker in reason for marker in _PEER_REFUSED_CERT):
                return f"{reason} (the registry wants a client certificate it trusts)"
            return reason
        pending += [
            getattr(seen, "certificate_error", None),
            getattr(seen, "os_error", None),
            seen.__cause__,
            seen.__context__,
        ]
    return None


def _reason(err: BaseException) -> str:
    # Raw material: the client scrubs every message (redact.scrub) before raising it.
    return str(err) or type(err).__name__
