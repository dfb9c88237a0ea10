"""Manifest digests for digest reflection, reached with the repository's own access.

An ImagePolicy never has credentials of its own: the digest of its chosen tag is read
with the referenced ImageRepository's credentials, TLS material and proxy, resolved the
same way a scan resolves them (and from the repository's namespace only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from imagereflector.api.duration import SECOND
from imagereflector.api.imagerepository import ImageRepository
from imagereflector.credentials.providers.cache import InvolvedObject
from imagereflector.credentials.resolver import CredentialResolver
from imagereflector.registry.reference import ImageReference, parse_image_reference
from imagereflector.registry.types import Credentials, ProxyConfig, TLSConfig


class ManifestHead(Protocol):
    """The part of the registry client digest reflection needs."""

    async def head_manifest(
        self,
        ref: ImageReference,
        tag: str,
        *,
        credentials: Credentials | None = None,
        tls: TLSConfig | None = None,
        proxy: ProxyConfig | None = None,
        timeout: float,  # noqa: ASYNC109 - the client spreads one deadline over its retries
    ) -> str:
        """The ``Docker-Content-Digest`` of ``tag``."""
        ...


class RepositoryDigestResolver:
    """Resolves ``tag`` of a repository object to its manifest digest."""

    def __init__(self, *, resolver: CredentialResolver, registry: ManifestHead) -> None:
        self._resolver = resolver
        self._registry = registry

    async def digest(self, repository: Mapping[str, Any], tag: str, *,
                     policy_name: str = "", policy_namespace: str = "") -> str:
        """``sha256:…`` of the tag, read with the repository's access. A cloud token
        lookup is counted for the ImagePolicy ``policy_namespace/policy_name`` when given
        (``gotk_token_cache_events_total{kind="ImagePolicy"}``, as Flux v1.2 does)."""
        repo = ImageRepository.model_validate(repository)
        namespace = str((repository.get("metadata") or {}).get("namespace", ""))
        ref = parse_image_reference(repo.spec.image, insecure=repo.spec.insecure)
        involved = (InvolvedObject("ImagePolicy", policy_name, policy_namespace)
                    if policy_name else None)
        access = await self._resolver.resolve(namespace=namespace, spec=repo.spec, ref=ref,
                                              involved=involved)
        return await self._registry.head_manifest(
            ref, tag, credentials=access.credentials, tls=access.tls, proxy=access.proxy,
            timeout=repo.spec.timeout_ns() / SECOND)
