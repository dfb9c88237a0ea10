"""URLs a registry hands us: parsing them safely and deciding where a request may go.

A tenant chooses the registry; the registry then chooses more URLs (``Location``,
``Link``, the token ``realm``). Every such URL passes through ``parse_target`` before the
client requests it, so one place enforces:

* it parses (``http://[::1/x`` or a port past 65535 is an error, not a traceback), is
  ``http`` or ``https``, names a host and carries no userinfo;
* it is not on a link-local or cloud metadata address (``169.254.0.0/16``, ``fe80::/10``,
  ``fd00:ec2::254``, ``metadata.google.internal``) unless the registry itself is on one:
  instance credentials live there, and a registry must not be able to point the
  controller at them.

``same_origin`` is the origin rule for credentials: scheme, host and port all equal.
Errors raised here are ``InvalidResponseError`` whose text names the URL without its
query (the registry chose the query; it may carry anything).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urljoin, urlsplit

from imagereflector.registry.errors import InvalidResponseError

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LINK_LOCAL_V4: Final = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6: Final = ipaddress.ip_network("fe80::/10")
# AWS's IPv6 instance metadata endpoint sits in unique-local space, not link-local.
_AWS_METADATA_V6: Final = ipaddress.ip_address("fd00:ec2::254")
_METADATA_NAMES: Final = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
    "instance-data.ec2.internal"})
_MAX_URL_CHARS: Final = 8192
_GO_PRIVATE_V4: Final = ("127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/24", "10.0.0.0/8",
                         "172.16.0.0/12", "192.168.0.0/16", "0.0.0.0/32")
_GO_PRIVATE_V6: Final = ("::1/128", "fe80::/10", "ff02::/16", "fc00::/7", "::/128")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed, allowed request URL: ``url`` as given, its origin, and a safe display."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): what credentials are bound to."""
        return (self.scheme, self.host, self.port)

    @property
    def shown(self) -> str:
        """The URL for messages: scheme, host, port and path; never query or userinfo."""
        return display_url(self.url)


def display_url(url: str) -> str:
    """``url`` without userinfo, query and fragment, safe to show (never raises)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.split("?", 1)[0].split("#", 1)[0][:200]
    authority, slash, path = rest.partition("/")
    authority = authority.rsplit("@", 1)[-1]
    path = path.split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{authority}{slash}{path}"[:_MAX_URL_CHARS]


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_metadata_address(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal) is link-local or a cloud metadata host."""
    name = host.strip("[]").rstrip(".").lower()
    if name in _METADATA_NAMES:
        return True
    address = _literal(name)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LINK_LOCAL_V4
    return address in _LINK_LOCAL_V6 or address == _AWS_METADATA_V6


def registry_host(registry: str) -> str:
    """The host part of a ``host[:port]`` registry name, lower case, without brackets."""
    try:
        host = urlsplit(f"//{registry}").hostname
    except ValueError:
        host = None
    return host or registry.lower()


def parse_target(url: str, *, registry: str, what: str) -> Target:
    """``url`` checked as a place the client may send a request for ``registry``.

    ``what`` names the URL's role in messages ("redirect target", "token realm", …).
    """
    if len(url) > _MAX_URL_CHARS:
        raise InvalidResponseError(f"the registry sent a {what} longer than {_MAX_URL_CHARS} "
                                   "characters; not followed")
    if any(ord(char) < 0x21 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF
           for char in url):
        raise InvalidResponseError(f"the registry sent a {what} with spaces or control "
                                   "characters; not followed")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise InvalidResponseError(
            f"the registry sent a {what} that is not a valid URL ({display_url(url)!r}); "
            "not followed") from None
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise InvalidResponseError(
            f"the registry sent a {what} that is not an http or https URL "
            f"({display_url(url)!r}); not followed")
    if "@" in parts.netloc:
        raise InvalidResponseError(
            f"the registry sent a {what} with credentials in it ({display_url(url)}); "
            "not followed")
    if is_metadata_address(host) and not is_metadata_address(registry_host(registry)):
        raise InvalidResponseError(
            f"the registry sent a {what} on a link-local or cloud metadata address "
            f"({display_url(url)}); not followed")
    return Target(url=url, scheme=parts.scheme, host=host,
                  port=port if port is not None else _DEFAULT_PORTS[parts.scheme])


def resolve_target(base: str, reference: str, *, registry: str, what: str) -> Target:
    """``reference`` (absolute or relative, as in ``Location``) resolved against ``base``."""
    try:
        joined = urljoin(base, reference)
    except ValueError:
        raise InvalidResponseError(
            f"the registry sent a {what} that is not a valid URL ({display_url(reference)!r}); "
            "not followed") from None
    return parse_target(joined, registry=registry, what=what)


def same_origin(first: SplitResult | Target, second: SplitResult | Target) -> bool:
    """Whether two URLs share scheme, host and port (the default port counts as given)."""
    return _origin(first) == _origin(second)


def _origin(url: SplitResult | Target) -> tuple[str, str, int]:
    if isinstance(url, Target):
        return url.origin
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme, 0)
    return (url.scheme, url.hostname or "", port)


def _go_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's ``IsLoopback || IsLinkLocalUnicast || IsLinkLocalMulticast || IsPrivate ||
    IsUnspecified`` (narrower than Python's ``is_private``, which also takes reserved and
    documentation ranges)."""
    networks = _GO_PRIVATE_V4 if isinstance(address, ipaddress.IPv4Address) else _GO_PRIVATE_V6
    return any(address in ipaddress.ip_network(n) for n in networks)


def check_realm_strictly(realm: str, *, registry: str, insecure: bool) -> None:
    """Flux v1.2's realm rule (go-containerregistry v0.21): https, or http when the
    registry itself is reached over http; and an IP-literal realm host in a private,
    loopback, link-local or unspecified range only when it is the registry's own
    ``host:port``. Raises ``InvalidResponseError`` worded as Flux words it."""
    prefix = "invalid realm in www-authenticate: "
    try:
        parts = urlsplit(realm)
        host = parts.hostname or ""
    except ValueError:
        raise InvalidResponseError(f"{prefix}parsing realm {display_url(realm)!r} failed"
                                   ) from None
    if parts.scheme == "http" and not insecure:
        raise InvalidResponseError(
            f'{prefix}realm scheme "http" not allowed for a secure registry; use https')
    if parts.scheme not in ("http", "https"):
        raise InvalidResponseError(
            f'{prefix}realm scheme "{parts.scheme}" not allowed; must be https (or http for '
            "insecure registries)")
    if parts.netloc.rsplit("@", 1)[-1] == registry:
        return
    address = _literal(host)
    if address is not None and _go_private(address):
        raise InvalidResponseError(
            f'{prefix}realm host "{host}" is a private or link-local address')
