"""The registry client: ``/v2/`` ping and scheme choice, tag listing, manifest digests.

``RegistryClient`` is the one object the controller and the ``scan`` command use. A call
runs within its ``timeout``: ping (challenge), authorization for
``repository:<name>:pull``, then the tags pages or the manifest request.

Invariants:

* For references whose scheme is ``http`` (insecure, loopback, private hosts) https is
  tried first and plain http only when https cannot connect; the scheme that worked is
  remembered per host. ``https`` references never fall back.
* The ping's challenge is remembered per host for a while; a 401 to a request that used
  a remembered challenge or a cached token re-authenticates once.
* Pages are concatenated in registry order. A page size the registry rejects falls
  back to the smaller size once, and the host keeps that size. A ``Link`` to another
  host, a repeated ``Link`` or more than ``max_pages`` pages end the scan with
  ``PaginationError``.
* Every request goes through ``HttpEngine`` (limiter, retries, bounded bodies, redirects
  without ``Authorization`` across hosts); every error is a ``RegistryError`` without
  secrets in its text.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar
from urllib.parse import quote

import imagereflector
from imagereflector.registry.auth import (
    Authorizer,
    Challenge,
    TokenCache,
    basic_authorization,
    parse_www_authenticate,
    pick_challenge,
    pull_scope,
)
from imagereflector.registry.engine import HttpEngine, HttpResponse, RequestPolicy
from imagereflector.registry.errors import (
    CertificateError,
    CredentialSourceError,
    InvalidResponseError,
    PaginationError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailable,
    ResponseTooLargeError,
    ScanLimitError,
    TLSError,
    error_for_status,
)
from imagereflector.registry.limiter import HostLimiter
from imagereflector.registry.pages import next_page_url, parse_tags_page, rejects_page_size
from imagereflector.registry.redact import scrub, scrub_error
from imagereflector.registry.reference import ImageReference, plain_http
from imagereflector.registry.tags import TAG_PATTERN, valid_tags
from imagereflector.registry.transport import Channel, NullObserver, RegistryObserver, SessionPool
from imagereflector.registry.types import (
    Credentials,
    DeferredCredentials,
    ProxyConfig,
    TLSConfig,
)
from imagereflector.registry.urls import check_realm_strictly

__all__ = ["ClientSettings", "NullObserver", "RegistryClient", "RegistryObserver"]

MANIFEST_MEDIA_TYPES: Final = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_MIB: Final = 1024 * 1024
# Whole-scan bounds (flags --max-tags-per-scan, --max-tag-bytes-per-scan): whatever a
# registry sends, one scan holds at most this much (docs/security.md).
DEFAULT_MAX_SCAN_TAGS: Final = 100_000
DEFAULT_MAX_SCAN_BYTES: Final = 8 * _MIB
# A page with more JSON strings than the tags it may still add is parsed only when it is
# this small: parsing creates one object per string (GCR pages carry a manifest map).
_SMALL_PAGE: Final = 1 * _MIB
_MAX_LOGGED_REPOSITORIES: Final = 4096
_CHALLENGE_TTL: Final = 600.0
_MAX_HOSTS: Final = 1024
_TAG: Final = re.compile(TAG_PATTERN + r"\Z")
_DIGEST: Final = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_T = TypeVar("_T")
log = logging.getLogger("imagereflector.registry")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Every knob of the client; the defaults are the contract's."""

    page_size: int = 1000
    fallback_page_size: int = 100
    max_pages: int = 100
    max_scan_tags: int = DEFAULT_MAX_SCAN_TAGS
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES
    max_small_body: int = 1 * _MIB
    max_manifest_body: int = 4 * _MIB
    attempts: int = 3
    max_retry_after: float = 60.0
    max_redirects: int = 5
    connect_timeout: float = 10.0
    max_sessions: int = 32
    max_tokens: int = 4096
    user_agent: str = f"imagereflector/{imagereflector.__version__}"
    client_id: str = "imagereflector"
    # go-containerregistry up to v0.19 (Flux v0.31) reached ``*.local`` hosts over plain
    # http; v0.21 (Flux v1.2) only tries https for them.
    dot_local_plain_http: bool = True
    # Flux v1.2's realm rule (urls.check_realm_strictly): on with --flux-compatibility=v1.2.
    strict_realms: bool = False


@dataclass(slots=True)
class _HostState:
    scheme: str | None = None
    challenge: Challenge | None = None
    pinged_at: float = float("-inf")
    page_size: int | None = None


@dataclass(slots=True)
class _Call:
    """What one public call carries from request to request."""

    ref: ImageReference
    credentials: Credentials
    channel: Channel
    deadline: float
    secrets: list[str]
    base: str = ""
    authorization: str | None = None
    authorized: bool = False
    reused: bool = False
    state: _HostState = field(default_factory=_HostState)


def _call_secrets(credentials: Credentials, proxy: ProxyConfig | None) -> list[str]:
    secrets = [credentials.password, credentials.identity_token, credentials.registry_token]
    if credentials.username or credentials.password:
        secrets.append(basic_authorization(credentials.username, credentials.password)[6:])
    if proxy is not None and proxy.password:
        secrets += [proxy.password, basic_authorization(proxy.username, proxy.password)[6:]]
    return [s for s in secrets if s]


async def _fetch_deferred(deferred: DeferredCredentials) -> Credentials:
    """The credentials behind ``deferred``; its source reports failures as
    ``CredentialSourceError`` (anything else from it is a bug and is not caught)."""
    if deferred.source is None:
        return Credentials()
    found = await deferred.source()
    if isinstance(found, DeferredCredentials):
        raise CredentialSourceError("deferred credentials resolved to deferred credentials")
    return found


def _telling_failure(failures: list[RegistryError]) -> RegistryError:
    """The failure to report when no scheme worked.

    An untrusted certificate always explains most. A plain-http 400 after a failed TLS
    handshake is an https-only server rejecting plain http (Go servers answer so), so
    the handshake failure (e.g. a missing client certificate) is the real cause.
    """
    untrusted = [f for f in failures if isinstance(f, CertificateError)]
    if untrusted:
        return untrusted[-1]
    handshakes = [f for f in failures if isinstance(f, TLSError)]
    if handshakes and failures[-1].status == 400:
        return handshakes[-1]
    return failures[-1]


class RegistryClient:
    """Lists tags and resolves manifest digests over the OCI distribution API."""

    def __init__(
        self, *, limiter: HostLimiter, observer: RegistryObserver, settings: ClientSettings
    ) -> None:
        self._settings = settings
        self._clock = limiter.clock
        self._engine = HttpEngine(
            limiter=limiter,
            observer=observer,
            policy=RequestPolicy(
                attempts=settings.attempts,
                max_retry_after=settings.max_retry_after,
                max_redirects=settings.max_redirects,
                max_error_body=settings.max_small_body,
                connect_timeout=settings.connect_timeout,
            ),
            rng=random.Random(),  # noqa: S311 - backoff jitter, not cryptography
        )
        self._pool = SessionPool(
            max_sessions=settings.max_sessions,
            connect_timeout=settings.connect_timeout,
            user_agent=settings.user_agent,
        )
        self._authorizer = Authorizer(
            engine=self._engine,
            cache=TokenCache(clock=self._clock, max_entries=settings.max_tokens),
            client_id=settings.client_id,
            max_body=settings.max_small_body,
        )
        self._hosts: OrderedDict[str, _HostState] = OrderedDict()
        self._observer = observer
        self._logged_invalid: OrderedDict[str, None] = OrderedDict()

    async def list_tags(
        self,
        ref: ImageReference,
        *,
        credentials: Credentials | None = None,
        tls: TLSConfig | None = None,
        proxy: ProxyConfig | None = None,
        timeout: float,  # noqa: ASYNC109 - the object's effective timeout is part of the API
    ) -> list[str]:
        """All tags of ``ref`` in registry order, following ``Link`` pagination."""

        async def run(call: _Call) -> list[str]:
            return await self._list_tags(call)

        return await self._run(ref, credentials, tls, proxy, timeout, run)

    async def head_manifest(
        self,
        ref: ImageReference,
        tag: str,
        *,
        credentials: Credentials | None = None,
        tls: TLSConfig | None = None,
        proxy: ProxyConfig | None = None,
        timeout: float,  # noqa: ASYNC109 - the object's effective timeout is part of the API
    ) -> str:
        """The digest of ``ref:tag`` (``Docker-Content-Digest``, else sha256 of the body)."""
        if not (_TAG.match(tag) or _DIGEST.match(tag)):
            raise ValueError("not a valid tag or digest")

        async def run(call: _Call) -> str:
            return await self._head_manifest(call, tag)

        return await self._run(ref, credentials, tls, proxy, timeout, run)

    async def close(self) -> None:
        """Close the pooled sessions; the client must not be used afterwards."""
        await self._pool.close()

    async def _run(
        self,
        ref: ImageReference,
        credentials: Credentials | None,
        tls: TLSConfig | None,
        proxy: ProxyConfig | None,
        seconds: float,
        body: Callable[[_Call], Awaitable[_T]],
    ) -> _T:
        """Run ``body`` for one call; every error leaves here scrubbed (``redact.scrub``)."""
        creds = credentials if credentials is not None else Credentials()
        secrets = _call_secrets(creds, proxy)
        try:
            async with asyncio.timeout(seconds):
                async with self._pool.lease(tls=tls, proxy=proxy) as channel:
                    call = _Call(
                        ref=ref, credentials=creds, channel=channel,
                        deadline=self._clock.monotonic() + seconds,
                        secrets=secrets, state=self._host(ref.registry),
                    )
                    return await body(call)
        except TimeoutError:
            raise RegistryTimeoutError(
                f"{ref.canonical}: timed out after {seconds:g}s"
            ) from None
        except RegistryError as err:
            raise scrub_error(err, secrets) from None
        except (ValueError, LookupError, RecursionError, UnicodeError, OverflowError) as err:
            # A registry answer this client failed to anticipate: report it as one, with
            # no text of the answer (the type is enough to file a bug), never a traceback.
            raise InvalidResponseError(
                f"{ref.canonical}: the registry's answer could not be handled "
                f"({type(err).__name__})") from None

    def _host(self, registry: str) -> _HostState:
        state = self._hosts.get(registry)
        if state is None:
            state = self._hosts[registry] = _HostState()
            while len(self._hosts) > _MAX_HOSTS:
                self._hosts.popitem(last=False)
        else:
            self._hosts.move_to_end(registry)
        return state

    async def _connect(self, call: _Call) -> None:
        """Choose the scheme and learn the challenge (from memory or a ``/v2/`` ping)."""
        state = call.state
        fresh = self._clock.monotonic() - state.pinged_at < _CHALLENGE_TTL
        if state.scheme is not None and fresh:
            call.base, call.reused = f"{state.scheme}://{call.ref.registry}", True
            return
        http_allowed = plain_http(call.ref.registry, insecure=call.ref.insecure,
                                  dot_local=self._settings.dot_local_plain_http)
        candidates = ["https", "http"] if http_allowed else ["https"]
        if state.scheme in candidates:
            candidates.sort(key=lambda scheme: scheme != state.scheme)
        failures: list[RegistryError] = []
        for scheme in candidates:
            base = f"{scheme}://{call.ref.registry}"
            try:
                state.challenge = await self._ping(call, base)
            except RegistryTimeoutError:
                raise
            except (RegistryUnavailable, TLSError) as err:
                failures.append(err)  # cannot connect this way; the next scheme may work
                continue
            except RegistryError as err:
                if not failures:
                    raise
                # Plain http after a failed https: an https-only server answers garbage,
                # so the https failure may be the telling one (chosen below).
                failures.append(err)
                continue
            state.scheme, state.pinged_at = scheme, self._clock.monotonic()
            call.base, call.reused = base, False
            return
        state.scheme = None
        raise _telling_failure(failures)

    async def _ping(self, call: _Call, base: str) -> Challenge | None:
        response = await self._engine.send(
            call.channel, "GET", f"{base}/v2/", registry=call.ref.registry, headers={},
            max_body=self._settings.max_small_body, deadline=call.deadline,
        )
        if response.status == 401:
            values = response.headers.getall("WWW-Authenticate", [])
            return pick_challenge(parse_www_authenticate(", ".join(values)))
        if response.ok:
            return None
        raise self._error(call, response)

    async def _authorize(self, call: _Call) -> None:
        if call.authorized:
            return
        if isinstance(call.credentials, DeferredCredentials):
            # Flux v1.2 asks its authenticator on the first request that needs auth
            # headers, challenged or not: only now are deferred credentials fetched.
            call.credentials = await _fetch_deferred(call.credentials)
            call.secrets.extend(_call_secrets(call.credentials, None))
        challenge = call.state.challenge
        if self._settings.strict_realms and challenge is not None \
                and challenge.scheme == "bearer" and challenge.realm:
            check_realm_strictly(challenge.realm, registry=call.ref.registry,
                                 insecure=call.base.startswith("http://"))
        header, cached = await self._authorizer.authorization(
            call.channel, registry=call.ref.registry, challenge=call.state.challenge,
            credentials=call.credentials, scope=pull_scope(call.ref.repository),
            deadline=call.deadline,
        )
        if header is not None and header.startswith("Bearer "):
            call.secrets.append(header[7:])
        call.authorization, call.authorized = header, True
        call.reused = call.reused or cached

    async def _get(
        self, call: _Call, url_path: str, *, method: str, accept: str, max_body: int
    ) -> HttpResponse:
        """An authorized request; a 401 to remembered auth state re-authenticates once."""
        while True:
            if not call.base:
                await self._connect(call)
            try:
                await self._authorize(call)
            except CredentialSourceError as err:
                if call.state.challenge is not None:
                    raise
                # Unchallenged, Go's transport reports the authenticator's failure as the
                # failure of the request it was preparing.
                raise CredentialSourceError(
                    f'{method.capitalize()} "{call.base}{url_path}": {err}') from None
            headers = {"Accept": accept}
            if call.authorization is not None:
                headers["Authorization"] = call.authorization
            response = await self._engine.send(
                call.channel, method, call.base + url_path, registry=call.ref.registry,
                headers=headers, max_body=max_body, deadline=call.deadline,
            )
            if response.status != 401 or not call.reused:
                return response
            self._authorizer.forget(
                registry=call.ref.registry, scope=pull_scope(call.ref.repository),
                credentials=call.credentials,
            )
            call.state.pinged_at = float("-inf")
            call.base, call.authorized, call.reused = "", False, False

    def _error(self, call: _Call, response: HttpResponse) -> RegistryError:
        return error_for_status(
            method=response.method, url=response.url, status=response.status,
            body=response.body, retry_after=response.retry_after,
        )

    async def _list_tags(self, call: _Call) -> list[str]:
        settings = self._settings
        repository = quote(call.ref.repository, safe="/")
        page_size = call.state.page_size or settings.page_size
        path = f"/v2/{repository}/tags/list?n={page_size}"
        seen: set[str] = set()
        tags: list[str] = []
        listed = read = invalid = 0
        first_invalid = ""
        while True:
            if len(seen) >= settings.max_pages:
                raise PaginationError(
                    f"GET {call.base}{path}: more than {settings.max_pages} pages of tags; "
                    "stopped (see --max-tag-pages)"
                )
            seen.add(path)
            response = await self._tags_page(call, path, bytes_left=settings.max_scan_bytes - read)
            if not response.ok:
                first = len(seen) == 1 and page_size != settings.fallback_page_size
                if first and rejects_page_size(response.status, response.body):
                    page_size = call.state.page_size = settings.fallback_page_size
                    path = f"/v2/{repository}/tags/list?n={page_size}"
                    seen.clear()
                    continue
                raise self._error(call, response)
            read += len(response.body)
            page = parse_tags_page(
                response.body, what=f"GET {response.url}",
                max_strings=settings.max_scan_tags - listed,
                small_page=_SMALL_PAGE,
            )
            listed += len(page)
            if listed > settings.max_scan_tags:
                raise ScanLimitError(
                    f"GET {response.url}: more than {settings.max_scan_tags} tags after "
                    f"{len(seen)} page(s); stopped (see --max-tags-per-scan)")
            kept, skipped, example = valid_tags(page)
            tags.extend(kept)
            if skipped:
                invalid += skipped
                first_invalid = first_invalid or example
            following = next_page_url(
                response.url, response.headers.getall("Link", []), base=call.base,
                registry=call.ref.registry,
            )
            if following is None:
                self._report_invalid(call.ref, invalid, first_invalid)
                return tags
            if following in seen:
                raise PaginationError(
                    f"GET {response.url}: the Link header repeats an earlier page "
                    f"({call.base}{following}); pagination loop"
                )
            path = following

    async def _tags_page(self, call: _Call, path: str, *, bytes_left: int) -> HttpResponse:
        """One tags page, read within what is left of ``max_scan_bytes``."""
        try:
            return await self._get(call, path, method="GET", accept="application/json",
                                   max_body=max(0, bytes_left))
        except ResponseTooLargeError:
            raise ScanLimitError(
                f"GET {call.base}{path}: the tag lists passed "
                f"{self._settings.max_scan_bytes} bytes; stopped "
                "(see --max-tag-bytes-per-scan)") from None

    def _report_invalid(self, ref: ImageReference, count: int, example: str) -> None:
        """Count skipped tags (metric) and log them once per repository and process."""
        if not count:
            return
        self._observer.invalid_tags(ref.registry, count)
        if ref.canonical in self._logged_invalid:
            return
        self._logged_invalid[ref.canonical] = None
        while len(self._logged_invalid) > _MAX_LOGGED_REPOSITORIES:
            self._logged_invalid.popitem(last=False)
        shown = scrub(ascii(example[:64]))
        log.warning("skipped %d tag(s) of %s that are not valid tag names (e.g. %s); "
                    "valid tags match %s", count, ref.canonical, shown, TAG_PATTERN)

    async def _head_manifest(self, call: _Call, tag: str) -> str:
        path = f"/v2/{quote(call.ref.repository, safe='/')}/manifests/{tag}"
        accept = ", ".join(MANIFEST_MEDIA_TYPES)
        response = await self._get(call, path, method="HEAD", accept=accept, max_body=0)
        if not response.ok:
            raise self._error(call, response)
        digest = response.headers.get("Docker-Content-Digest", "")
        if _DIGEST.match(digest):
            return digest
        # Some registries omit the header on HEAD: the digest of the exact bytes is it.
        response = await self._get(
            call, path, method="GET", accept=accept, max_body=self._settings.max_manifest_body
        )
        if not response.ok:
            raise self._error(call, response)
        if not response.body:
            raise InvalidResponseError(f"GET {response.url}: empty manifest")
        return "sha256:" + hashlib.sha256(response.body).hexdigest()
