"""A Docker token server (the Bearer auth realm) for the real registry.

Implements what the registry and clients need from the token protocol:

* ``GET /token?service=S&scope=repository:R:pull[,push]`` with optional Basic auth;
  ``offline_token=true`` also returns a refresh token.
* ``POST /token`` form (OAuth2): ``grant_type=password`` (``username``/``password``)
  or ``grant_type=refresh_token`` (``refresh_token`` from ``issue_refresh_token`` or
  from an earlier offline answer); ``access_type=offline`` returns a refresh token.

Tokens are RS256 JWTs whose header carries ``x5c`` (the signing certificate, which is
the registry's ``rootcertbundle``), with ``iss``, ``aud`` (a plain string: the
service), ``sub``, ``exp``/``nbf``/``iat`` and ``access`` claims.

Invariants:
* Known users get every action they ask for; anonymous callers get ``pull`` only,
  and only when ``allow_anonymous`` is set; bad credentials or a wrong service get 401.
* Every request is recorded in ``requests`` without any secret: only whether an
  Authorization header was present, and the form's ``grant_type``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.fakes.certs import KeyPair
from tests.fakes.registry import TEST_CREDS, LoopbackApp


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request the token server saw, with secrets left out."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    authorization: bool
    scheme: str
    grant_type: str | None = None

    def get(self, name: str) -> str | None:
        """First query value for ``name`` (form fields count for POST)."""
        return next((v for k, v in self.query if k == name), None)

    @property
    def scopes(self) -> list[str]:
        """Every requested scope, space-separated values split."""
        return [s for k, v in self.query if k == "scope" for s in v.split()]


class _Denied(Exception):
    pass


class TokenServer:
    """The token realm; construct, ``await start()``, then hand it to ``start_registry``."""

    def __init__(
        self,
        dir: Path,
        *,
        users: Mapping[str, str] | None = None,
        service: str = "test-registry",
        issuer: str = "test-token-issuer",
        allow_anonymous: bool = False,
        tls: KeyPair | None = None,
        expires_in: int = 300,
    ) -> None:
        self.users = dict(users) if users is not None else dict([TEST_CREDS])
        self.service = service
        self.issuer = issuer
        self.allow_anonymous = allow_anonymous
        self.expires_in = expires_in
        self.requests: list[TokenRequest] = []
        self.issued = 0
        self._refresh_tokens: dict[str, str] = {}
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _signing_cert(self._key, issuer)
        dir.mkdir(parents=True, exist_ok=True)
        self.rootcert_file = dir / "token-signer.crt"
        self.rootcert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        ssl_context = None
        if tls is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(tls.cert_file, tls.key_file)
        self._scheme = "https" if tls is not None else "http"
        app = web.Application()
        app.router.add_get("/token", self._get)
        app.router.add_post("/token", self._post)
        self._server = LoopbackApp(app, ssl_context=ssl_context)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return self._server.url

    @property
    def realm(self) -> str:
        """The token endpoint, as the registry's challenge advertises it."""
        return f"{self._server.url}/token"

    async def start(self) -> None:
        """Start serving on an ephemeral 127.0.0.1 port."""
        await self._server.start()

    async def close(self) -> None:
        """Stop serving."""
        await self._server.close()

    def issue_refresh_token(self, user: str) -> str:
        """An identity (refresh) token for ``user``: a docker config's ``identitytoken``."""
        if user not in self.users:
            raise KeyError(user)
        token = secrets.token_urlsafe(24)
        self._refresh_tokens[token] = user
        return token

    def decode(self, token: str) -> dict[str, Any]:
        """Verify and decode a token this server issued (for tests' own assertions)."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            audience=self.service,
            issuer=self.issuer,
        )
        return claims

    async def _get(self, request: web.Request) -> web.Response:
        query = tuple(request.query.items())
        self._record(request, query, None)
        try:
            subject = self._basic_subject(request.headers.get("Authorization"))
        except _Denied:
            return _unauthorized()
        return self._answer(
            service=request.query.get("service"),
            scopes=[s for k, v in query if k == "scope" for s in v.split()],
            subject=subject,
            offline=request.query.get("offline_token") == "true",
        )

    async def _post(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = tuple(
            (k, v)
            for k, v in form.items()
            if isinstance(v, str) and k not in ("password", "refresh_token")
        )
        grant_type = form.get("grant_type")
        self._record(request, fields, grant_type if isinstance(grant_type, str) else None)
        scopes = [s for k, v in fields if k == "scope" for s in v.split()]
        if grant_type == "password":
            user, password = form.get("username"), form.get("password")
            if not isinstance(user, str) or self.users.get(user) != password:
                return _unauthorized()
            subject: str | None = user
        elif grant_type == "refresh_token":
            refresh = form.get("refresh_token")
            subject = self._refresh_tokens.get(refresh) if isinstance(refresh, str) else None
            if subject is None:
                return _unauthorized()
        else:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        service = form.get("service")
        return self._answer(
            service=service if isinstance(service, str) else None,
            scopes=scopes,
            subject=subject,
            offline=form.get("access_type") == "offline",
        )

    def _record(
        self, request: web.Request, query: tuple[tuple[str, str], ...], grant: str | None
    ) -> None:
        self.requests.append(
            TokenRequest(
                method=request.method,
                path=request.path,
                query=query,
                authorization="Authorization" in request.headers,
                scheme=self._scheme,
                grant_type=grant,
            )
        )

    def _basic_subject(self, header: str | None) -> str | None:
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise _Denied
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Denied from None
        if self.users.get(user) != password:
            raise _Denied
        return user

    def _answer(
        self, *, service: str | None, scopes: list[str], subject: str | None, offline: bool
    ) -> web.Response:
        if service is not None and service != self.service:
            return _unauthorized()
        if subject is None and not self.allow_anonymous:
            return _unauthorized()
        access = [self._access(s, anonymous=subject is None) for s in scopes]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": [a for a in access if a["actions"]],
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": [self._x5c]})
        self.issued += 1
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if offline and subject is not None:
            body["refresh_token"] = self.issue_refresh_token(subject)
        return web.json_response(body)

    @staticmethod
    def _access(scope: str, *, anonymous: bool) -> dict[str, Any]:
        # Repository names never contain ':', so the first and last ':' delimit them.
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        wanted = [a for a in actions.split(",") if a]
        granted = [a for a in wanted if a == "pull"] if anonymous else wanted
        return {"type": kind, "name": name, "actions": granted}


def _unauthorized() -> web.Response:
    return web.json_response(
        {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="test-token-server"'},
    )


def _signing_cert(key: rsa.RSAPrivateKey, issuer: str) -> x509.Certificate:
    """A self-signed certificate for the signing key: its own root, so x5c verifies."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
