"""Google GCR / Artifact Registry login: an OAuth2 access token is the registry password.

The controller's identity is google-auth's application default credentials: a
credentials file (``GOOGLE_APPLICATION_CREDENTIALS``, incl. workload identity
federation), or the GCE / GKE metadata server (node service account or GKE workload
identity). An object's ServiceAccount (object-level workload identity) is exchanged at
Google's STS (``urn:ietf:params:oauth:grant-type:token-exchange``) for a federated token,
as Flux v1.2 does:

* the audience is the workload identity provider of the
  ``gcp.auth.fluxcd.io/workload-identity-provider`` annotation (clusters outside GKE), or
  on GKE the cluster's own: the Kubernetes token is asked for ``<project>.svc.id.goog``
  and STS for ``identitynamespace:<project>.svc.id.goog:<cluster URL>``, read from the
  metadata server (``GCE_METADATA_HOST``, read when needed);
* with the ``iam.gke.io/gcp-service-account`` annotation, the federated token then
  impersonates that Google service account (IAM Credentials ``generateAccessToken``);
  without it, the federated token is used directly.

The registry accepts the access token as password of user ``oauth2accesstoken``.

Invariants:

* google-auth blocks (``requests``), so discovery, refresh and exchange run in a worker
  thread. Controller discovery is done once per scope set and kept on success; a failed
  discovery is retried on the next login. One lock serialises refreshes, because a
  google-auth credentials object is not safe to refresh from two threads.
* Every login refreshes: the token cache decides when a new token is needed, so a login
  must not hand back the token the cache just declared stale.
* google-auth's errors quote the server's response body; only the text before it is
  kept (``_BODY_MARKERS``), and the Kubernetes token is never part of a message.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import google.auth
import google.auth.exceptions
import google.auth.transport.requests
from google.auth import identity_pool

from imagereflector.credentials.providers.base import (
    Account,
    ProviderError,
    ProviderToken,
    TokenOptions,
    sanitize,
)
from imagereflector.credentials.providers.cache import Expiring
from imagereflector.credentials.providers.classify import (
    GCP,
    GCP_SCOPES,
    IdentityError,
    gcp_service_account_email,
    gcp_workload_identity_provider_audience,
)
from imagereflector.registry.types import Credentials

DISPLAY: Final = "GCR"
GCR_USERNAME: Final = "oauth2accesstoken"
"""The user name Google registries expect with an access token as password."""
CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
STS_TOKEN_URL: Final = "https://sts.googleapis.com/v1/token"
STS_INTROSPECT_URL: Final = "https://sts.googleapis.com/v1/introspect"
IAM_CREDENTIALS_URL: Final = "https://iamcredentials.googleapis.com"
JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"
METADATA_HOST: Final = "metadata.google.internal"
# Where google-auth's metadata errors start quoting the server's answer: "Status: 403
# Response:\n<body>", "Response status: 500\nResponse details:\n<body>", and the first
# characters of an invalid JSON body after "metadata service: ".
_BODY_MARKERS: Final = ("\n", " Response:", " Response details", "metadata service: ")


class _StaticSubject(identity_pool.SubjectTokenSupplier):
    """Hands google-auth the Kubernetes token it is to exchange."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_subject_token(self, context: Any, request: Any) -> str:
        """The token (the same for every call)."""
        return self._token


class GkeMetadata:
    """The GKE cluster's project, location and name, read once from the metadata server."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._loaded: tuple[str, str, str] | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> str:
        """``<project>.svc.id.goog``: the audience of the Kubernetes token on GKE."""
        project, _, _ = await self._load()
        return f"{project}.svc.id.goog"

    async def sts_audience(self) -> str:
        """``identitynamespace:<pool>:<cluster URL>``: the audience STS is asked for."""
        project, location, name = await self._load()
        cluster = (f"https://container.googleapis.com/v1/projects/{project}/locations/"
                   f"{location}/clusters/{name}")
        return f"identitynamespace:{project}.svc.id.goog:{cluster}"

    async def _load(self) -> tuple[str, str, str]:
        async with self._lock:
            if self._loaded is None:
                host = os.environ.get("GCE_METADATA_HOST") or METADATA_HOST
                async with aiohttp.ClientSession(timeout=self._timeout) as session:
                    project = await _metadata(session, host, "project/project-id",
                                              "GKE cluster project ID")
                    location = await _metadata(session, host,
                                               "instance/attributes/cluster-location",
                                               "GKE cluster location")
                    name = await _metadata(session, host, "instance/attributes/cluster-name",
                                           "GKE cluster name")
                self._loaded = (project, location, name)
            return self._loaded


async def _metadata(session: aiohttp.ClientSession, host: str, path: str, what: str) -> str:
    """One metadata value; errors in Flux's words (``failed to get <what> from …``)."""
    prefix = f"failed to get {what} from the metadata service"
    try:
        async with session.get(f"http://{host}/computeMetadata/v1/{path}",
                               headers={"Metadata-Flavor": "Google"},
                               allow_redirects=False) as resp:
            text = (await resp.content.read(4096)).decode("utf-8", "replace").strip()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ProviderError(DISPLAY, f"{prefix}: {type(err).__name__}") from None
    if status == 404:
        raise ProviderError(DISPLAY, f'{prefix}: metadata: GCE metadata "{path}" not defined')
    if status != 200:
        raise ProviderError(DISPLAY, f"{prefix}: metadata: unexpected status {status}")
    if not text:
        raise ProviderError(DISPLAY, f"{prefix}: empty value")
    return text


class GcpLogin:
    """Logs in to Google registries as the controller's or an object's Google identity.

    ``sts_url``, ``iam_url`` and ``metadata`` default to Google's; tests point them at
    local fakes.
    """

    def __init__(
        self,
        *,
        scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,),
        sts_url: str = STS_TOKEN_URL,
        iam_url: str = IAM_CREDENTIALS_URL,
        metadata: GkeMetadata | None = None,
    ) -> None:
        self._scopes = scopes
        self._sts_url = sts_url
        self._iam_url = iam_url.rstrip("/")
        self._metadata = metadata or GkeMetadata()
        self._credentials: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``gcp``."""
        return GCP

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """A fresh access token; the same identity serves every Google registry host."""
        token, expiry = await asyncio.to_thread(self._refresh, self._scopes)
        return ProviderToken(
            credentials=Credentials(username=GCR_USERNAME, password=token), expires_at=expiry
        )

    async def controller_token(self, options: TokenOptions) -> Expiring[object]:
        """An access token of the default credentials for ``options.scopes``."""
        token, expiry = await asyncio.to_thread(self._refresh, options.scopes or self._scopes)
        return Expiring(token, expiry)

    async def audiences(self, account: Account) -> list[str]:
        """The workload identity provider's audience, or GKE's identity pool."""
        try:
            audience = gcp_workload_identity_provider_audience(dict(account))
        except IdentityError as err:
            raise ProviderError(DISPLAY, str(err)) from None
        return [audience or await self._metadata.pool()]

    async def service_account_token(self, oidc_token: str, account: Account,
                                    options: TokenOptions) -> Expiring[object]:
        """STS exchange of ``oidc_token``, then impersonation when the account names a
        Google service account."""
        try:
            audience = gcp_workload_identity_provider_audience(dict(account))
            email = gcp_service_account_email(dict(account))
        except IdentityError as err:
            raise ProviderError(DISPLAY, str(err)) from None
        if not audience:
            audience = await self._metadata.sts_audience()
        impersonation = (f"{self._iam_url}/v1/projects/-/serviceAccounts/{email}"
                         ":generateAccessToken") if email else None
        credentials = identity_pool.Credentials(  # type: ignore[no-untyped-call]
            audience=audience, subject_token_type=JWT_TOKEN_TYPE, token_url=self._sts_url,
            subject_token_supplier=_StaticSubject(oidc_token),
            service_account_impersonation_url=impersonation,
            token_info_url=None if email else STS_INTROSPECT_URL,
            scopes=list(options.scopes or GCP_SCOPES))
        token, expiry = await asyncio.to_thread(self._refresh_exchange, credentials,
                                                oidc_token)
        return Expiring(token, expiry)

    async def registry_credentials(self, registry_input: str, token: Expiring[object],
                                   options: TokenOptions) -> Expiring[Credentials]:
        """User ``oauth2accesstoken`` with the access token; it expires with the token."""
        if not isinstance(token.value, str):
            raise ProviderError(DISPLAY, "the access token is not a bearer token")
        return Expiring(Credentials(username=GCR_USERNAME, password=token.value),
                        token.expires_at)

    def _refresh(self, scopes: Sequence[str]) -> tuple[str, float | None]:
        """Blocking: discover (once per scope set) and refresh the default credentials."""
        key = tuple(scopes)
        with self._lock:
            try:
                credentials = self._credentials.get(key)
                if credentials is None:
                    credentials, _ = google.auth.default(scopes=list(key))
                    self._credentials[key] = credentials
                credentials.refresh(google.auth.transport.requests.Request())
            except google.auth.exceptions.GoogleAuthError as err:
                raise ProviderError(DISPLAY, _cause(err)) from None
            token = credentials.token
            if not isinstance(token, str) or not token:
                raise ProviderError(DISPLAY, "no access token from the default credentials")
            return token, _epoch(credentials.expiry)

    @staticmethod
    def _refresh_exchange(credentials: Any, oidc_token: str) -> tuple[str, float | None]:
        """Blocking: the STS exchange (and impersonation) of one ServiceAccount token."""
        try:
            credentials.refresh(google.auth.transport.requests.Request())
        except (google.auth.exceptions.GoogleAuthError, ValueError) as err:
            raise ProviderError(DISPLAY, sanitize(_cause(err), secrets=[oidc_token])) from None
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise ProviderError(DISPLAY, "no access token from the token exchange")
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
    return text[:cut].strip().rstrip(":").strip()


def _epoch(expiry: object) -> float | None:
    """google-auth's expiry is a naive UTC datetime."""
    if not isinstance(expiry, datetime):
        return None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return expiry.timestamp()
