"""ImageRepository → how to reach its registry: credentials, TLS material, proxy.

Secrets and ServiceAccounts are read only from the object's own namespace: the reader is
always called with the object's namespace, never one named in a spec. Every failure is a
``CredentialsError`` whose text follows ``failed to configure authentication options: ``
in the Ready condition; messages name Secrets, keys and types, never the values.

The two compatibility modes differ here (``docs/providers.md``):

* v0.31 mode (contract §2.5 with A5, A10): ``secretRef`` (a dockerconfigjson Secret, its
  ``auths`` key matched to the registry host, Docker Hub aliases A4) first; without it,
  the cloud the registry *host* belongs to, if ``spec.provider`` (or an autologin flag)
  switches that cloud on; then the pull secrets of ``serviceAccountName``; then
  ``certSecretRef`` and ``proxySecretRef``. A failed cloud login is ``AuthenticationFailed``.
* v1.2 mode (Flux v1.2 ``AuthOptionsGetter``): ``proxySecretRef`` first; a cloud
  ``spec.provider`` wins, and ``secretRef`` and pull secrets are then ignored; the login
  is *deferred* until the registry asks (so its failure is a failed scan); then
  ``certSecretRef``; without a provider, ``secretRef`` and the pull secrets form one
  keyring (kubelet's matching, Docker Hub aliases kept), in which other Secret types and
  unmatched keys are simply anonymous.

In both modes an object with a cloud provider logs in as its ServiceAccount (or the
default one) when object-level workload identity is on (``workload``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

import imagereflector.credentials.dockerconfig as dockerconfig
from imagereflector.api.compat import Compatibility
from imagereflector.api.imagerepository import ImageRepositorySpec
from imagereflector.credentials.errors import CredentialsError, secret_value
from imagereflector.credentials.providers.base import ProviderError
from imagereflector.credentials.providers.cache import InvolvedObject
from imagereflector.credentials.providers.classify import CLOUDS
from imagereflector.credentials.providers.registry import (
    CloudCredentialsError,
    ServiceAccountRef,
)
from imagereflector.credentials.proxy import proxy_from_secret, proxy_from_secret_latest, proxy_url
from imagereflector.credentials.tls import tls_from_secret, tls_from_secret_latest
from imagereflector.credentials.workload import WorkloadIdentity, service_account_for
from imagereflector.kube.client import ApiError, NotFoundError
from imagereflector.registry.errors import CredentialSourceError
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.types import (
    Credentials,
    DeferredCredentials,
    ProxyConfig,
    RegistryAccess,
)

__all__ = [
    "CloudLogin",
    "CredentialResolver",
    "CredentialsError",
    "ObjectReader",
    "proxy_from_secret",
    "secret_value",
    "tls_from_secret",
]

DOCKERCONFIGJSON: Final = "kubernetes.io/dockerconfigjson"
DOCKERCFG: Final = "kubernetes.io/dockercfg"


class ObjectReader(Protocol):
    """Reads Secrets and ServiceAccounts; raises with the API's message when it cannot."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """The Secret as the API returns it (``data`` base64-encoded)."""
        ...

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """The ServiceAccount as the API returns it."""
        ...


class CloudLogin(Protocol):
    """Cloud registry login (``credentials.providers.registry.ProviderRegistry``)."""

    async def credentials(self, *, provider: str, image: str, registry: str,
                          identity: str = "", involved: InvolvedObject | None = None,
                          account: ServiceAccountRef | None = None,
                          proxy: str = "") -> Credentials | None:
        """v0.31 mode: credentials for the cloud the host belongs to; None means anonymous."""
        ...

    async def artifact_credentials(self, *, provider: str, image: str,
                                   involved: InvolvedObject | None = None,
                                   account: ServiceAccountRef | None = None,
                                   proxy: str = "") -> Credentials:
        """v1.2 mode: credentials of ``provider``'s cloud, whose registry the image must be."""
        ...


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


def _pull_secret(secret: dict[str, Any]) -> dockerconfig.PullSecret:
    data = secret.get("data") or {}
    keys = [k for k in (".dockerconfigjson", ".dockercfg") if isinstance(data, dict) and k in data]
    decoded = {k: secret_value(secret, k) or b"" for k in keys}
    return dockerconfig.PullSecret(name=str(secret.get("metadata", {}).get("name", "")),
                                   type=str(secret.get("type", "")), data=decoded)


@dataclass(frozen=True, slots=True)
class _Target:
    """One resolution: the object and what it asks for."""

    namespace: str
    name: str
    spec: ImageRepositorySpec
    ref: ImageReference
    involved: InvolvedObject | None


class CredentialResolver:
    """Resolves an ImageRepository's registry access from its namespace's objects."""

    def __init__(self, *, reader: ObjectReader, clouds: CloudLogin | None = None,
                 compatibility: Compatibility = Compatibility.V0_31,
                 workload_identity: WorkloadIdentity | None = None) -> None:
        self._reader = reader
        self._clouds = clouds
        self._compatibility = compatibility
        self._workload_identity = workload_identity or WorkloadIdentity()

    @property
    def workload_identity(self) -> WorkloadIdentity:
        """The controller's object-level workload identity settings (the gate)."""
        return self._workload_identity

    async def resolve(self, *, namespace: str, spec: ImageRepositorySpec, ref: ImageReference,
                      name: str = "", involved: InvolvedObject | None = None) -> RegistryAccess:
        """Credentials, TLS and proxy for ``spec`` in ``namespace``; raises
        ``CredentialsError``. ``name`` (the ImageRepository's) and ``involved`` (whom the
        token cache counts the lookups for; the named ImageRepository by default) only
        label metrics."""
        if involved is None and name:
            involved = InvolvedObject("ImageRepository", name, namespace)
        target = _Target(namespace=namespace, name=name, spec=spec, ref=ref, involved=involved)
        try:
            if self._compatibility.latest:
                return await self._resolve_latest(target)
            return await self._resolve_legacy(target)
        except dockerconfig.DockerConfigError as err:
            raise CredentialsError(str(err)) from err

    # --- shared ---------------------------------------------------------------------------

    async def _get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return await self._reader.get_secret(namespace, name)
        except ApiError as err:
            # The API's own message (e.g. 'secrets "x" not found') is what users search for.
            raise CredentialsError(err.message) from err

    def _account(self, target: _Target) -> ServiceAccountRef | None:
        return service_account_for(
            namespace=target.namespace, provider=target.spec.effective_provider(),
            service_account_name=target.spec.service_account_name or "",
            settings=self._workload_identity)

    # --- v0.31 mode -----------------------------------------------------------------------

    async def _resolve_legacy(self, target: _Target) -> RegistryAccess:
        spec, namespace = target.spec, target.namespace
        secrets: dict[str, dict[str, Any]] = {}
        credentials: Credentials | None = None
        missing_in_secret: str | None = None
        # 1. secretRef: a dockerconfigjson Secret in the object's namespace.
        if spec.secret_ref is not None:
            name = spec.secret_ref.name
            secret = secrets.get(name) or await self._get_secret(namespace, name)
            secrets[name] = secret
            if secret.get("type", "") != DOCKERCONFIGJSON:
                raise CredentialsError(f'unknown secret type "{secret.get("type", "")}"')
            config = _docker_config(secret)
            assert config is not None
            credentials = config.lookup(target.ref.registry)
            if credentials is None:
                missing_in_secret = (f'auth for "{target.ref.registry}" not found in secret '
                                     f"{namespace}/{name}")
        # 2. Without secretRef, the cloud the registry host belongs to (spec.provider), as
        # the object's ServiceAccount when object-level workload identity applies.
        account = self._account(target)
        if spec.secret_ref is None and self._clouds is not None:
            credentials = await self._legacy_cloud(target, account)
        # 3. The service account's pull secrets, when nothing above applied (A5), unless
        # the ServiceAccount is the object's cloud identity.
        if credentials is None and spec.service_account_name and account is None:
            credentials = await self._from_service_account(
                namespace, spec.service_account_name, target.ref)
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

    async def _legacy_cloud(self, target: _Target,
                            account: ServiceAccountRef | None) -> Credentials | None:
        assert self._clouds is not None
        try:
            return await self._clouds.credentials(
                provider=target.spec.effective_provider(), image=target.spec.image,
                registry=target.ref.registry, involved=target.involved, account=account)
        except ProviderError as err:
            raise CredentialsError(str(err)) from err
        except CloudCredentialsError as err:
            raise CredentialsError(err.message) from err

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

    # --- v1.2 mode ------------------------------------------------------------------------

    async def _resolve_latest(self, target: _Target) -> RegistryAccess:
        spec, namespace = target.spec, target.namespace
        secrets: dict[str, dict[str, Any]] = {}
        # 1. proxySecretRef, in Flux v1.2's words.
        proxy = None
        if spec.proxy_secret_ref is not None:
            name = spec.proxy_secret_ref.name
            secret = secrets[name] = await self._get_secret_latest(namespace, name)
            proxy = proxy_from_secret_latest(secret, namespace=namespace)
        # 2. A cloud provider wins: logged in to only when the registry asks.
        credentials: Credentials | None = None
        provider = spec.effective_provider()
        if provider in CLOUDS:
            credentials = self._deferred_cloud(target, proxy)
        # 3. certSecretRef (the Secret already read when it is the same one: Flux v1.2
        # fails then, R5, which is not copied).
        tls = None
        if spec.cert_secret_ref is not None:
            name = spec.cert_secret_ref.name
            secret = secrets.get(name) or await self._get_secret(namespace, name)
            secrets[name] = secret
            tls = tls_from_secret_latest(secret, namespace=namespace)
        # 4. Without a provider: secretRef and the pull secrets as one keyring.
        if provider not in CLOUDS:
            credentials = await self._keyring_latest(target, secrets)
        return RegistryAccess(credentials=credentials, tls=tls, proxy=proxy)

    async def _get_secret_latest(self, namespace: str, name: str) -> dict[str, Any]:
        """A Secret read as fluxcd/pkg runtime reads them (its messages)."""
        try:
            return await self._reader.get_secret(namespace, name)
        except NotFoundError as err:
            raise CredentialsError(f"secret '{namespace}/{name}' not found") from err
        except ApiError as err:
            raise CredentialsError(f"failed to get secret '{namespace}/{name}': {err.message}"
                                   ) from err

    def _deferred_cloud(self, target: _Target, proxy: ProxyConfig | None) -> Credentials:
        clouds = self._clouds
        if clouds is None:
            return Credentials()
        account = self._account(target)

        async def login() -> Credentials:
            try:
                return await clouds.artifact_credentials(
                    provider=target.spec.effective_provider(), image=target.spec.image,
                    involved=target.involved, account=account,
                    proxy=proxy_url(proxy) if proxy is not None else "")
            except CloudCredentialsError as err:
                raise CredentialSourceError(err.message) from None

        return DeferredCredentials(source=login)

    async def _keyring_latest(self, target: _Target,
                              secrets: dict[str, dict[str, Any]]) -> Credentials | None:
        spec, namespace = target.spec, target.namespace
        pulls: list[dockerconfig.PullSecret] = []
        if spec.secret_ref is not None:
            name = spec.secret_ref.name
            secret = secrets.get(name) or await self._get_secret(namespace, name)
            pulls.append(_pull_secret(secret))
        if spec.service_account_name:
            pulls += [_pull_secret(s) for s in await self._pull_secrets_latest(
                namespace, spec.service_account_name)]
        if not pulls:
            return None
        return dockerconfig.PullSecretKeyring.from_secrets(pulls).resolve(target.ref.canonical)

    async def _pull_secrets_latest(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """fluxcd/pkg runtime ``PullSecretsFromServiceAccountRef``, with its messages."""
        ref = f"{namespace}/{name}"
        try:
            account = await self._reader.get_service_account(namespace, name)
        except NotFoundError as err:
            raise CredentialsError(f"serviceaccount '{ref}' not found") from err
        except ApiError as err:
            raise CredentialsError(f"failed to get serviceaccount '{ref}': {err.message}"
                                   ) from err
        found = []
        for entry in account.get("imagePullSecrets") or []:
            secret_name = entry.get("name") if isinstance(entry, dict) else None
            if not secret_name:
                continue
            try:
                found.append(await self._get_secret_latest(namespace, secret_name))
            except CredentialsError as err:
                raise CredentialsError("failed to get image pull secret for serviceaccount "
                                       f"'{ref}': {err}") from err
        return found

