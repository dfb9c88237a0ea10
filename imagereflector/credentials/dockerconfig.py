"""Docker config secrets: parsing, and the two ways a registry's credentials are looked up.

Two input formats, both JSON: ``.dockerconfigjson`` (``{"auths": {key: AuthConfig}}``,
other top-level keys ignored; also the shape of a docker ``config.json``) and the legacy
``.dockercfg`` (the ``{key: AuthConfig}`` map at top level). An ``AuthConfig`` has
``username``, ``password``, ``auth`` (base64 ``user:pass``, padded or not, which replaces
username and password when non-empty), ``identitytoken`` and ``registrytoken``. Field
names match case-insensitively and unknown fields are ignored, as Go's ``encoding/json``
does.

Two lookups, as Flux v0.31 does them (contract §2.5):

* ``DockerConfig.lookup`` (None when missing) and ``DockerConfig.require`` (raises
  ``AuthNotFoundError``) serve ``spec.secretRef``: every key is normalised to
  ``host[:port]`` and compared exactly with the image's registry string, except that
  Docker Hub images also accept the keys ``docker.io``, ``index.docker.io``,
  ``registry-1.docker.io`` and ``https://index.docker.io/v1/`` (contract A4).
* ``PullSecretKeyring`` / ``keyring_lookup`` serve a service account's
  ``imagePullSecrets``: keys keep a path (``quay.io/org``), host labels may hold ``*``
  globs, and the most specific key (reverse lexicographic order) that matches the
  canonical repository wins.

Where v0.31 iterates a Go map (random order), the choice here is fixed: a key naming the
registry exactly beats a Docker Hub alias, then the earlier key in the document wins, then
(for pull secrets) the earlier secret.

Invariants: every failure on secret content is a ``DockerConfigError`` (a ``ValueError``),
whatever the bytes; no message or repr ever contains a username, password, token or URL
userinfo; messages name the secret key and field at fault.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from imagereflector.registry.reference import DOCKER_HUB_REGISTRY, parse_url_host
from imagereflector.registry.types import Credentials

DOCKER_CONFIG_JSON_TYPE: Final = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_JSON_KEY: Final = ".dockerconfigjson"
DOCKERCFG_TYPE: Final = "kubernetes.io/dockercfg"
DOCKERCFG_KEY: Final = ".dockercfg"

# Auths key hosts that name Docker Hub (contract A4).
DOCKER_HUB_KEY_HOSTS: Final = frozenset({"docker.io", DOCKER_HUB_REGISTRY, "registry-1.docker.io"})

_EXPECTED_HTTPS_URL: Final = (
    "expected an HTTPS URL instead of '{}' (e.g. 'https://index.docker.io/v2/' or "
    "'https://index.docker.io'), or the same without 'https://' (e.g., "
    "'index.docker.io/v2/' or 'index.docker.io')"
)
_SCHEMES: Final = ("https://", "http://")
_AUTH_FIELDS: Final = ("username", "password", "auth", "identitytoken", "registrytoken")
_BASE64_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
_USERINFO_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._:~!$&'()*+,;=%@"
)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class DockerConfigError(ValueError):
    """A docker config secret is unusable; the message says which key or field is wrong."""


class AuthNotFoundError(DockerConfigError):
    """The secret has no entry for the image's registry."""

    def __init__(self, registry: str) -> None:
        super().__init__(f'auth for "{registry}" not found')
        self.registry = registry

    def in_secret(self, *, namespace: str, name: str) -> str:
        """The v0.31 message: ``auth for "<registry>" not found in secret <ns>/<name>``."""
        return auth_not_found_message(self.registry, namespace=namespace, name=name)


def auth_not_found_message(registry: str, *, namespace: str, name: str) -> str:
    """``auth for "<registry>" not found in secret <namespace>/<name>`` (contract §2.5.1)."""
    return f'auth for "{registry}" not found in secret {namespace}/{name}'


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One ``auths`` entry: the key as written in the secret and its credentials."""

    key: str
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The ``auths`` entries of one docker config, in document order."""

    entries: tuple[AuthEntry, ...] = ()

    def lookup(self, registry: str) -> Credentials | None:
        """The credentials for ``registry`` (``host[:port]``) under the secretRef rules.

        Every key is normalised first (``secret_key_host``), so one malformed key fails
        the lookup with ``DockerConfigError`` even when another key would match, as in
        v0.31. Returns None when no key matches (see ``require`` for the error instead).
        """
        hosts = [secret_key_host(entry.key) for entry in self.entries]
        alias: Credentials | None = None
        for host, entry in zip(hosts, self.entries, strict=True):
            if host == registry:
                return entry.credentials
            if alias is None and registry == DOCKER_HUB_REGISTRY and host in DOCKER_HUB_KEY_HOSTS:
                alias = entry.credentials
        return alias

    def require(self, registry: str) -> Credentials:
        """``lookup``, raising ``AuthNotFoundError`` when no key matches."""
        credentials = self.lookup(registry)
        if credentials is None:
            raise AuthNotFoundError(registry)
        return credentials


def secret_key_host(key: str) -> str:
    """Normalise a secretRef ``auths`` key to ``host[:port]`` (contract §2.5.1).

    ``http://`` or ``https://`` alone is ``empty url``; a key without one of those schemes
    is read as ``https://<key>/``; the URL's host (port kept, userinfo and path dropped) is
    the result, and an empty host is the ``expected an HTTPS URL`` error.
    """
    if key in _SCHEMES:
        raise DockerConfigError("empty url")
    url = key if key.startswith(_SCHEMES) else f"https://{key}/"
    host, _ = _parse_url(url, key=key)
    if not host:
        raise DockerConfigError(_EXPECTED_HTTPS_URL.format(_redact_userinfo(url)))
    return host


def parse_dockerconfigjson(data: bytes) -> DockerConfig:
    """Parse ``.dockerconfigjson`` (or a docker ``config.json``): the ``auths`` object."""
    document = _load_json(data, what=DOCKER_CONFIG_JSON_KEY)
    if document is None:
        return DockerConfig()
    if not isinstance(document, dict):
        raise DockerConfigError(
            f"{DOCKER_CONFIG_JSON_KEY} must be a JSON object, not {_kind(document)}"
        )
    auths: object = None
    for name, value in document.items():
        if _ascii_lower(name) == "auths":
            auths = value
    if auths is None:
        return DockerConfig()
    if not isinstance(auths, dict):
        raise DockerConfigError(
            f'{DOCKER_CONFIG_JSON_KEY}: "auths" must be an object, not {_kind(auths)}'
        )
    return _entries(auths, what=DOCKER_CONFIG_JSON_KEY)


def parse_dockercfg(data: bytes) -> DockerConfig:
    """Parse the legacy ``.dockercfg`` format: the auths map is the whole document."""
    document = _load_json(data, what=DOCKERCFG_KEY)
    if document is None:
        return DockerConfig()
    if not isinstance(document, dict):
        raise DockerConfigError(f"{DOCKERCFG_KEY} must be a JSON object, not {_kind(document)}")
    return _entries(document, what=DOCKERCFG_KEY)


def load_docker_config(data: bytes) -> DockerConfig:
    """Parse a docker ``config.json`` file's bytes; same format as ``.dockerconfigjson``."""
    return parse_dockerconfigjson(data)


def credentials_from_secret(
    *, secret_type: str, data: Mapping[str, bytes], registry: str
) -> Credentials:
    """The secretRef path (``AuthFromSecret``): type check, parse, ``lookup(registry)``.

    ``data`` holds the Secret's decoded values. Raises ``DockerConfigError`` (``unknown
    secret type "<type>"`` for any type but ``kubernetes.io/dockerconfigjson``) or its
    subclass ``AuthNotFoundError``.
    """
    if secret_type != DOCKER_CONFIG_JSON_TYPE:
        raise DockerConfigError(f'unknown secret type "{secret_type}"')
    raw = data.get(DOCKER_CONFIG_JSON_KEY)
    if raw is None:
        raise DockerConfigError(f'secret has no "{DOCKER_CONFIG_JSON_KEY}" key')
    return parse_dockerconfigjson(raw).require(registry)


# --- service account pull secrets ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullSecret:
    """One Secret of ``imagePullSecrets``: its name, type and decoded data."""

    name: str
    type: str
    data: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    """A normalised keyring key (``host[:port][/path]``, globs allowed) and its credentials."""

    key: str
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class PullSecretKeyring:
    """Credentials from pull secrets, in the order they are tried (contract §2.5.4)."""

    entries: tuple[KeyringEntry, ...] = ()

    @classmethod
    def from_secrets(cls, secrets: Iterable[PullSecret]) -> PullSecretKeyring:
        """Read every ``dockerconfigjson`` and ``dockercfg`` secret; others contribute nothing.

        Keys are normalised: ``https://`` is assumed when there is no scheme, a leading
        ``/v1/`` or ``/v2/`` path is dropped, and the key is the host plus any remaining
        path; Docker Hub alias hosts become ``index.docker.io`` (contract A4). Entries are
        ordered by key, reverse lexicographically, so longer (more specific) keys come
        first. Raises ``DockerConfigError`` for unreadable content, worded as Flux words it.
        """
        found: list[KeyringEntry] = []
        for secret in secrets:
            # Flux's keyring reports the decoding error as it is, without naming the secret.
            found.extend(_keyring_entries(_secret_config(secret)))
        return cls._sorted(found)

    @classmethod
    def from_configs(cls, configs: Iterable[DockerConfig]) -> PullSecretKeyring:
        """Like ``from_secrets``, for configs already parsed, in pull-secret order."""
        return cls._sorted([entry for config in configs for entry in _keyring_entries(config)])

    @classmethod
    def _sorted(cls, found: list[KeyringEntry]) -> PullSecretKeyring:
        # A stable sort keeps the earlier secret, then the earlier key, first within a key.
        return cls(entries=tuple(sorted(found, key=lambda entry: entry.key, reverse=True)))

    def resolve(self, target: str) -> Credentials | None:
        """Credentials for the canonical repository ``target``, or None for anonymous.

        A key matches when its port equals the target's, its host has as many
        dot-separated labels, each label glob-matches (``*``, ``?``, ``[...]`` within a
        label, like Go's ``filepath.Match``), and the target's path starts with the key's.
        The first matching entry wins, even if its credentials are empty.
        """
        parsed = _match_parts(target)
        if parsed is None:
            return None
        for entry in self.entries:
            key_parts = _match_parts(entry.key)
            if key_parts is not None and _urls_match(key_parts, parsed):
                return entry.credentials
        return None


def keyring_lookup(configs: Iterable[DockerConfig], target: str) -> Credentials | None:
    """Resolve the canonical repository ``target`` against pull-secret configs (§2.5.4).

    ``configs`` are the parsed pull secrets in ``imagePullSecrets`` order; None means no
    key matched (anonymous). Raises ``DockerConfigError`` for a key Go could not parse.
    """
    return PullSecretKeyring.from_configs(configs).resolve(target)


def _secret_config(secret: PullSecret) -> DockerConfig:
    # Like k8schain: only the data key of the secret's own type, and only when non-empty.
    if secret.type == DOCKER_CONFIG_JSON_TYPE and secret.data.get(DOCKER_CONFIG_JSON_KEY):
        return parse_dockerconfigjson(secret.data[DOCKER_CONFIG_JSON_KEY])
    if secret.type == DOCKERCFG_TYPE and secret.data.get(DOCKERCFG_KEY):
        return parse_dockercfg(secret.data[DOCKERCFG_KEY])
    return DockerConfig()


def _keyring_entries(config: DockerConfig) -> list[KeyringEntry]:
    keyed = [(_keyring_key(entry.key), entry.credentials) for entry in config.entries]
    # An exact registry key beats a Docker Hub alias with the same meaning.
    exact = [KeyringEntry(key, creds) for (key, alias), creds in keyed if not alias]
    aliased = [KeyringEntry(key, creds) for (key, alias), creds in keyed if alias]
    return exact + aliased


def _keyring_key(key: str) -> tuple[str, bool]:
    """The keyring key for an ``auths`` key, and whether its host was a Docker Hub alias."""
    url = key if key.startswith(_SCHEMES) else f"https://{key}"
    host, path = _parse_url(url, key=key)
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    alias = host in DOCKER_HUB_KEY_HOSTS and host != DOCKER_HUB_REGISTRY
    if alias:
        host = DOCKER_HUB_REGISTRY
    return (host + path if path and path != "/" else host), alias


@dataclass(frozen=True, slots=True)
class _MatchParts:
    labels: tuple[str, ...]
    port: str
    path: str


def _match_parts(schemeless: str) -> _MatchParts | None:
    try:
        host, path = _parse_url(f"https://{schemeless}", key=schemeless)
    except DockerConfigError:
        return None
    name, port = _split_host_port(host)
    return _MatchParts(labels=tuple(name.split(".")), port=port, path=path)


def _urls_match(glob: _MatchParts, target: _MatchParts) -> bool:
    return (
        glob.port == target.port
        and len(glob.labels) == len(target.labels)
        and target.path.startswith(glob.path)
        and all(_glob_match(g, t) for g, t in zip(glob.labels, target.labels, strict=True))
    )


def _split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``, falling back to (whole, "") on any error as k8schain does."""
    colon = hostport.rfind(":")
    if colon < 0:
        return hostport, ""
    start, end = 0, 0
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 != colon:
            return hostport, ""
        host = hostport[1:close]
        start, end = 1, close + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            return hostport, ""
    if "[" in hostport[start:] or "]" in hostport[end:]:
        return hostport, ""
    return host, hostport[colon + 1 :]


# A glob is a list of single-character tokens: STAR, ANY, a literal, or a class.
_STAR: Final = "*"
_ANY: Final = "?"


@dataclass(frozen=True, slots=True)
class _Class:
    negated: bool
    ranges: tuple[tuple[str, str], ...]

    def matches(self, char: str) -> bool:
        return any(lo <= char <= hi for lo, hi in self.ranges) != self.negated


@dataclass(frozen=True, slots=True)
class _Literal:
    char: str


_Token = str | _Literal | _Class


def _glob_tokens(pattern: str) -> list[_Token] | None:
    """Tokens of a ``filepath.Match`` pattern, or None when Go would call it malformed."""
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char in (_STAR, _ANY):
            tokens.append(char)
            i += 1
        elif char == "\\":
            if i + 1 >= len(pattern):
                return None
            tokens.append(_Literal(pattern[i + 1]))
            i += 2
        elif char == "[":
            parsed = _glob_class(pattern, i + 1)
            if parsed is None:
                return None
            token, i = parsed
            tokens.append(token)
        else:
            tokens.append(_Literal(char))
            i += 1
    return tokens


def _glob_class(pattern: str, i: int) -> tuple[_Class, int] | None:
    negated = pattern.startswith("^", i)
    i += negated
    ranges: list[tuple[str, str]] = []
    while True:
        if pattern.startswith("]", i) and ranges:
            return _Class(negated, tuple(ranges)), i + 1
        low = _class_char(pattern, i)
        if low is None:
            return None
        lo, i = low
        hi = lo
        if pattern.startswith("-", i):
            high = _class_char(pattern, i + 1)
            if high is None:
                return None
            hi, i = high
        ranges.append((lo, hi))


def _class_char(pattern: str, i: int) -> tuple[str, int] | None:
    if i >= len(pattern) or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None
    return pattern[i], i + 1


def _token_matches(token: _Token, char: str) -> bool:
    if isinstance(token, _Literal):
        return token.char == char
    if isinstance(token, _Class):
        return token.matches(char)
    return char != "/"  # _ANY


def _glob_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` on one host label; malformed patterns never match.

    Linear backtracking to the last ``*`` only, so a pattern from a Secret cannot make
    matching slow, however many stars it holds.
    """
    tokens = _glob_tokens(pattern)
    if tokens is None:
        return False
    p = s = 0
    star, mark = -1, 0
    while s < len(name):
        if p < len(tokens) and tokens[p] == _STAR:
            star, mark = p, s
            p += 1
        elif p < len(tokens) and _token_matches(tokens[p], name[s]):
            p += 1
            s += 1
        elif star >= 0 and name[mark] != "/":
            mark += 1
            p, s = star + 1, mark
        else:
            return False
    return all(token == _STAR for token in tokens[p:])


# --- JSON and AuthConfig ---------------------------------------------------------------


def _load_json(data: bytes, *, what: str) -> object:
    # Go's decoder turns invalid UTF-8 inside strings into U+FFFD; outside strings the
    # replacement character is a syntax error either way.
    text = bytes(data).decode("utf-8", "replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DockerConfigError(
            f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except (ValueError, RecursionError) as err:
        # Integer digit limits and nesting depth: the message carries no document text.
        raise DockerConfigError(f"{what} is not valid JSON: {type(err).__name__}") from None


def _entries(auths: dict[str, object], *, what: str) -> DockerConfig:
    entries = tuple(
        AuthEntry(key=_clean(key), credentials=_auth_config(value, what=what, key=key))
        for key, value in auths.items()
    )
    return DockerConfig(entries=entries)


def _auth_config(value: object, *, what: str, key: str) -> Credentials:
    where = f'{what}: entry "{_redact_userinfo(key)}"'
    if value is None:
        return Credentials()
    if not isinstance(value, dict):
        raise DockerConfigError(f"{where} must be an object, not {_kind(value)}")
    fields = dict.fromkeys(_AUTH_FIELDS, "")
    for name, item in value.items():
        wanted = _ascii_lower(name)
        if wanted not in fields or item is None:
            continue
        if not isinstance(item, str):
            raise DockerConfigError(f'{where}: field "{name}" must be a string, not {_kind(item)}')
        fields[wanted] = _clean(item)
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        try:
            username, password = _decode_auth(fields["auth"])
        except ValueError as err:
            # Flux's wording exactly (go-containerregistry's AuthConfig): no entry named.
            raise DockerConfigError(f"unable to decode auth field: {err}") from None
    return Credentials(
        username=username,
        password=password,
        identity_token=fields["identitytoken"],
        registry_token=fields["registrytoken"],
    )


def _decode_auth(auth: str) -> tuple[str, str]:
    """Split base64 ``user:pass``; errors name byte offsets, never the decoded text."""
    decoded = _decode_base64(auth).decode("utf-8", "replace")
    username, colon, password = decoded.partition(":")
    if not colon:
        raise ValueError("must be formatted as base64(username:password)")
    return username, password


def _decode_base64(text: str) -> bytes:
    """Go's std base64: padded when the trimmed text ends in ``=``, else unpadded.

    Line breaks are skipped as Go's decoder does; any other stray character is an error.
    """
    padded = text.strip().endswith("=")
    chars = [(i, c) for i, c in enumerate(text) if c not in "\r\n"]
    body = chars
    if padded:
        first_pad = next(n for n, (_, c) in enumerate(chars) if c == "=")
        body, padding = chars[:first_pad], chars[first_pad:]
        for i, c in padding:
            if c != "=":
                raise ValueError(f"illegal base64 data at input byte {i}")
        if len(padding) > 2 or (len(body) + len(padding)) % 4 or len(body) % 4 < 2:
            raise ValueError(f"illegal base64 data at input byte {padding[0][0]}")
    for i, c in body:
        if c not in _BASE64_CHARS:
            raise ValueError(f"illegal base64 data at input byte {i}")
    if len(body) % 4 == 1:
        raise ValueError(f"illegal base64 data at input byte {len(text)}")
    encoded = "".join(c for _, c in body)
    return binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4))


def _parse_url(url: str, *, key: str) -> tuple[str, str]:
    """Host and unescaped path of an ``http(s)://`` URL, read as Go's ``url.Parse`` does."""
    shown = _redact_userinfo(key)
    url, _, fragment = url.partition("#")
    if any(c < " " or c == "\x7f" for c in url):
        raise DockerConfigError(f'invalid auths key "{shown}": control character in URL')
    rest = url.partition("://")[2].partition("?")[0]
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    try:
        if at and not all(c in _USERINFO_CHARS for c in userinfo):
            raise ValueError("invalid userinfo")
        if at:
            _unescape(userinfo)
        _unescape(fragment)
        return parse_url_host(host), _unescape(slash + path)
    except ValueError as err:
        raise DockerConfigError(f'invalid auths key "{shown}": {err}') from None


def _unescape(text: str) -> str:
    """Decode ``%XX`` escapes; a ``%`` without two hex digits is an error, as in Go."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            escape = text[i + 1 : i + 3]
            if len(escape) < 2 or not all(c in _HEX_DIGITS for c in escape):
                raise ValueError("invalid URL escape")
            out.append(int(escape, 16))
            i += 3
        else:
            out.extend(text[i].encode("utf-8", "surrogatepass"))
            i += 1
    return out.decode("utf-8", "replace")


def _redact_userinfo(key: str) -> str:
    """``key`` with any ``user:pass@`` of its authority replaced (contract A11)."""
    scheme = _SCHEME_PREFIX.match(key)
    prefix = scheme.group(0) if scheme else ""
    authority, slash, path = key.removeprefix(prefix).partition("/")
    if "@" not in authority:
        return key
    return f"{prefix}<redacted>@{authority.rpartition('@')[2]}{slash}{path}"


def _clean(text: str) -> str:
    """Lone surrogates (from ``\\ud800`` escapes) become U+FFFD, as Go's decoder does."""
    return _SURROGATE.sub("\ufffd", text)


def _ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
