"""ImageRepository → how to reach its registry: credentials, TLS material, proxy.

Contract §2.5 as amended by A5: ``secretRef`` (a dockerconfigjson Secret) first, then the
pull secrets of ``serviceAccountName``; ``certSecretRef`` gives CA and client
certificate. Secrets and ServiceAccounts are read only from the object's own namespace:
the reader is always called with the object's namespace, never one named in a spec.

Without ``secretRef``, the cloud provider login of ``spec.provider`` applies (contract
§2.5.2; a host of another cloud falls back to anonymous), and ``proxySecretRef`` routes
the object's registry traffic through a proxy (A10).

Every failure is a ``CredentialsError`` whose text follows ``failed to configure
authentication options: `` in the Ready condition. Messages name Secrets, keys and
types, never the values.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import imagereflector.credentials.dockerconfig as dockerconfig
from imagereflector.api.imagerepository import ImageRepositorySpec
from imagereflector.credentials.providers.base import ProviderError
from imagereflector.kube.client import ApiError, NotFoundError
from imagereflector.registry.errors import TLSError
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.transport import build_ssl_context
from imagereflector.registry.types import Credentials, ProxyConfig, RegistryAccess, TLSConfig

DOCKERCONFIGJSON: Final = "kubernetes.io/dockerconfigjson"
DOCKERCFG: Final = "kubernetes.io/dockercfg"
TLS_SECRET_TYPES: Final = ("Opaque", "kubernetes.io/tls", "")
_TLS_KEYS: Final = ("tls.crt", "tls.key", "ca.crt")
_DEPRECATED_TLS_KEYS: Final = ("certFile", "keyFile", "caFile")

log = logging.getLogger("imagereflector.credentials")


class ObjectReader(Protocol):
    """Reads Secrets and ServiceAccounts; raises with the API's message when it cannot."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """The Secret as the API returns it (``data`` base64-encoded)."""
        ...

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """The ServiceAccount as the API returns it."""
        ...


class CredentialsError(Exception):
    """Credentials or TLS material could not be configured from the object's references."""


def secret_value(secret: dict[str, Any], key: str) -> bytes | None:
    """The decoded value of ``data[key]``, None when absent; bad base64 is an error."""
    data = secret.get("data") or {}
    if not isinstance(data, dict) or key not in data:
        return None
    raw = data[key]
    name = secret.get("metadata", {}).get("name", "")
    if not isinstance(raw, str):
        raise CredentialsError(f"secret '{name}' key '{key}' is not a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CredentialsError(f"secret '{name}' key '{key}' is not valid base64") from err


def _docker_config(secret: dict[str, Any]) -> dockerconfig.DockerConfig | None:
    """The docker config of a pull secret of either type; None for other types."""
    kind = secret.get("type", "")
    if kind not in (DOCKERCONFIGJSON, DOCKERCFG):
        return None
    key = ".dockerconfigjson" if kind == DOCKERCONFIGJSON else ".dockercfg"
    data = secret_value(secret, key)
    if data is None:
        name = secret.get("metadata", {}).get("name", "")
        raise CredentialsError(f"secret '{name}' of type {kind} has no '{key}' key")
    if kind == DOCKERCONFIGJSON:
        return dockerconfig.parse_dockerconfigjson(data)
    return dockerconfig.parse_dockercfg(data)


def tls_from_secret(secret: dict[str, Any]) -> TLSConfig:
    """TLS material from a ``certSecretRef`` Secret, with the contract's rules and messages."""
    name = secret.get("metadata", {}).get("name", "")
    kind = secret.get("type", "") or ""
    if kind not in TLS_SECRET_TYPES:
        raise CredentialsError(f"cannot use secret '{name}' to construct TLS config: "
                               f"invalid secret type: '{kind}'")
    cert, key, ca = (secret_value(secret, k) for k in _TLS_KEYS)
    if cert is None and key is None and ca is None:
        cert, key, ca = (secret_value(secret, k) for k in _DEPRECATED_TLS_KEYS)
        if cert is not None or key is not None or ca is not None:
            log.warning("warning: specifying TLS auth data via `certFile`/`keyFile`/`caFile` "
                        "is deprecated, please use `tls.crt`/`tls.key`/`ca.crt` instead")
    if (cert is None) != (key is None):
        raise CredentialsError(f"invalid '{name}' secret data: both certificate and private "
                               "key need to be provided")
    if ca is not None:
        try:
            ssl.create_default_context(cadata=ca.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError, TypeError) as err:
            # TypeError: ssl refuses non-ASCII text outright, which is no CA either.
            raise CredentialsError("cannot append certificate into certificate pool: "
                                   "invalid CA certificate") from err
    tls = TLSConfig(ca_pem=ca, cert_pem=cert, key_pem=key)
    try:
        # Loading the material now turns a bad key pair into an authentication error
        # instead of a confusing failure in the middle of the scan.
        build_ssl_context(tls)
    except TLSError as err:
        raise CredentialsError(f"invalid '{name}' secret data: {err}") from err
    return tls


def proxy_from_secret(secret: dict[str, Any]) -> ProxyConfig:
    """Proxy settings from a ``proxySecretRef`` Secret: ``address`` and optional
    ``username``/``password``. The address must be an http(s) URL without userinfo."""
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
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CredentialsError(f"invalid proxy secret '{name}': 'address' must be an http:// "
                               "or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        # Never echo the address: it carries credentials.
        raise CredentialsError(f"invalid proxy secret '{name}': 'address' must not contain "
                               "credentials; use the 'username' and 'password' keys")
    username = (secret_value(secret, "username") or b"").decode("utf-8", errors="replace")
    password = (secret_value(secret, "password") or b"").decode("utf-8", errors="replace")
    return ProxyConfig(address=address, username=username, password=password)


class CloudLogin(Protocol):
    """Cloud registry login (``credentials.providers.registry.ProviderRegistry``)."""

    async def credentials(self, *, provider: str, image: str,
                          registry: str) -> Credentials | None:
        """Credentials for the cloud the host belongs to; None means anonymous."""
        ...


class CredentialResolver:
    """Resolves an ImageRepository's registry access from its namespace's objects."""

    def __init__(self, *, reader: ObjectReader, clouds: CloudLogin | None = None) -> None:
        self._reader = reader
        self._clouds = clouds

    async def _get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return await self._reader.get_secret(namespace, name)
        except ApiError as err:
            # The API's own message (e.g. 'secrets "x" not found') is what users search for.
            raise CredentialsError(err.message) from err

    async def resolve(self, *, namespace: str, spec: ImageRepositorySpec,
                      ref: ImageReference) -> RegistryAccess:
        """Credentials and TLS for ``spec`` in ``namespace``; raises ``CredentialsError``."""
        try:
            return await self._resolve(namespace=namespace, spec=spec, ref=ref)
        except dockerconfig.DockerConfigError as err:
            raise CredentialsError(str(err)) from err

    async def _resolve(self, *, namespace: str, spec: ImageRepositorySpec,
                       ref: ImageReference) -> RegistryAccess:
        secrets: dict[str, dict[str, Any]] = {}
        credentials: Credentials | None = None
        missing_in_secret: str | None = None
        # 1. secretRef: a dockerconfigjson Secret in the object's namespace.
        if spec.secret_ref is not None:
            name = spec.secret_ref.name
            secret = secrets[name] = await self._get_secret(namespace, name)
            if secret.get("type", "") != DOCKERCONFIGJSON:
                raise CredentialsError(f'unknown secret type "{secret.get("type", "")}"')
            config = _docker_config(secret)
            assert config is not None
            credentials = config.lookup(ref.registry)
            if credentials is None:
                missing_in_secret = (f'auth for "{ref.registry}" not found in secret '
                                     f"{namespace}/{name}")
        # 2. Without secretRef, the cloud the registry host belongs to (spec.provider).
        if spec.secret_ref is None and self._clouds is not None:
            try:
                credentials = await self._clouds.credentials(
                    provider=spec.effective_provider(), image=spec.image, registry=ref.registry)
            except ProviderError as err:
                raise CredentialsError(str(err)) from err
        # 3. The service account's pull secrets, when nothing above applied (A5).
        if credentials is None and spec.service_account_name:
            credentials = await self._from_service_account(
                namespace, spec.service_account_name, ref)
        if credentials is None and missing_in_secret is not None:
            raise CredentialsError(missing_in_secret)
        # 4. certSecretRef: reuse the Secret already read when it is the same one.
        tls = None
        if spec.cert_secret_ref is not None:
            name = spec.cert_secret_ref.name
            secret = secrets.get(name) or await self._get_secret(namespace, name)
            tls = tls_from_secret(secret)
        # 5. proxySecretRef: every request of this object goes through that proxy.
        proxy = None
        if spec.proxy_secret_ref is not None:
            name = spec.proxy_secret_ref.name
            secret = secrets.get(name) or await self._get_secret(namespace, name)
            proxy = proxy_from_secret(secret)
        return RegistryAccess(credentials=credentials, tls=tls, proxy=proxy)

    async def _from_service_account(self, namespace: str, name: str,
                                    ref: ImageReference) -> Credentials | None:
        try:
            account = await self._reader.get_service_account(namespace, name)
        except NotFoundError as err:
            # Flux reads ServiceAccounts through controller-runtime's cache, whose NotFound
            # names the kind, not the resource: 'ServiceAccount "x" not found'.
            raise CredentialsError(f'ServiceAccount "{name}" not found') from err
        except ApiError as err:
            raise CredentialsError(err.message) from err
        configs = []
        for entry in account.get("imagePullSecrets") or []:
            secret_name = entry.get("name") if isinstance(entry, dict) else None
            if not secret_name:
                continue
            try:
                config = _docker_config(await self._get_secret(namespace, secret_name))
            except dockerconfig.DockerConfigError as err:
                raise CredentialsError(f"pull secret '{secret_name}': {err}") from err
            if config is not None:
                configs.append(config)
        return dockerconfig.keyring_lookup(configs, ref.canonical)
