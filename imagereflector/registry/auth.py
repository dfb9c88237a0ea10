"""The registry auth challenge: Basic, Bearer token service, OAuth2 refresh tokens.

The ``/v2/`` ping answers ``401`` with ``WWW-Authenticate``; this module turns that
challenge and a ``Credentials`` into the ``Authorization`` header for one scope
(``repository:<name>:pull``):

* Basic challenge: ``registry_token`` as Bearer, else username/password as Basic.
* Bearer challenge: ``registry_token`` is sent as is; ``identity_token`` is exchanged
  with ``POST <realm>`` (``grant_type=refresh_token``); otherwise ``GET <realm>`` with
  ``service`` and ``scope``, carrying Basic credentials when there are some.

Invariants:

* Secrets (password, identity token) go to a realm only over https or to the
  registry's own host: never over plain http to a third host. The realm is a URL the
  registry chose, so it passes ``urls.parse_target`` first (no metadata address, no
  unparsable URL), and the engine never replays the refresh-token form to another origin.
* A token goes into a header only when it is visible ASCII (no CR, LF, NUL or space) and
  at most ``MAX_TOKEN_CHARS`` long; anything else is refused with a message.
* Tokens are cached per (registry, scope, credentials fingerprint) until shortly before
  they expire, in an LRU bounded in entries and in total token characters; the cache
  holds no secret of the caller, only tokens.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from imagereflector.registry.engine import HttpEngine
from imagereflector.registry.errors import (
    AuthError,
    InvalidResponseError,
    decode_json,
    error_for_status,
)
from imagereflector.registry.limiter import Clock
from imagereflector.registry.transport import Channel
from imagereflector.registry.types import Credentials
from imagereflector.registry.urls import Target, parse_target, registry_host

DEFAULT_TOKEN_LIFETIME: Final = 60.0
# Real tokens are JWTs of a few KiB at most (with an x5c chain); a registry sending more
# is refused rather than cached.
MAX_TOKEN_CHARS: Final = 32 * 1024
TOKEN_CACHE_CHARS: Final = 16 * 1024 * 1024
_MAX_TOKEN_MARGIN: Final = 10.0
_MAX_LIFETIME: Final = 366 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge; ``scheme`` is lower case."""

    scheme: str
    realm: str = ""
    service: str = ""
    scope: str = ""


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] not in ' \t,="':
        pos += 1
    return text[start:pos], pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    # pos is just past the opening quote; backslash escapes the next character.
    out = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    return "".join(out), pos


def parse_www_authenticate(value: str) -> tuple[Challenge, ...]:
    """All challenges of a ``WWW-Authenticate`` value, in order (RFC 9110 grammar).

    Parameter names are case-insensitive; unknown parameters are ignored; a malformed
    tail ends parsing without raising.
    """
    challenges: list[Challenge] = []
    scheme = ""
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        pos = _skip_spaces(value, pos)
        if pos < len(value) and value[pos] == ",":
            pos += 1
            continue
        word, after = _token(value, pos)
        if not word:
            break
        probe = _skip_spaces(value, after)
        if probe < len(value) and value[probe] == "=" and scheme:
            value_pos = _skip_spaces(value, probe + 1)
            if value_pos < len(value) and value[value_pos] == '"':
                param, pos = _quoted(value, value_pos + 1)
            else:
                param, pos = _token(value, value_pos)
            params[word.lower()] = param
            continue
        if scheme:
            challenges.append(_challenge(scheme, params))
        scheme, params, pos = word.lower(), {}, after
    if scheme:
        challenges.append(_challenge(scheme, params))
    return tuple(challenges)


def _challenge(scheme: str, params: dict[str, str]) -> Challenge:
    return Challenge(
        scheme=scheme,
        realm=params.get("realm", ""),
        service=params.get("service", ""),
        scope=params.get("scope", ""),
    )


def pick_challenge(challenges: tuple[Challenge, ...]) -> Challenge | None:
    """The challenge to answer: Bearer before Basic; ``None`` when neither is offered."""
    for wanted in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == wanted:
                return challenge
    return None


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value for HTTP Basic."""
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def may_send_secrets(realm: Target, registry: str) -> bool:
    """Whether credentials may go to ``realm``: https, or the registry's own host."""
    return realm.scheme == "https" or realm.host == registry_host(registry)


def header_safe(value: str) -> bool:
    """Whether ``value`` can travel in an ``Authorization`` header as it is: visible
    ASCII only (no space, CR, LF, NUL or anything a server could use to split headers)."""
    return bool(value) and value.isascii() and value.isprintable() and " " not in value


def bearer(token: str, *, source: str) -> str:
    """``Bearer <token>``, or an error naming ``source`` when the token cannot be sent."""
    if not header_safe(token):
        raise AuthError(f"the {source} contains characters that cannot be sent in an HTTP "
                        "header (spaces, control characters or non-ASCII)")
    return f"Bearer {token}"


def pull_scope(repository: str) -> str:
    """The token scope for listing tags and reading manifests of ``repository``."""
    return f"repository:{repository}:pull"


@dataclass(frozen=True, slots=True)
class _Cached:
    token: str
    expires: float


class TokenCache:
    """Bearer tokens by (registry, scope, credentials fingerprint), clock-driven, bounded
    both in entries and in the characters of the tokens it holds (tokens come from
    registries, and ``MAX_TOKEN_CHARS`` alone times ``max_entries`` is still a lot)."""

    def __init__(self, *, clock: Clock, max_entries: int,
                 max_chars: int = TOKEN_CACHE_CHARS) -> None:
        self._clock = clock
        self._max = max(1, max_entries)
        self._max_chars = max(1, max_chars)
        self._chars = 0
        self._entries: OrderedDict[tuple[str, str, str], _Cached] = OrderedDict()

    @property
    def chars(self) -> int:
        """Characters of token text held now (at most ``max_chars``)."""
        return self._chars

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str, str]) -> str | None:
        """The cached token, or ``None`` when absent or about to expire."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock.monotonic() >= entry.expires:
            self.discard(key)
            return None
        self._entries.move_to_end(key)
        return entry.token

    def put(self, key: tuple[str, str, str], token: str, *, expires_in: float) -> None:
        """Keep ``token`` until ``expires_in`` minus a margin (a tenth, at most 10 s)."""
        lifetime = expires_in - min(_MAX_TOKEN_MARGIN, expires_in / 10)
        if lifetime <= 0 or len(token) > self._max_chars:
            return
        self.discard(key)
        self._entries[key] = _Cached(token=token, expires=self._clock.monotonic() + lifetime)
        self._chars += len(token)
        while len(self._entries) > self._max or self._chars > self._max_chars:
            _, oldest = self._entries.popitem(last=False)
            self._chars -= len(oldest.token)

    def discard(self, key: tuple[str, str, str]) -> None:
        """Forget a token the registry refused."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._chars -= len(entry.token)


def _parse_token(body: bytes, *, what: str) -> tuple[str, float]:
    document = decode_json(body, what=f"{what}: token response")
    if not isinstance(document, dict):
        raise InvalidResponseError(f"{what}: token response is not a JSON object")
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise InvalidResponseError(f"{what}: token response carries no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidResponseError(
            f"{what}: token longer than {MAX_TOKEN_CHARS} characters; refused")
    if not header_safe(token):
        raise InvalidResponseError(
            f"{what}: token contains characters that cannot be sent in an HTTP header "
            "(spaces, control characters or non-ASCII); refused")
    expires_in = document.get("expires_in")
    if (isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
            or not 0 < expires_in < _MAX_LIFETIME):
        expires_in = DEFAULT_TOKEN_LIFETIME
    return token, float(expires_in)


class Authorizer:
    """Answers a challenge for one scope, using and filling the token cache."""

    def __init__(
        self, *, engine: HttpEngine, cache: TokenCache, client_id: str, max_body: int
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._client_id = client_id
        self._max_body = max_body

    def forget(self, *, registry: str, scope: str, credentials: Credentials) -> None:
        """Drop the cached token for this triple (the registry answered 401 to it)."""
        self._cache.discard((registry, scope, credentials.fingerprint()))

    async def authorization(
        self,
        channel: Channel,
        *,
        registry: str,
        challenge: Challenge | None,
        credentials: Credentials,
        scope: str,
        deadline: float,
    ) -> tuple[str | None, bool]:
        """The ``Authorization`` value for ``scope`` (``None``: anonymous), and whether
        it is a cached token (which the registry may since have revoked)."""
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            return None, False
        if credentials.registry_token:
            return bearer(credentials.registry_token, source="registry token"), False
        if challenge.scheme == "basic":
            if credentials.username or credentials.password:
                return basic_authorization(credentials.username, credentials.password), False
            return None, False
        if not challenge.realm:
            raise InvalidResponseError(f"registry {registry} sent a Bearer challenge without realm")
        key = (registry, scope, credentials.fingerprint())
        token = self._cache.get(key)
        if token is not None:
            return f"Bearer {token}", True
        token, expires_in = await self._fetch(
            channel, registry=registry, challenge=challenge, credentials=credentials,
            scope=scope, deadline=deadline,
        )
        self._cache.put(key, token, expires_in=expires_in)
        return f"Bearer {token}", False

    async def _fetch(
        self,
        channel: Channel,
        *,
        registry: str,
        challenge: Challenge,
        credentials: Credentials,
        scope: str,
        deadline: float,
    ) -> tuple[str, float]:
        realm = parse_target(challenge.realm, registry=registry,
                             what=f"token realm (registry {registry})")
        trusted = may_send_secrets(realm, registry)
        query = {k: v for k, v in (("service", challenge.service), ("scope", scope)) if v}
        if credentials.identity_token and trusted:
            form = dict(query, grant_type="refresh_token", client_id=self._client_id)
            form["refresh_token"] = credentials.identity_token
            response = await self._engine.send(
                channel, "POST", realm.url, registry=registry,
                headers={"Accept": "application/json"}, data=form,
                max_body=self._max_body, deadline=deadline,
            )
        else:
            headers = {"Accept": "application/json"}
            if trusted and (credentials.username or credentials.password):
                headers["Authorization"] = basic_authorization(
                    credentials.username, credentials.password
                )
            separator = "&" if "?" in realm.url else "?"
            url = f"{realm.url}{separator}{urlencode(query)}" if query else realm.url
            response = await self._engine.send(
                channel, "GET", url, registry=registry, headers=headers,
                max_body=self._max_body, deadline=deadline,
            )
        what = f"{response.method} {realm.shown}"
        if not response.ok:
            error = error_for_status(
                method=response.method, url=realm.shown, status=response.status,
                body=response.body, retry_after=response.retry_after,
            )
            if isinstance(error, AuthError) and not trusted and not credentials.anonymous:
                raise AuthError(
                    f"{error.message} (credentials are not sent to a plain-http token "
                    "realm on another host)",
                    status=error.status, codes=error.codes,
                )
            raise error
        return _parse_token(response.body, what=what)
