"""The seam every cloud login plugin implements, and the one error they raise.

A plugin turns the controller's ambient cloud identity (environment, workload identity,
instance metadata) into registry credentials for one registry host. It does not decide
whether it should run: classification and the autologin flags live in ``classify``; the
token cache lives in ``cache``; ``registry`` puts them together.

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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

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
