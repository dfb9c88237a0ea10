"""Google GCR / Artifact Registry login: an OAuth2 access token from the default credentials.

google-auth's application default credentials cover what a controller can run as: a
credentials file (``GOOGLE_APPLICATION_CREDENTIALS``, incl. workload identity
federation), and the GCE / GKE metadata server (node service account or GKE workload
identity). The registry accepts the access token as password of user
``oauth2accesstoken``.

Invariants:

* google-auth blocks (``requests``), so discovery and refresh run in a worker thread.
  Discovery is done once per plugin and kept on success; a failed discovery is retried on
  the next login. One lock serialises refreshes, because a google-auth credentials
  object is not safe to refresh from two threads.
* Every login refreshes: the token cache decides when a new token is needed, so a login
  must not hand back the token the cache just declared stale.
* google-auth's metadata errors quote the server's response body; only the text before
  it is kept (``_BODY_MARKERS``).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any, Final

import google.auth
import google.auth.exceptions
import google.auth.transport.requests

from imagereflector.credentials.providers.base import ProviderError, ProviderToken, sanitize
from imagereflector.credentials.providers.classify import GCP
from imagereflector.registry.types import Credentials

DISPLAY: Final = "GCR"
GCR_USERNAME: Final = "oauth2accesstoken"
"""The user name Google registries expect with an access token as password."""
CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
# Where google-auth's metadata errors start quoting the server's answer: "Status: 403
# Response:\n<body>", "Response status: 500\nResponse details:\n<body>", and the first
# characters of an invalid JSON body after "metadata service: ".
_BODY_MARKERS: Final = ("\n", " Response:", " Response details", "metadata service: ")


class GcpLogin:
    """Logs in to Google registries as the controller's Google identity."""

    def __init__(self, *, scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)) -> None:
        self._scopes = scopes
        self._credentials: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``gcp``."""
        return GCP

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """A fresh access token; the same identity serves every Google registry host."""
        token, expiry = await asyncio.to_thread(self._refresh)
        return ProviderToken(
            credentials=Credentials(username=GCR_USERNAME, password=token), expires_at=expiry
        )

    def _refresh(self) -> tuple[str, float | None]:
        """Blocking: discover (once) and refresh the default credentials."""
        with self._lock:
            try:
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=list(self._scopes))
                credentials = self._credentials
                credentials.refresh(google.auth.transport.requests.Request())
            except google.auth.exceptions.GoogleAuthError as err:
                raise ProviderError(DISPLAY, _cause(err)) from None
            token = credentials.token
            if not isinstance(token, str) or not token:
                raise ProviderError(DISPLAY, "no access token from the default credentials")
            return token, _epoch(credentials.expiry)


def _cause(err: BaseException) -> str:
    """The first line of google-auth's innermost message, before any quoted response."""
    return sanitize(_before_body(_innermost_message(err)))


def _innermost_message(err: BaseException) -> str:
    # google-auth wraps errors as RefreshError(TransportError(message, response)); str() of
    # a multi-argument exception is a tuple repr that would carry the response object.
    seen = 0
    while err.args and isinstance(err.args[0], BaseException) and seen < 10:
        err = err.args[0]
        seen += 1
    return err.args[0] if err.args and isinstance(err.args[0], str) else str(err)


def _before_body(text: str) -> str:
    cut = len(text)
    for marker in _BODY_MARKERS:
        index = text.find(marker)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].strip()


def _epoch(expiry: object) -> float | None:
    """google-auth's expiry is a naive UTC datetime."""
    if not isinstance(expiry, datetime):
        return None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return expiry.timestamp()
