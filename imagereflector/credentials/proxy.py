"""``spec.proxySecretRef``: a proxy Secret (``address``, ``username``, ``password``) to a
``ProxyConfig``, in the words of either compatibility mode.

Both modes accept ``http://``, ``https://`` and ``socks5://`` addresses (SOCKS5 came in
Flux v1.0; it is an addition, so v0.31 mode has it too). They differ in their messages
and in what they tolerate:

* v0.31 mode (this project's own rules since A10): the address is trimmed and must be a
  URL with one of those schemes and a host, without credentials in it (they belong in
  ``username``/``password``); a Secret that cannot be read is the API's message.
* v1.2 mode (fluxcd/pkg runtime ``ProxyURLFromSecretRef``): ``address`` is taken as it
  is, parsed as Go's ``net/url`` parses it, at most 2048 characters; userinfo in the
  address is allowed and the ``username`` key (with ``password`` if present) replaces it.

Invariants: no message ever shows a password: an address echoed in a message has its
userinfo replaced by ``<redacted>``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from imagereflector.credentials.errors import CredentialsError, secret_value
from imagereflector.registry.types import ProxyConfig

SCHEMES: Final = ("http", "https", "socks5")
MAX_PROXY_URL_LENGTH: Final = 2048
_SCHEME_CHARS: Final = frozenset(string.ascii_letters + string.digits + "+-.")
_USERINFO_CHARS: Final = frozenset(
    string.ascii_letters + string.digits + "-._:~!$&'()*+,;=%@")
_HEX: Final = frozenset(string.hexdigits)


def proxy_from_secret(secret: dict[str, Any]) -> ProxyConfig:
    """v0.31 mode: the proxy of a ``proxySecretRef`` Secret, with this project's messages."""
    name = secret.get("metadata", {}).get("name", "")
    raw = secret_value(secret, "address")
    if raw is None or not raw.strip():
        raise CredentialsError(f"invalid proxy secret '{name}': key 'address' is missing")
    address = raw.decode("utf-8", errors="replace").strip()
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as err:
        raise CredentialsError(f"invalid proxy secret '{name}': 'address' is not a valid URL"
                               ) from err
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise CredentialsError(f"invalid proxy secret '{name}': 'address' must be an http://, "
                               "https:// or socks5:// URL with a host")
    if parts.username is not None or parts.password is not None:
        # Never echo the address: it carries credentials.
        raise CredentialsError(f"invalid proxy secret '{name}': 'address' must not contain "
                               "credentials; use the 'username' and 'password' keys")
    username = (secret_value(secret, "username") or b"").decode("utf-8", errors="replace")
    password = (secret_value(secret, "password") or b"").decode("utf-8", errors="replace")
    return ProxyConfig(address=address, username=username, password=password)


def proxy_from_secret_latest(secret: dict[str, Any], *, namespace: str) -> ProxyConfig:
    """v1.2 mode: the proxy of a ``proxySecretRef`` Secret, with Flux v1.2's messages."""
    ref = f"{namespace}/{secret.get('metadata', {}).get('name', '')}"
    raw = secret_value(secret, "address")
    if raw is None:
        raise CredentialsError(f"secret '{ref}': key 'address' not found")
    address = raw.decode("utf-8", errors="replace")
    if address == "":
        raise CredentialsError(f"secret '{ref}': proxy address is empty")
    if len(address) > MAX_PROXY_URL_LENGTH:
        raise CredentialsError(f"secret '{ref}': proxy URL exceeds maximum length of "
                               f"{MAX_PROXY_URL_LENGTH} characters")
    try:
        parsed = parse_go_url(address)
    except GoURLError as err:
        shown = redact_userinfo(address)
        raise CredentialsError(f"secret '{ref}': failed to parse proxy address '{shown}': "
                               f'parse "{shown}": {err}') from None
    if parsed.scheme not in SCHEMES:
        raise CredentialsError(f"secret '{ref}': proxy URL must use one of the supported "
                               f"schemes ({', '.join(SCHEMES)}), got '{parsed.scheme}'")
    username, password = parsed.username, parsed.password
    user_key = secret_value(secret, "username")
    if user_key is not None:
        password_key = secret_value(secret, "password")
        username = user_key.decode("utf-8", errors="replace")
        password = password_key.decode("utf-8", errors="replace") if password_key else ""
    return ProxyConfig(address=f"{parsed.scheme}://{parsed.host}", username=username,
                       password=password)


def proxy_url(proxy: ProxyConfig) -> str:
    """The proxy as one URL with its credentials, as Flux puts it in a cache key (the key
    is hashed; this string is never shown)."""
    if not proxy.username:
        return proxy.address
    scheme, _, rest = proxy.address.partition("://")
    return f"{scheme}://{proxy.username}:{proxy.password}@{rest}"


def redact_userinfo(address: str) -> str:
    """``address`` with anything before an ``@`` in its authority replaced."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return address
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}<redacted>@{host}{slash}{path}"


class GoURLError(ValueError):
    """What Go's ``url.Parse`` would refuse, in its words (after ``parse "<url>": ``)."""


@dataclass(frozen=True, slots=True)
class GoURL:
    """The parts of a URL a proxy needs: lower-case scheme, ``host[:port]``, userinfo."""

    scheme: str
    host: str
    username: str
    password: str


def parse_go_url(raw: str) -> GoURL:
    """Parse ``raw`` as Go's ``net/url.Parse`` does, as far as a proxy address needs."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise GoURLError("net/url: invalid control character in URL")
    rest = raw.partition("#")[0]
    scheme = ""
    for index, char in enumerate(rest):
        if char in string.ascii_letters:
            continue
        if char in _SCHEME_CHARS:
            if index == 0:
                break
            continue
        if char == ":":
            if index == 0:
                raise GoURLError("missing protocol scheme")
            scheme, rest = rest[:index].lower(), rest[index + 1:]
        break
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if not scheme and ":" in rest.partition("/")[0]:
            raise GoURLError("first path segment in URL cannot contain colon")
        return GoURL(scheme=scheme, host="", username="", password="")
    if not rest.startswith("//"):
        return GoURL(scheme=scheme, host="", username="", password="")
    authority = rest[2:].partition("/")[0]
    userinfo, at, host = authority.rpartition("@")
    username = password = ""
    if at:
        if any(c not in _USERINFO_CHARS for c in userinfo):
            raise GoURLError("net/url: invalid userinfo")
        user, colon, secret = userinfo.partition(":")
        username, password = _unescape(user), _unescape(secret) if colon else ""
    _check_host(host)
    return GoURL(scheme=scheme, host=_unescape(host), username=username, password=password)


def _check_host(host: str) -> None:
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            raise GoURLError("missing ']' in host")
        port = host[close + 1:]
        if port and not _valid_port(port):
            raise GoURLError(f'invalid port "{port}" after host')
        return
    colon = host.rfind(":")
    if colon >= 0 and not _valid_port(host[colon:]):
        raise GoURLError(f'invalid port "{host[colon:]}" after host')


def _valid_port(port: str) -> bool:
    return port.startswith(":") and all(c in string.digits for c in port[1:])


def _unescape(text: str) -> str:
    index = text.find("%")
    while index >= 0:
        escape = text[index + 1:index + 3]
        if len(escape) < 2 or any(c not in _HEX for c in escape):
            raise GoURLError(f'invalid URL escape "{text[index:index + 3]}"')
        index = text.find("%", index + 3)
    return unquote(text)
