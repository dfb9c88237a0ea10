"""The one entry point for cloud registry logins: who logs in, for which registry, cached.

Two questions, one machinery:

* ``ProviderRegistry.credentials`` (v0.31 mode): "which credentials does the cloud the
  registry *host* belongs to give for this image, if any?" None means anonymous access
  (a generic host, or a cloud host whose login is not switched on: the contract's
  ignored ``registry provider not configured``). A failed login of the controller's own
  identity raises ``ProviderError`` (``ECR authentication failed: …``).
* ``ProviderRegistry.artifact_credentials`` (Flux v1.2, pkg/auth
  ``GetArtifactRegistryCredentials``): ``spec.provider`` decides the cloud and the host
  must belong to it.

Both do what pkg/auth does: an *access token* (the controller's identity, or a
ServiceAccount's Kubernetes token exchanged with the cloud: object-level workload
identity), then *registry credentials* made with it; each step is one lookup in the token
cache, under pkg/auth's keys. Failures raise ``CloudCredentialsError`` with Flux v1.2's
message (``failed to get access token for artifact registry: …``).

Invariants:

* One instance per process: its cache is what makes tokens outlive a reconcile (A9).
* Plugins are looked up by cloud name; a missing plugin is a wiring bug and fails loudly
  at construction, not at the first scan.
* ServiceAccounts are read from the object's namespace only (the caller's
  ``ServiceAccountRef``), and their Kubernetes tokens are asked for with the cloud's
  audience only; neither token ever reaches a log line or a message.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from imagereflector.credentials.providers.base import (
    Account,
    CloudProvider,
    ProviderError,
    ProviderToken,
    TokenOptions,
)
from imagereflector.credentials.providers.cache import (
    NULL_CACHE_OBSERVER,
    Clock,
    Expiring,
    InvolvedObject,
    TokenCache,
    TokenCacheMetrics,
    TokenCacheObserver,
    cache_key,
)
from imagereflector.credentials.providers.classify import (
    ACR_SCOPE,
    AWS,
    AZURE,
    CLOUDS,
    GCP,
    GCP_SCOPES,
    PUBLIC_ECR,
    AutologinFlags,
    IdentityError,
    RegistryMismatchError,
    azure_cloud,
    cloud_identity,
    legacy_registry_input,
    login_host,
    parse_artifact_repository,
    select_provider,
)
from imagereflector.kube.client import ApiError, NotFoundError
from imagereflector.registry.limiter import SystemClock
from imagereflector.registry.types import Credentials

log = logging.getLogger("imagereflector.credentials.providers")

SYSTEM_CLOCK: Final = SystemClock()
"""The clocks ``default`` uses."""

DISPLAY: Final = {AWS: "ECR", AZURE: "ACR", GCP: "GCR"}
_LOGIN_MESSAGES: Final = {
    AWS: "logging in to AWS ECR for %s",
    AZURE: "logging in to Azure ACR for %s",
    GCP: "logging in to GCP GCR for %s",
}
_ACCESS_TOKEN: Final = "failed to get access token for artifact registry: "
DEFAULT_SERVICE_ACCOUNT_NOT_FOUND: Final = (
    "the specified default service account does not exist in the object namespace. your "
    "cluster is subject to multi-tenant workload identity lockdown, reach out to your "
    "cluster administrator for help")
"""pkg/auth's ``ErrDefaultServiceAccountNotFound``."""


class CloudCredentialsError(Exception):
    """A cloud login failed: ``message`` is Flux v1.2's text; ``display`` and ``cause``
    make v0.31's (``<ECR|ACR|GCR> authentication failed: <cause>``)."""

    def __init__(self, message: str, *, cloud: str, cause: str) -> None:
        super().__init__(message)
        self.message = message
        self.display = DISPLAY.get(cloud, cloud)
        self.cause = cause

    def legacy(self) -> ProviderError:
        """The same failure in v0.31's words."""
        return ProviderError(self.display, self.cause)


@dataclass(frozen=True, slots=True)
class ServiceAccountRef:
    """The ServiceAccount an object logs in as: its own, or the controller's
    ``--default-service-account`` (``default=True``) in the object's namespace."""

    namespace: str
    name: str
    default: bool = False

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class AccountReader(Protocol):
    """Reads a ServiceAccount and asks the TokenRequest API for its tokens."""

    async def get_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """The ServiceAccount as the API returns it."""
        ...

    async def create_service_account_token(self, namespace: str, name: str,
                                           audiences: list[str]) -> str:
        """A Kubernetes token of the ServiceAccount for ``audiences``."""
        ...


class _LazyPlugin:
    """A plugin whose module (and cloud SDK) is imported on first use.

    boto3 and azure-identity cost tens of MiB each at import; a controller that never
    scans a cloud registry should not pay for them.
    """

    def __init__(self, name: str, module: str, factory: str) -> None:
        self.name = name
        self._module = module
        self._factory = factory
        self._plugin: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        build: Callable[[], Any] = getattr(importlib.import_module(self._module), self._factory)
        return build()

    async def _get(self) -> Any:
        async with self._lock:
            if self._plugin is None:
                self._plugin = await asyncio.to_thread(self._load)
        return self._plugin

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """v0.31's one-step login of the controller's identity."""
        found: ProviderToken = await (await self._get()).login(registry=registry, image=image)
        return found

    async def controller_token(self, options: TokenOptions) -> Expiring[object]:
        """See ``CloudProvider``."""
        found: Expiring[object] = await (await self._get()).controller_token(options)
        return found

    async def audiences(self, account: Account) -> list[str]:
        """See ``CloudProvider``."""
        found: list[str] = await (await self._get()).audiences(account)
        return found

    async def service_account_token(self, oidc_token: str, account: Account,
                                    options: TokenOptions) -> Expiring[object]:
        """See ``CloudProvider``."""
        found: Expiring[object] = await (await self._get()).service_account_token(
            oidc_token, account, options)
        return found

    async def registry_credentials(self, registry_input: str, token: Expiring[object],
                                   options: TokenOptions) -> Expiring[Credentials]:
        """See ``CloudProvider``."""
        found: Expiring[Credentials] = await (await self._get()).registry_credentials(
            registry_input, token, options)
        return found


@dataclass(frozen=True, slots=True)
class _Identity:
    """Who asks for the access token, and the parts of pkg/auth's cache key it adds."""

    account: Mapping[str, Any] | None
    ref: ServiceAccountRef | None
    audiences: tuple[str, ...] = ()
    identity: str = ""


class ProviderRegistry:
    """Cloud logins for ImageRepositories and ImagePolicies, behind one token cache."""

    def __init__(
        self,
        *,
        plugins: Iterable[CloudProvider],
        autologin: AutologinFlags,
        cache: TokenCache,
        accounts: AccountReader | None = None,
    ) -> None:
        self._plugins = {plugin.name: plugin for plugin in plugins}
        missing = sorted(set(CLOUDS) - set(self._plugins))
        if missing:
            raise ValueError(f"no login plugin for provider(s): {', '.join(missing)}")
        self._autologin = autologin
        self._cache = cache
        self._accounts = accounts

    @classmethod
    def default(
        cls,
        *,
        autologin: AutologinFlags,
        observer: TokenCacheObserver = NULL_CACHE_OBSERVER,
        metrics: TokenCacheMetrics = NULL_CACHE_OBSERVER,
        clock: Clock = SYSTEM_CLOCK,
        accounts: AccountReader | None = None,
        max_size: int = 100,
        max_duration: float = 3600.0,
    ) -> ProviderRegistry:
        """The real AWS, Azure and GCP plugins on a cache with the system clocks."""
        cache = TokenCache(clock=clock, observer=observer, metrics=metrics,
                           max_size=max_size, max_duration=max_duration)
        plugins = (
            _LazyPlugin(AWS, "imagereflector.credentials.providers.aws", "AwsLogin"),
            _LazyPlugin(AZURE, "imagereflector.credentials.providers.azure", "AzureLogin"),
            _LazyPlugin(GCP, "imagereflector.credentials.providers.gcp", "GcpLogin"),
        )
        return cls(plugins=plugins, autologin=autologin, cache=cache, accounts=accounts)

    async def credentials(
        self,
        *,
        provider: str,
        image: str,
        registry: str,
        identity: str = "",
        involved: InvolvedObject | None = None,
        account: ServiceAccountRef | None = None,
        proxy: str = "",
    ) -> Credentials | None:
        """v0.31 mode: credentials for ``image`` from its host's cloud, or None (anonymous).

        ``provider`` is ``spec.provider`` (empty means ``generic``), ``image`` is
        ``spec.image`` as written, ``registry`` its parsed registry. ``account`` logs in
        as that ServiceAccount instead of the controller (object-level workload identity;
        its failures keep Flux v1.2's words: ``CloudCredentialsError``). ``identity`` only
        separates cache entries. A failed login of the controller raises ``ProviderError``.
        """
        host = login_host(image=image, registry=registry)
        cloud = select_provider(spec_provider=provider, host=host, autologin=self._autologin)
        if cloud is None:
            return None
        registry_input = legacy_registry_input(cloud, image=image, host=host)
        try:
            found = await self._artifact(cloud, registry_input, image=image, latest=False,
                                         involved=involved, account=account, proxy=proxy,
                                         extra=identity)
        except CloudCredentialsError as err:
            if account is None:
                raise err.legacy() from None
            raise
        return found

    async def artifact_credentials(
        self,
        *,
        provider: str,
        image: str,
        involved: InvolvedObject | None = None,
        account: ServiceAccountRef | None = None,
        proxy: str = "",
    ) -> Credentials:
        """Flux v1.2: credentials from ``provider``'s cloud for ``image``, whose host must
        belong to it (``invalid AWS registry: …`` otherwise)."""
        try:
            registry_input = parse_artifact_repository(provider, image)
        except RegistryMismatchError as err:
            raise CloudCredentialsError(str(err), cloud=provider, cause=str(err)) from None
        return await self._artifact(provider, registry_input, image=image, latest=True,
                                    involved=involved, account=account, proxy=proxy)

    def forget(self, *, provider: str, image: str, registry: str, identity: str = "") -> None:
        """Drop the registry credentials these v0.31 arguments would use (the registry
        refused them); the access token stays."""
        host = login_host(image=image, registry=registry)
        cloud = select_provider(spec_provider=provider, host=host, autologin=self._autologin)
        if cloud is None:
            return
        registry_input = legacy_registry_input(cloud, image=image, host=host)
        options = _options(cloud, registry_input, latest=False, proxy="")
        access = _access_key(cloud, _Identity(None, None), options, extra=identity)
        self._cache.forget(_registry_key(access, registry_input))

    async def _artifact(self, cloud: str, registry_input: str, *, image: str, latest: bool,
                        involved: InvolvedObject | None, account: ServiceAccountRef | None,
                        proxy: str, extra: str = "") -> Credentials:
        plugin = self._plugins[cloud]
        options = _options(cloud, registry_input, latest=latest, proxy=proxy)
        who = (await self._service_account(plugin, cloud, account) if account is not None
               else _Identity(None, None))
        access_key = _access_key(cloud, who, options, extra=extra)

        async def access_token() -> Expiring[object]:
            return await self._access_token(plugin, cloud, who, options)

        token = await self._cache.get_or_fetch(access_key, access_token, involved=involved)

        async def registry_credentials() -> Expiring[Credentials]:
            log.info(_LOGIN_MESSAGES[cloud], image)
            try:
                return await plugin.registry_credentials(registry_input, token, options)
            except ProviderError as err:
                raise CloudCredentialsError(
                    f"failed to create artifact registry credentials: {err.cause}",
                    cloud=cloud, cause=err.cause) from None

        found = await self._cache.get_or_fetch(_registry_key(access_key, registry_input),
                                               registry_credentials, involved=involved,
                                               provider=cloud)
        return found.value

    async def _service_account(self, plugin: CloudProvider, cloud: str,
                               ref: ServiceAccountRef) -> _Identity:
        """The ServiceAccount, its audiences and the cloud identity its annotations name."""
        if self._accounts is None:
            raise CloudCredentialsError(
                f"{_ACCESS_TOKEN}no Kubernetes client to read service account '{ref}'",
                cloud=cloud, cause="no Kubernetes client")
        try:
            account = await self._accounts.get_service_account(ref.namespace, ref.name)
        except NotFoundError:
            # Flux reads ServiceAccounts through controller-runtime's cache, whose NotFound
            # names the kind: 'ServiceAccount "x" not found'.
            cause = (DEFAULT_SERVICE_ACCOUNT_NOT_FOUND if ref.default
                     else f'ServiceAccount "{ref.name}" not found')
            raise _access_error(cloud, f"failed to get service account '{ref}': {cause}"
                                ) from None
        except ApiError as err:
            raise _access_error(cloud, f"failed to get service account '{ref}': {err.message}"
                                ) from None
        try:
            audiences = await plugin.audiences(account)
        except ProviderError as err:
            raise _access_error(cloud, f"failed to get provider audience: {err.cause}") from None
        try:
            identity = cloud_identity(cloud, account)
        except IdentityError as err:
            raise _access_error(cloud, "failed to get provider identity from service account "
                                f"'{ref}' annotations: {err}") from None
        return _Identity(account, ref, tuple(audiences), identity)

    async def _access_token(self, plugin: CloudProvider, cloud: str, who: _Identity,
                            options: TokenOptions) -> Expiring[object]:
        if who.account is None or who.ref is None:
            try:
                return await plugin.controller_token(options)
            except ProviderError as err:
                raise _access_error(cloud, "failed to create provider access token for the "
                                    f"controller: {err.cause}", cause=err.cause) from None
        assert self._accounts is not None  # checked when the account was read
        ref = who.ref
        try:
            oidc_token = await self._accounts.create_service_account_token(
                ref.namespace, ref.name, list(who.audiences))
        except ApiError as err:
            raise _access_error(cloud, "failed to create kubernetes token for service account "
                                f"'{ref}': {err.message}") from None
        try:
            return await plugin.service_account_token(oidc_token, who.account, options)
        except ProviderError as err:
            raise _access_error(cloud, "failed to create provider access token for service "
                                f"account '{ref}': {err.cause}", cause=err.cause) from None


def _access_error(cloud: str, detail: str, *, cause: str | None = None) -> CloudCredentialsError:
    return CloudCredentialsError(_ACCESS_TOKEN + detail, cloud=cloud,
                                 cause=detail if cause is None else cause)


def _options(cloud: str, registry_input: str, *, latest: bool, proxy: str) -> TokenOptions:
    """pkg/auth's ``GetAccessTokenOptionsForArtifactRepository``: the ECR region (us-east-1
    for the public gallery), ACR's scope (ARM's of the registry's cloud in v0.31 mode),
    Google's scopes (only cloud-platform in v0.31 mode)."""
    if cloud == AWS:
        region = "us-east-1" if registry_input == PUBLIC_ECR else registry_input
        return TokenOptions(region=region, proxy=proxy)
    if cloud == AZURE:
        scope = ACR_SCOPE if latest else azure_cloud(registry_input).arm_scope
        return TokenOptions(scopes=(scope,), proxy=proxy)
    scopes = GCP_SCOPES if latest else GCP_SCOPES[:1]
    return TokenOptions(scopes=scopes, proxy=proxy)


def _access_key(cloud: str, who: _Identity, options: TokenOptions, *, extra: str = "") -> str:
    """pkg/auth's ``buildAccessTokenCacheKey``."""
    parts = [f"provider={cloud}"]
    if who.audiences:
        parts.append(f"audiences={','.join(who.audiences)}")
    if who.ref is not None:
        parts += [f"providerIdentity={who.identity}", f"serviceAccountName={who.ref.name}",
                  f"serviceAccountNamespace={who.ref.namespace}"]
    if options.scopes:
        parts.append(f"scopes={','.join(options.scopes)}")
    if options.region:
        parts.append(f"stsRegion={options.region}")
    if options.proxy:
        parts.append(f"proxyURL={options.proxy}")
    if extra:
        parts.append(f"identity={extra}")
    return cache_key(*parts)


def _registry_key(access_key: str, registry_input: str) -> str:
    return cache_key(f"accessTokenCacheKey={access_key}",
                     f"artifactRepositoryCacheKey={registry_input}")

