"""Image references: parsing and canonicalisation with Docker's rules (contract §2.4).

An ``ImageReference`` names a repository (never a tag or digest). Its ``canonical`` form
makes every implied part explicit (``alpine`` → ``index.docker.io/library/alpine``) and is
what status reports as ``canonicalImageName``.

``parse_image_reference`` reproduces what Flux v0.31 accepts, including the weak
validation of go-containerregistry's ``pkg/name``: repository names are checked for their
characters (``a-z0-9_-./``) and length (2..255) only, tags for their characters
(``A-Za-z0-9_.-``) and length (1..128) only. Stricter checks would turn image strings that
v0.31 scanned into stalled objects after a switch of controllers.

Invariants:

* Every failure is an ``InvalidReferenceError`` (a ``ValueError``) with one of the three
  messages of the contract; nothing else escapes, whatever the input.
* A successful parse never carries a tag or digest, and ``parse_image_reference(r.canonical)``
  yields ``r`` again (canonicalisation is idempotent) whenever ``r.repository`` fits the
  255-character limit. The one exception is go-containerregistry's too: a single-segment
  Docker Hub name of 248..255 characters parses, but its ``library/`` prefix makes the
  canonical repository too long to parse again. Nothing re-parses canonical names, so
  this stays as v0.31 has it.
* Error messages never repeat URL userinfo (contract A11): ``user:pass@host/repo`` is echoed
  as ``<redacted>@host/repo``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal

DOCKER_HUB_REGISTRY: Final = "index.docker.io"
# The short name users write for Docker Hub; pkg/name rewrites it to the index host.
DOCKER_HUB_ALIAS: Final = "docker.io"

# Go's regexp is not multiline by default and its \d is ASCII: hence \Z and [0-9].
_LOCAL_HOST = re.compile(r".*\.local(host)?(?::[0-9]{1,5})?\Z")
_RFC1918 = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)

_REPOSITORY_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-./")
_TAG_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
)
_HEX_CHARS: Final = frozenset("0123456789abcdef")
_DIGEST_PREFIX: Final = "sha256:"
# Digest algorithms whose ``<algo>:`` after an ``@`` marks a digest rather than userinfo.
_DIGEST_ALGORITHMS: Final = ("sha256:", "sha384:", "sha512:")
_MAX_PORT: Final = 65535

# ASCII bytes Go's net/url accepts unescaped in a host (RFC 3986 unreserved and sub-delims,
# plus the few extras Go tolerates); everything else ASCII must not appear.
_HOST_ASCII: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-._~!$&'()*+,;=:[]<>\""
)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


class InvalidReferenceError(ValueError):
    """``spec.image`` cannot be used: reason ``ImageURLInvalid``, stalled, no retry."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed repository reference: registry host[:port] and repository path."""

    registry: str
    repository: str
    insecure: bool = False

    @property
    def canonical(self) -> str:
        """``registry/repository`` with implied parts explicit."""
        return f"{self.registry}/{self.repository}"

    @property
    def scheme(self) -> Literal["http", "https"]:
        """``http`` when asked (insecure) or for local and private hosts, else ``https``.

        The rules are go-containerregistry's (contract §2.4.6); see ``plain_http``. For
        ``http`` the client still tries https first (as Docker clients do) and falls back
        to plain http; see ``registry.client``.
        """
        return "http" if plain_http(self.registry, insecure=self.insecure) else "https"


def plain_http(registry: str, *, insecure: bool, dot_local: bool = True) -> bool:
    """Whether ``registry`` may be reached over plain http (go-containerregistry's rule).

    In its order: insecure; an RFC 1918 IPv4 address before the first ``:``; a
    ``localhost:`` prefix; a ``.localhost`` name (and, with ``dot_local``, a ``.local``
    name, as go-containerregistry up to v0.19 and so Flux v0.31 had it) with an optional
    port; any ``127.0.0.1`` or ``::1`` inside the registry string.
    """
    if insecure:
        return True
    if _is_rfc1918(registry.split(":", 1)[0]):
        return True
    if registry.startswith("localhost:"):
        return True
    match = _LOCAL_HOST.match(registry)
    if match is not None and (dot_local or match.group(1) == "host"):
        return True
    return "127.0.0.1" in registry or "::1" in registry


def _is_rfc1918(text: str) -> bool:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return any(address in net for net in _RFC1918)


def parse_url_host(host: str) -> str:
    """Read the host part of a URL authority the way Go's ``net/url`` does.

    ``host`` is ``host[:port]`` or ``[ipv6][:port]`` (no userinfo). The port, when present,
    must be digits (an empty port after ``:`` is accepted, as Go does). ``%XX`` escapes are
    only allowed for non-ASCII bytes (and ``%25``) and are decoded. Returns the decoded host;
    raises ``ValueError`` naming the offending character or port, never more of the input.
    """
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0:
            raise ValueError("missing ']' in host")
        _check_optional_port(host[close + 1 :])
    else:
        colon = host.rfind(":")
        if colon >= 0:
            _check_optional_port(host[colon:])
    return _unescape_host(host)


def _check_optional_port(port: str) -> None:
    if port == "":
        return
    if not port.startswith(":") or not all("0" <= c <= "9" for c in port[1:]):
        raise ValueError(f"invalid port {port!r} after host")
    # Go accepts any digits here, which leaves a registry that can never be reached and
    # a scan that fails forever; a port TCP cannot have is an invalid reference.
    if len(port) > 1 and int(port[1:]) > _MAX_PORT:
        raise ValueError(f"invalid port {port!r} after host")


def _unescape_host(host: str) -> str:
    out = bytearray()
    i = 0
    while i < len(host):
        char = host[i]
        if char == "%":
            escape = host[i : i + 3]
            if len(escape) < 3 or not (escape[1] in _HEX_DIGITS and escape[2] in _HEX_DIGITS):
                raise ValueError("invalid URL escape in host")
            # RFC 3986 lets a host %-encode only non-ASCII bytes; RFC 6874 adds %25.
            if int(escape[1], 16) < 8 and escape != "%25":
                raise ValueError(f"invalid URL escape {escape!r} in host")
            out.append(int(escape[1:], 16))
            i += 3
            continue
        if char < "\x80" and char not in _HOST_ASCII:
            raise ValueError(f"invalid character {char!r} in host name")
        out.extend(char.encode("utf-8", "surrogatepass"))
        i += 1
    return out.decode("utf-8", "replace")


def _valid_registry(name: str) -> bool:
    """True when ``name`` is a URI authority that Go's url.Parse reads back unchanged."""
    # These characters end the authority, introduce userinfo, or are decoded: any of
    # them makes the parsed host differ from the input.
    if any(c in "/?#@%" or c < " " or c == "\x7f" for c in name):
        return False
    try:
        return parse_url_host(name) == name
    except ValueError:
        return False


def _valid_repository(repository: str) -> bool:
    return 2 <= len(repository) <= 255 and all(c in _REPOSITORY_CHARS for c in repository)


def _valid_tag(tag: str) -> bool:
    return 1 <= len(tag) <= 128 and all(c in _TAG_CHARS for c in tag)


def _valid_digest(digest: str) -> bool:
    hex_part = digest.removeprefix(_DIGEST_PREFIX)
    return (
        digest.startswith(_DIGEST_PREFIX)
        and len(hex_part) == 64
        and all(c in _HEX_CHARS for c in hex_part)
    )


def _repository(name: str) -> tuple[str, str] | None:
    """``(registry, repository)`` with Docker Hub defaults applied, or None if invalid."""
    if not name:
        return None
    registry, repository = "", name
    head, slash, tail = name.partition("/")
    # Only a first segment that looks like a host (a dot or a port colon) is a registry;
    # ``localhost/foo`` therefore names the Docker Hub repository ``localhost/foo``.
    if slash and ("." in head or ":" in head):
        registry, repository = head, tail
    if not _valid_repository(repository) or not _valid_registry(registry):
        return None
    if registry in ("", DOCKER_HUB_ALIAS):
        registry = DOCKER_HUB_REGISTRY
    if registry == DOCKER_HUB_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def _tagged(name: str) -> tuple[str, str] | None:
    """Parse ``name[:tag]``; the last ``:`` part is a tag unless it holds a ``/`` (a port)."""
    base = name
    parts = name.split(":")
    if len(parts) > 1 and "/" not in parts[-1]:
        base = ":".join(parts[:-1])
        if not _valid_tag(parts[-1]):
            return None
    return _repository(base)


def _digested(name: str) -> tuple[str, str] | None:
    """Parse ``name[:tag]@sha256:<hex>``."""
    parts = name.split("@")
    if len(parts) != 2 or not _valid_digest(parts[1]):
        return None
    base = parts[0]
    tagged = _tagged(base)
    if tagged is not None:
        base = "/".join(tagged)
    return _repository(base)


def _redact_userinfo(image: str) -> str:
    """Hide what could be ``user:password@`` in an unparsable reference (contract A11).

    Everything up to the last ``@`` that does not start a digest is hidden, so
    ``user:pw@host/app@sha256:…`` loses its userinfo too.
    """
    cut = -1
    for index, char in enumerate(image):
        if char == "@" and not image.startswith(_DIGEST_ALGORITHMS, index + 1):
            cut = index
    if cut < 0:
        return image
    return f"<redacted>{image[cut:]}"


def parse_image_reference(image: str, *, insecure: bool = False) -> ImageReference:
    """Parse ``spec.image`` into a repository reference (contract §2.4).

    Rejects, in this order: a URL scheme (``should not start with URL scheme``), anything
    go-containerregistry cannot parse as a tag or digest reference (``could not parse
    reference``), and any tag or digest (``should not contain a tag``). The last check strips
    the registry string literally from the input and reports the text between the first and
    second ``:`` that remain, as v0.31 does.
    """
    if "://" in image:
        scheme = image.split("://", 1)[0]
        raise InvalidReferenceError(
            f".spec.image value should not start with URL scheme; remove '{scheme}://'"
        )
    parsed = _tagged(image) or _digested(image)
    if parsed is None:
        raise InvalidReferenceError(f"could not parse reference: {_redact_userinfo(image)}")
    registry, repository = parsed
    remainder = image.removeprefix(registry).split(":")
    if len(remainder) > 1:
        raise InvalidReferenceError(
            f".spec.image value should not contain a tag; remove ':{remainder[1]}'"
        )
    return ImageReference(registry=registry, repository=repository, insecure=insecure)
