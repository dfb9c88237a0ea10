"""Value types shared by the registry client and everything that feeds it.

``Credentials``, ``TLSConfig`` and ``ProxyConfig`` carry secrets. Their ``repr`` never
shows secret material, so an accidental log line or exception text cannot leak it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Credentials:
    """Registry credentials from a docker config, a cloud provider or the command line.

    At most one flavour is used: ``registry_token`` is sent as a Bearer token as is;
    ``identity_token`` is an OAuth2 refresh token exchanged at the token realm;
    otherwise ``username``/``password`` go to the Basic challenge or the token realm.
    """

    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        """True when there is nothing to authenticate with."""
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def fingerprint(self) -> str:
        """A stable, non-reversible identity for cache keys (never the secret itself)."""
        digest = hashlib.sha256()
        for part in (self.username, self.password, self.identity_token, self.registry_token):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return "Credentials(anonymous)" if self.anonymous else "Credentials(<redacted>)"


@dataclass(frozen=True, slots=True)
class DeferredCredentials(Credentials):
    """Credentials obtained only when the registry asks for them (a 401 challenge).

    Flux v1.2 logs in to a cloud this way: the login runs inside the tag listing, so a
    registry that lets anonymous callers list never causes one, and a failed login is a
    failed scan. ``source`` returns the real credentials or raises
    ``errors.CredentialSourceError``; the client calls it at most once per call.
    """

    source: Callable[[], Awaitable[Credentials]] | None = field(
        default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return "DeferredCredentials(<on challenge>)"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """PEM material for one registry transport: extra CA certificates, client cert and key.

    The CA certificates are added to the system trust store, never replace it.
    """

    ca_pem: bytes | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """A stable identity for caching the SSL context built from this material."""
        digest = hashlib.sha256()
        for part in (self.ca_pem, self.cert_pem, self.key_pem):
            digest.update(part or b"")
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        parts = [n for n, v in (("ca", self.ca_pem), ("cert", self.cert_pem)) if v]
        return f"TLSConfig({'+'.join(parts) or 'system'})"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A proxy for one object's registry traffic (``spec.proxySecretRef``): ``http://``,
    ``https://`` or ``socks5://``.

    ``address`` never carries userinfo: the credentials live in their own fields.
    """

    address: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def fingerprint(self) -> str:
        """A stable identity for caching the session that uses this proxy."""
        digest = hashlib.sha256(f"{self.address}\0{self.username}\0{self.password}".encode())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ProxyConfig({self.address!r})"


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    """How to reach one registry for one object: credentials, TLS material and proxy."""

    credentials: Credentials | None = None
    tls: TLSConfig | None = None
    proxy: ProxyConfig | None = None
