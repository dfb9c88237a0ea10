"""Loopback fakes of the cloud identity endpoints, the only parts of a login that are faked.

* ``EntraFake``: Microsoft Entra ID's token endpoint for workload identity
  (``POST /<tenant>/oauth2/v2.0/token`` with a client assertion), served over https by a
  test CA because azure-identity refuses a plain-http authority.
* ``AppServiceMsiFake``: the App Service managed identity endpoint (plain http,
  ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``), so in-process tests can reach
  ``DefaultAzureCredential`` without touching the process's TLS trust.
* ``AcrExchangeFake``: the registry side of ACR, ``POST /oauth2/exchange``. It only
  accepts ARM tokens one of the identity fakes issued, for the expected ``service``.
* ``GceMetadataFake``: the GCE/GKE metadata server (``Metadata-Flavor: Google``), with
  the GKE cluster attributes object-level workload identity reads.
* ``GoogleStsFake``: Google's STS token exchange (``POST /v1/token``) and IAM
  Credentials' ``generateAccessToken`` (impersonation), for object-level workload identity.
* ``AwsStsFront``: a front of moto's STS that checks the web identity token of
  ``AssumeRoleWithWebIdentity`` before moto answers (moto checks none).

Object-level workload identity fakes take a ``check`` of the Kubernetes token they are
given (``tests.credentials.kubetokens``): the token must be the real API server's, for
the cloud's audience and the ServiceAccount's subject, or the fake refuses it as the
cloud would.

How the tokens become registry logins: the real ``docker-registry`` is started with an
htpasswd user whose password *is* the token the fake hands out (ACR refresh token, GCP
access token; for ECR, the ``AWS:<account>-auth-token`` moto issues). A tag listing that
succeeds therefore proves the credentials the plugin produced are exactly the issued
ones; a wrong or anonymous login gets 401 from the real registry.

Invariants: loopback only; every request is recorded; the tokens that reach a registry
(ACR refresh token, GCP access token) are random but fixed per fake instance, so the
registry can be set up to accept them before they are handed out, and tests can assert
they never surface in messages or logs. A scripted failure applies to every later
request whose path contains its ``match`` until ``fail_with`` is called again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from tests.fakes.certs import CertAuthority
from tests.fakes.registry import LoopbackApp

ACR_USER = "00000000-0000-0000-0000-000000000000"
GCR_USER = "oauth2accesstoken"
TOKEN_LIFETIME = 3600


@dataclass(frozen=True, slots=True)
class Failure:
    """A scripted answer: status and raw body; status 0 hangs instead of answering."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(slots=True)
class Recorded:
    """One request a fake received (header names lower-cased)."""

    method: str
    path_qs: str
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)


def fake_jwt(*, exp: float) -> str:
    """An unsigned JWT-shaped token with an ``exp`` claim and a random signature part.

    Compact on purpose: the registry's htpasswd is bcrypt, which takes at most 72 bytes.
    """

    def part(obj: object) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': int(exp)})}.{secrets.token_hex(4)}"


class _Fake:
    """Shared plumbing: a ``LoopbackApp``, a request log, a scripted failure."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._server = LoopbackApp(app, ssl_context=ssl_context)
        self.requests: list[Recorded] = []
        self.failure: Failure | None = None
        self.failure_match = ""

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return self._server.url

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return self._server.host

    async def start(self) -> None:
        """Start serving."""
        await self._server.start()

    async def close(self) -> None:
        """Stop serving."""
        await self._server.close()

    def fail_with(self, failure: Failure | None, *, match: str = "") -> None:
        """Answer following requests whose path contains ``match`` with ``failure``.

        None behaves normally again.
        """
        self.failure = failure
        self.failure_match = match

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = {k: v[0] for k, v in parse_qs(await request.text()).items()}
        self.requests.append(
            Recorded(request.method, request.path_qs,
                     {k.lower(): v for k, v in request.headers.items()}, form)
        )
        if self.failure is not None and self.failure_match in request.path:
            if self.failure.status == 0:
                await asyncio.Event().wait()  # hang until the server closes
            return web.Response(
                status=self.failure.status,
                body=self.failure.body,
                content_type=self.failure.content_type,
            )
        return await self.handle(request, form)

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """Answer one request (subclasses)."""
        raise NotImplementedError


class ArmTokens:
    """The ARM access tokens issued by the identity fakes, for the exchange fake to check."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def issue(self) -> str:
        """A new random ARM token."""
        token = f"arm-{secrets.token_hex(16)}"
        self.issued.append(token)
        return token


class EntraFake(_Fake):
    """Entra ID's v2.0 token endpoint for federated (workload identity) client assertions."""

    def __init__(
        self, *, ca: CertAuthority, cert_dir: Path, tenant: str, client_id: str,
        assertion: str | Callable[[str], bool], tokens: ArmTokens,
    ) -> None:
        pair = ca.issue(cert_dir, "entra")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pair.cert_file, pair.key_file)
        super().__init__(ssl_context=context)
        self.tenant = tenant
        self.client_id = client_id
        self.assertion = assertion
        self.tokens = tokens

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """Issue an ARM token for a matching assertion; AADSTS-style errors otherwise."""
        if request.method != "POST" or request.path != f"/{self.tenant}/oauth2/v2.0/token":
            return web.json_response({"error": "not_found"}, status=404)
        given = form.get("client_assertion", "")
        accepted = (self.assertion(given) if callable(self.assertion)
                    else given == self.assertion)
        valid = (
            form.get("grant_type") == "client_credentials"
            and form.get("client_id") == self.client_id
            and accepted
        )
        if not valid:
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS700016: bad client"},
                status=400,
            )
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "access_token": self.tokens.issue(),
                "scope": form.get("scope", ""),
            }
        )


class AppServiceMsiFake(_Fake):
    """The App Service managed identity endpoint (``IDENTITY_ENDPOINT``), plain http."""

    def __init__(self, *, header: str, tokens: ArmTokens) -> None:
        super().__init__()
        self.header = header
        self.tokens = tokens

    @property
    def endpoint(self) -> str:
        """What ``IDENTITY_ENDPOINT`` is set to."""
        return f"{self.url}/msi/token"

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """Issue an ARM token when the identity header matches."""
        if request.path != "/msi/token" or request.headers.get("X-IDENTITY-HEADER") != self.header:
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response(
            {
                "access_token": self.tokens.issue(),
                "expires_on": str(int(time.time()) + TOKEN_LIFETIME),
                "resource": request.query.get("resource", ""),
                "token_type": "Bearer",
            }
        )


class AcrExchangeFake(_Fake):
    """ACR's ``/oauth2/exchange``: ARM token in, refresh token (the registry password) out."""

    def __init__(
        self, *, service: str, tokens: ArmTokens, ssl_context: ssl.SSLContext | None = None,
        lifetime: float = 3 * 3600,
    ) -> None:
        super().__init__(ssl_context=ssl_context)
        self.service = service
        self.tokens = tokens
        self.refresh_token = fake_jwt(exp=time.time() + lifetime)

    def exchange_url(self, host: str) -> str:
        """Stands in for ``https://<host>/oauth2/exchange``, whatever the host."""
        return f"{self.url}/oauth2/exchange"

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """The refresh token for a known ARM token and the expected service."""
        if request.method != "POST" or request.path != "/oauth2/exchange":
            return web.json_response({"errors": [{"code": "NOT_FOUND"}]}, status=404)
        if form.get("grant_type") != "access_token" or form.get("service") != self.service:
            return web.json_response({"errors": [{"code": "BAD_REQUEST"}]}, status=400)
        if form.get("access_token") not in self.tokens.issued:
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "bad token"}]}, status=401
            )
        return web.json_response({"refresh_token": self.refresh_token})


class GceMetadataFake(_Fake):
    """The GCE metadata server as google-auth's compute-engine credentials use it."""

    def __init__(self, *, email: str = "irc@test-project.iam.gserviceaccount.com",
                 location: str = "europe-west1", cluster: str = "fleet-1") -> None:
        super().__init__()
        self.email = email
        self.token = f"ya29.{secrets.token_hex(24)}"
        self.attributes = {"cluster-location": location, "cluster-name": cluster}

    @property
    def token_requests(self) -> int:
        """How many access tokens were asked for."""
        return sum(1 for r in self.requests if r.path_qs.split("?")[0].endswith("/token"))

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """Ping, project id, service account info and tokens; all need the flavor header."""
        headers = {"Metadata-Flavor": "Google"}
        if request.path == "/":
            return web.Response(text="", headers=headers)
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="missing Metadata-Flavor", headers=headers)
        base = "/computeMetadata/v1/"
        path = request.path
        if path == f"{base}project/project-id":
            return web.Response(text="test-project", headers=headers)
        attribute = path.removeprefix(f"{base}instance/attributes/")
        if attribute in self.attributes:
            return web.Response(text=self.attributes[attribute], headers=headers)
        accounts = f"{base}instance/service-accounts/"
        # google-auth asks for "default" first, then by the e-mail it learnt.
        account = path.removeprefix(accounts).split("/", 1)[0]
        known = account in ("default", self.email) and path.startswith(accounts)
        if known and path == f"{accounts}{account}/":
            info = {"aliases": ["default"], "email": self.email,
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
            return web.json_response(info, headers=headers)
        if known and path == f"{accounts}{account}/token":
            body = {"access_token": self.token, "expires_in": TOKEN_LIFETIME,
                    "token_type": "Bearer"}
            return web.json_response(body, headers=headers)
        return web.Response(status=404, text="not found", headers=headers)


class GoogleStsFake(_Fake):
    """Google STS (``POST /v1/token``, token exchange) and IAM Credentials
    (``POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken``) on one server."""

    def __init__(self, *, check: Callable[[str, str], bool], email: str) -> None:
        super().__init__()
        self.check = check
        self.email = email
        self.federated = f"federated-{secrets.token_hex(12)}"
        self.impersonated = f"ya29.impersonated-{secrets.token_hex(12)}"
        self.exchanges: list[dict[str, str]] = []

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """Exchange a checked subject token; impersonate with a federated token."""
        if request.method == "POST" and request.path == "/v1/token":
            self.exchanges.append(form)
            if (form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
                    or form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"
                    or not self.check(form.get("subject_token", ""), form.get("audience", ""))):
                return web.json_response({"error": "invalid_grant",
                                          "error_description": "bad subject token"}, status=400)
            return web.json_response({
                "access_token": self.federated, "token_type": "Bearer", "expires_in": 3600,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
        wanted = f"/v1/projects/-/serviceAccounts/{self.email}:generateAccessToken"
        if request.method == "POST" and request.path == wanted:
            if request.headers.get("Authorization") != f"Bearer {self.federated}":
                return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED"}},
                                         status=401)
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return web.json_response({"accessToken": self.impersonated, "expireTime": expires})
        return web.json_response({"error": {"code": 404, "status": "NOT_FOUND"}}, status=404)


class AwsStsFront(_Fake):
    """Checks ``AssumeRoleWithWebIdentity``'s token, then lets moto answer the request."""

    def __init__(self, *, moto: str, check: Callable[[str], bool]) -> None:
        super().__init__()
        self.moto = moto
        self.check = check
        self.assumed: list[dict[str, str]] = []

    async def handle(self, request: web.Request, form: dict[str, str]) -> web.StreamResponse:
        """Refuse a token the API server did not issue for STS; forward the rest."""
        if form.get("Action") == "AssumeRoleWithWebIdentity":
            self.assumed.append(form)
            if not self.check(form.get("WebIdentityToken", "")):
                body = ("<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken"
                        "</Code><Message>token refused</Message></Error></ErrorResponse>")
                return web.Response(status=400, text=body, content_type="text/xml")
        headers: dict[str, Any] = {k: v for k, v in request.headers.items()
                                   if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as session, session.post(
                self.moto + request.path_qs, data=form, headers=headers) as answer:
            body_bytes = await answer.read()
            return web.Response(status=answer.status, body=body_bytes,
                                content_type=answer.content_type)
