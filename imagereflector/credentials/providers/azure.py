"""Azure ACR login: an Entra ID access token, exchanged for an ACR refresh token.

The controller's identity is azure-identity's ``DefaultAzureCredential`` (aio) limited to
what a controller can have: environment service principal, workload identity
(``AZURE_FEDERATED_TOKEN_FILE``), managed identity and the Azure CLI, as azidentity's
chain in v0.31; desktop-only sources (VS Code, PowerShell, azd, shared cache) are off.
An object's ServiceAccount (object-level workload identity) logs in as the app of its
``azure.workload.identity/tenant-id`` and ``client-id`` annotations, with a Kubernetes
token for ``api://AzureADTokenExchange`` as client assertion (azure-identity's
``ClientAssertionCredential``; the authority is ``AZURE_AUTHORITY_HOST`` or Entra ID's).
In v0.31 mode the scope is ARM's and follows the registry's cloud
(``classify.azure_cloud``); Flux v1.2 asks for ACR's own audience. The exchange is
``POST https://<registry>/oauth2/exchange`` with ``grant_type=access_token``,
``service=<registry>`` and ``access_token=<ARM token>``; the answer's ``refresh_token``
is the password of user ``00000000-0000-0000-0000-000000000000``.

Invariants:

* Everything is async: the aio credential and aiohttp. The exchange has a total timeout,
  reads at most ``max_body`` bytes and never follows redirects (the ARM token is only
  ever posted to the registry itself).
* A credential is opened and closed per login, so it reads the environment as it is now
  and leaves no session behind; the token cache makes logins rare.
* Error texts carry status codes, ACR error codes and azure-identity's per-credential
  summaries, never a response body or a token.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp
from azure.core.exceptions import AzureError
from azure.identity.aio import ClientAssertionCredential, DefaultAzureCredential

from imagereflector.credentials.providers.base import (
    MAX_CAUSE_CHARS,
    Account,
    ProviderError,
    ProviderToken,
    TokenOptions,
    sanitize,
)
from imagereflector.credentials.providers.cache import Expiring
from imagereflector.credentials.providers.classify import (
    AZURE,
    AZURE_AUDIENCE,
    IdentityError,
    azure_cloud,
    azure_identity,
)
from imagereflector.registry.errors import InvalidResponseError, decode_json
from imagereflector.registry.types import Credentials

DISPLAY: Final = "ACR"
ACR_USERNAME: Final = "00000000-0000-0000-0000-000000000000"
"""The user name ACR expects with a refresh token as password."""

_CHAIN: Final = {
    "exclude_shared_token_cache_credential": True,
    "exclude_visual_studio_code_credential": True,
    "exclude_powershell_credential": True,
    "exclude_developer_cli_credential": True,
}
_ERROR_CODE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_CHUNK: Final = 64 * 1024
# Where azure-identity starts quoting a response body in an error message.
_BODY_MARKERS: Final = ('"', "{", "Content:", "Response:", "\n")


def acr_exchange_url(host: str) -> str:
    """Where ACR exchanges an ARM token: ``https://<host>/oauth2/exchange``."""
    return f"https://{host}/oauth2/exchange"


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified (only to schedule renewal); None if absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = decode_json(base64.urlsafe_b64decode(payload), what="token claims")
    except (binascii.Error, ValueError, InvalidResponseError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


class AzureLogin:
    """Logs in to ACR as the controller's Azure identity.

    ``exchange_url`` maps the registry host to its exchange endpoint; the default is the
    real one, tests point it at a local fake (the ``service`` field stays the real host).
    ``assertion_options`` are extra keyword arguments of ``ClientAssertionCredential``
    (tests give an ``authority`` and a ``transport`` that trusts their CA).
    """

    def __init__(
        self,
        *,
        exchange_url: Callable[[str], str] = acr_exchange_url,
        timeout: float = 30.0,
        max_body: int = 1024 * 1024,
        assertion_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._exchange_url = exchange_url
        self._assertion_options = dict(assertion_options or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_seconds = timeout
        self._max_body = max_body

    @property
    def name(self) -> str:
        """``azure``."""
        return AZURE

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """An ACR refresh token for the registry named by ``image``'s first path segment."""
        host = image.split("/", 1)[0]
        arm_token, arm_expiry = await self._arm_token(azure_cloud(host).arm_scope)
        refresh_token = await self._exchange(host, arm_token)
        expires_at = jwt_expiry(refresh_token) or arm_expiry
        return ProviderToken(
            credentials=Credentials(username=ACR_USERNAME, password=refresh_token),
            expires_at=expires_at,
        )

    async def controller_token(self, options: TokenOptions) -> Expiring[object]:
        """An access token of the controller's identity for ``options.scopes``."""
        token, expires_on = await self._arm_token(*options.scopes)
        return Expiring(token, expires_on)

    async def audiences(self, account: Account) -> list[str]:
        """``api://AzureADTokenExchange``."""
        return [AZURE_AUDIENCE]

    async def service_account_token(self, oidc_token: str, account: Account,
                                    options: TokenOptions) -> Expiring[object]:
        """An access token of the annotated app, with ``oidc_token`` as client assertion."""
        try:
            tenant, client = azure_identity(dict(account))
        except IdentityError as err:
            raise ProviderError(DISPLAY, str(err)) from None
        try:
            async with ClientAssertionCredential(
                    tenant, client, lambda: oidc_token, **self._assertion_options) as credential:
                token = await credential.get_token(*options.scopes)
        except (AzureError, ValueError) as err:
            cause = sanitize(identity_error_cause(str(err)), secrets=[oidc_token])
            raise ProviderError(DISPLAY, cause) from None
        return Expiring(token.token, float(token.expires_on))

    async def registry_credentials(self, registry_input: str, token: Expiring[object],
                                   options: TokenOptions) -> Expiring[Credentials]:
        """The ACR refresh token for the host ``registry_input``; it expires when its JWT
        says (a refresh token without one is used once, never cached)."""
        if not isinstance(token.value, str):
            raise ProviderError(DISPLAY, "the access token is not a bearer token")
        refresh_token = await self._exchange(registry_input, token.value)
        return Expiring(Credentials(username=ACR_USERNAME, password=refresh_token),
                        jwt_expiry(refresh_token))

    async def _arm_token(self, *scopes: str) -> tuple[str, float]:
        try:
            async with DefaultAzureCredential(**_CHAIN) as credential:
                token = await credential.get_token(*scopes)
        except AzureError as err:
            raise ProviderError(DISPLAY, identity_error_cause(str(err))) from None
        return token.token, float(token.expires_on)

    async def _exchange(self, host: str, arm_token: str) -> str:
        form = {"grant_type": "access_token", "service": host, "access_token": arm_token}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout, trust_env=True) as session,
                session.post(self._exchange_url(host), data=form, allow_redirects=False) as resp,
            ):
                status = resp.status
                body = await self._read_bounded(resp)
        except TimeoutError:
            raise _exchange_error(f"timed out after {self._timeout_seconds:g}s") from None
        except aiohttp.ClientError as err:
            cause = f"{type(err).__name__}: {err}"
            raise _exchange_error(sanitize(cause, secrets=[arm_token])) from None
        if status != 200:
            codes = _acr_error_codes(body)
            detail = f": errors: {', '.join(codes)}" if codes else ""
            raise _exchange_error(f"unexpected status code {status} from exchange request{detail}")
        try:
            answer = decode_json(body, what="exchange response")
        except InvalidResponseError as err:
            raise _exchange_error(str(err)) from None
        refresh = answer.get("refresh_token") if isinstance(answer, dict) else None
        if not isinstance(refresh, str) or not refresh:
            raise _exchange_error("exchange response has no refresh_token")
        return refresh

    async def _read_bounded(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max_body:
            raise _exchange_error(f"exchange response larger than {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self._max_body:
                raise _exchange_error(f"exchange response larger than {self._max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def identity_error_cause(message: str) -> str:
    """A one-line summary of an azure-identity error, without the bodies it quotes.

    ``DefaultAzureCredential`` lists one ``\t<Credential>: <message>`` line per attempt,
    and a failed attempt's message can quote the identity endpoint's response
    (``Unexpected response "{…}"`` followed by ``Content: …``). Each attempt is reduced to
    ``unavailable`` or to its text before the first quote, brace or ``Content:``.
    """
    lines = message.splitlines()
    attempts = [line.strip() for line in lines if line.startswith("\t")]
    if not attempts:
        return sanitize(_before_body(message))
    summaries = []
    for attempt in attempts:
        name, _, text = attempt.partition(": ")
        brief = "unavailable" if "authentication unavailable" in text else _before_body(text)
        summaries.append(f"{name}: {brief}")
    return sanitize(f"{lines[0]} {'; '.join(summaries)}", limit=4 * MAX_CAUSE_CHARS)


def _before_body(text: str) -> str:
    cut = len(text)
    for marker in _BODY_MARKERS:
        index = text.find(marker)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].strip().rstrip(":").strip()


def _exchange_error(cause: str) -> ProviderError:
    return ProviderError(DISPLAY, f"error exchanging token: {cause}")


def _acr_error_codes(body: bytes) -> list[str]:
    """The ``code`` of each ACR error in a refusal; messages are dropped, they may echo input."""
    try:
        answer: Any = decode_json(body, what="exchange refusal")
    except InvalidResponseError:
        return []
    errors = answer.get("errors") if isinstance(answer, dict) else answer
    if not isinstance(errors, list):
        return []
    codes = [e.get("code") for e in errors[:5] if isinstance(e, dict)]
    return [c for c in codes if isinstance(c, str) and _ERROR_CODE.match(c)]
