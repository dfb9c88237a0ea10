"""The seam every cloud login plugin implements, and the one error they raise.

A plugin turns a cloud identity into registry credentials in Flux v1.2's two steps: an
*access token* (the controller's ambient identity: environment, workload identity,
instance metadata; or an object's ServiceAccount token exchanged with the cloud's STS),
then *registry credentials* made with that token. It does not decide whether it should
run: classification, the autologin flags and pkg/auth's patterns live in ``classify``;
the token cache lives in ``cache``; ``registry`` puts them together. ``login`` (both
steps with the ambient identity) is what v0.31 mode uses.

Invariants:

* ``login`` either returns a ``ProviderToken`` or raises ``ProviderError``; SDK exceptions
  never escape, so callers classify failures by type.
* A ``ProviderError`` message is ``<ECR|ACR|GCR> authentication failed: <cause>`` (the
  contract's wording). The cause is sanitised: tokens the plugin holds are replaced,
  whitespace is collapsed and the text is bounded, and the SDK exception is not chained
  (``from None``), so a logged traceback cannot carry a response body or a token either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from imagereflector.credentials.providers.cache import Expiring
from imagereflector.registry.types import Credentials

MAX_CAUSE_CHARS: Final = 512
"""Longest cause text kept in a ``ProviderError`` (SDK messages can run to pages)."""

REDACTED: Final = "<redacted>"
_WHITESPACE: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ProviderToken:
    """Credentials from a cloud login and when they stop working.

    ``expires_at`` is in seconds since the epoch; None when the cloud did not say, which
    the cache treats as "do not reuse".
    """

    credentials: Credentials
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class TokenOptions:
    """What an access token is asked for: the STS ``region`` (AWS), the ``scopes``
    (Azure, GCP) and the object's ``proxy`` URL (without credentials) when it has one."""

    region: str = ""
    scopes: tuple[str, ...] = ()
    proxy: str = ""


Account = Mapping[str, Any]
"""A ServiceAccount as the API returns it."""


class CloudProvider(Protocol):
    """Flux v1.2's steps for one cloud; every method raises ``ProviderError`` only."""

    @property
    def name(self) -> str:
        """``aws``, ``azure`` or ``gcp``."""
        ...

    async def controller_token(self, options: TokenOptions) -> Expiring[object]:
        """An access token of the controller's own (ambient) identity."""
        ...

    async def audiences(self, account: Account) -> list[str]:
        """The audiences a token of ``account`` must carry for this cloud's STS."""
        ...

    async def service_account_token(self, oidc_token: str, account: Account,
                                    options: TokenOptions) -> Expiring[object]:
        """Exchange ``account``'s Kubernetes token for an access token of the identity its
        annotations name."""
        ...

    async def registry_credentials(self, registry_input: str, token: Expiring[object],
                                   options: TokenOptions) -> Expiring[Credentials]:
        """Registry credentials made with ``token`` for ``registry_input`` (the ECR region or
        ``public.ecr.aws``, the ACR host, or ``gcp``)."""
        ...


class ProviderLogin(Protocol):
    """A cloud login plugin (AWS ECR, Azure ACR, Google GCR/Artifact Registry)."""

    @property
    def name(self) -> str:
        """The ``spec.provider`` value this plugin serves: ``aws``, ``azure`` or ``gcp``."""
        ...

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """Log in for ``registry`` (the classified host) on behalf of ``spec.image``.

        Raises ``ProviderError`` on any failure.
        """
        ...


class ProviderError(Exception):
    """A cloud login failed; the reconciler reports it as ``AuthenticationFailed``."""

    def __init__(self, provider: str, cause: str) -> None:
        super().__init__(f"{provider} authentication failed: {cause}")
        self.provider = provider
        self.cause = cause


def sanitize(text: str, *, secrets: Iterable[str] = (), limit: int = MAX_CAUSE_CHARS) -> str:
    """``text`` without ``secrets``, on one line, at most ``limit`` characters.

    Longer secrets are replaced first so a secret containing a shorter one is not left
    half visible.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
