"""The one entry point for cloud registry logins: classify, maybe log in, cache.

``ProviderRegistry.credentials`` answers, for one ImageRepository without ``secretRef``:
"which credentials does the ambient cloud identity give for this image, if any?" None
means anonymous access (a generic host, or a cloud host whose login is not switched on:
the contract's ignored ``registry provider not configured``). A failed login raises
``ProviderError`` (reason ``AuthenticationFailed``).

Invariants:

* One instance per process: its cache is what makes tokens outlive a reconcile (A9).
* Plugins are looked up by the name ``classify.select_provider`` returns; a missing
  plugin is a wiring bug and fails loudly at construction, not at the first scan.
* Nothing here logs a token; log lines name the provider and the image only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Final

from imagereflector.credentials.providers.base import ProviderLogin, ProviderToken
from imagereflector.credentials.providers.cache import (
    NULL_CACHE_OBSERVER,
    CacheKey,
    TokenCache,
    TokenCacheObserver,
    WallClock,
)
from imagereflector.credentials.providers.classify import (
    CLOUDS,
    AutologinFlags,
    login_host,
    select_provider,
)
from imagereflector.registry.limiter import SystemClock
from imagereflector.registry.types import Credentials

log = logging.getLogger("imagereflector.credentials.providers")

SYSTEM_CLOCK: Final = SystemClock()
"""The wall clock ``default`` uses."""

_LOGIN_MESSAGES: Final = {
    "aws": "logging in to AWS ECR for %s",
    "azure": "logging in to Azure ACR for %s",
    "gcp": "logging in to GCP GCR for %s",
}


class _LazyLogin:
    """A plugin whose module (and cloud SDK) is imported on its first login.

    boto3 and azure-identity cost tens of MiB each at import; a controller that never
    scans a cloud registry should not pay for them.
    """

    def __init__(self, name: str, module: str, factory: str) -> None:
        self.name = name
        self._module = module
        self._factory = factory
        self._plugin: ProviderLogin | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> ProviderLogin:
        build: Callable[[], ProviderLogin] = getattr(
            importlib.import_module(self._module), self._factory)
        return build()

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """Import the plugin off the event loop once, then delegate."""
        async with self._lock:
            if self._plugin is None:
                self._plugin = await asyncio.to_thread(self._load)
        return await self._plugin.login(registry=registry, image=image)


class ProviderRegistry:
    """Cloud logins for ImageRepositories, behind one token cache."""

    def __init__(
        self,
        *,
        plugins: Iterable[ProviderLogin],
        autologin: AutologinFlags,
        cache: TokenCache,
    ) -> None:
        self._plugins = {plugin.name: plugin for plugin in plugins}
        missing = sorted(set(CLOUDS) - set(self._plugins))
        if missing:
            raise ValueError(f"no login plugin for provider(s): {', '.join(missing)}")
        self._autologin = autologin
        self._cache = cache

    @classmethod
    def default(
        cls,
        *,
        autologin: AutologinFlags,
        observer: TokenCacheObserver = NULL_CACHE_OBSERVER,
        clock: WallClock = SYSTEM_CLOCK,
    ) -> ProviderRegistry:
        """The real AWS, Azure and GCP plugins on a cache with the system clock."""
        cache = TokenCache(clock=clock, observer=observer)
        plugins = (
            _LazyLogin("aws", "imagereflector.credentials.providers.aws", "AwsLogin"),
            _LazyLogin("azure", "imagereflector.credentials.providers.azure", "AzureLogin"),
            _LazyLogin("gcp", "imagereflector.credentials.providers.gcp", "GcpLogin"),
        )
        return cls(plugins=plugins, autologin=autologin, cache=cache)

    async def credentials(
        self, *, provider: str, image: str, registry: str, identity: str = ""
    ) -> Credentials | None:
        """Credentials for ``image`` from its cloud, or None for anonymous access.

        ``provider`` is ``spec.provider`` (empty means ``generic``), ``image`` is
        ``spec.image`` as written, ``registry`` its parsed registry
        (``ImageReference.registry``). ``identity`` names who logs in when that is not the
        controller's own ambient identity; it only separates cache entries.
        Raises ``ProviderError`` when the login itself fails.
        """
        key = self._key(provider=provider, image=image, registry=registry, identity=identity)
        if key is None:
            return None
        plugin = self._plugins[key.provider]

        async def login() -> ProviderToken:
            log.info(_LOGIN_MESSAGES[key.provider], image)
            return await plugin.login(registry=key.registry, image=image)

        return await self._cache.get(key, login)

    def forget(self, *, provider: str, image: str, registry: str, identity: str = "") -> None:
        """Drop the cached token these arguments would use (after the registry refused it)."""
        key = self._key(provider=provider, image=image, registry=registry, identity=identity)
        if key is not None:
            self._cache.forget(key)

    def _key(self, *, provider: str, image: str, registry: str, identity: str) -> CacheKey | None:
        host = login_host(image=image, registry=registry)
        cloud = select_provider(spec_provider=provider, host=host, autologin=self._autologin)
        if cloud is None:
            return None
        return CacheKey(provider=cloud, registry=host, identity=identity)
