"""The client against the real registry: schemes, auth flows, TLS, errors, big repositories."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from imagereflector.registry.auth import basic_authorization
from imagereflector.registry.errors import (
    AuthError,
    CertificateError,
    NotFoundError,
    RegistryError,
    TLSError,
)
from imagereflector.registry.reference import ImageReference
from imagereflector.registry.types import Credentials, TLSConfig
from tests.fakes.fronts import FaultFront
from tests.fakes.registry import TEST_CREDS, LoopbackApp, RegistryProcess
from tests.fakes.tokenserver import TokenServer
from tests.registry.conftest import MakeClient
from tests.registry.fakeclock import FakeClock
from tests.registry.recording import RecordingObserver

CREDS = Credentials(*TEST_CREDS)
TAGS = ["1.0.0", "1.1.0", "latest", "v2"]


def ref_of(host: str, repo: str = "team/app", *, insecure: bool = False) -> ImageReference:
    return ImageReference(registry=host, repository=repo, insecure=insecure)


def chain_text(error: BaseException) -> str:
    """Everything an error could show: str, repr, and its causes and contexts."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


async def test_anonymous_listing_and_remembered_scheme(
    registry: RegistryProcess, make_client: MakeClient, observer: RecordingObserver
) -> None:
    registry.write_tags("team/app", TAGS)
    client = make_client()
    assert sorted(await client.list_tags(ref_of(registry.host), timeout=10)) == TAGS
    # https was tried first and failed to connect; plain http answered.
    assert observer.codes() == ["error", "200", "200"]
    observer.requests.clear()
    assert sorted(await client.list_tags(ref_of(registry.host), timeout=10)) == TAGS
    assert observer.codes() == ["200"]  # no https attempt, no ping: both remembered


async def test_https_references_never_fall_back_to_http(
    registry: RegistryProcess, make_client: MakeClient, observer: RecordingObserver
) -> None:
    async with FaultFront(registry, bind="127.0.0.2") as front:
        ref = ref_of(front.host)
        assert ref.scheme == "https"
        with pytest.raises(TLSError, match=r"https://127\.0\.0\.2"):
            await make_client().list_tags(ref, timeout=10)
        assert front.requests == []


async def test_insecure_reference_to_a_public_looking_host_uses_http(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    registry.write_tags("team/app", TAGS)
    async with FaultFront(registry, bind="127.0.0.2") as front:
        tags = await make_client().list_tags(ref_of(front.host, insecure=True), timeout=10)
    assert sorted(tags) == TAGS


async def test_basic_auth(basic_registry: RegistryProcess, make_client: MakeClient) -> None:
    basic_registry.write_tags("team/app", TAGS)
    client = make_client()
    ref = ref_of(basic_registry.host)
    assert sorted(await client.list_tags(ref, credentials=CREDS, timeout=10)) == TAGS
    expected = r"GET http://127\.0\.0\.1:\d+/v2/team/app/tags/list\?n=1000: UNAUTHORIZED"
    with pytest.raises(AuthError, match=expected):
        await client.list_tags(ref, credentials=Credentials("testuser", "wrong"), timeout=10)
    with pytest.raises(AuthError, match="UNAUTHORIZED"):
        await client.list_tags(ref, timeout=10)


async def test_bearer_token_is_fetched_once_and_reused(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    token_registry.write_tags("team/app", TAGS)
    client = make_client()
    ref = ref_of(token_registry.host)
    assert sorted(await client.list_tags(ref, credentials=CREDS, timeout=10)) == TAGS
    [request] = token_server.requests
    assert request.method == "GET"
    assert request.authorization
    assert request.get("service") == token_server.service
    assert request.scopes == ["repository:team/app:pull"]
    assert sorted(await client.list_tags(ref, credentials=CREDS, timeout=10)) == TAGS
    assert await client.head_manifest(ref, "v2", credentials=CREDS, timeout=10)
    assert len(token_server.requests) == 1  # same registry, scope and credentials
    other = ref_of(token_registry.host, "team/other")
    with pytest.raises(NotFoundError, match="NAME_UNKNOWN"):
        await client.list_tags(other, credentials=CREDS, timeout=10)
    assert token_server.requests[-1].scopes == ["repository:team/other:pull"]


async def test_bearer_without_credentials_is_refused_by_the_realm(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    with pytest.raises(AuthError, match=r"GET http://127\.0\.0\.1:\d+/token: UNAUTHORIZED"):
        await make_client().list_tags(ref_of(token_registry.host), timeout=10)
    assert not token_server.requests[-1].authorization


async def test_identity_token_uses_the_refresh_token_grant(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    token_registry.write_tags("team/app", TAGS)
    refresh = token_server.issue_refresh_token(TEST_CREDS[0])
    creds = Credentials(identity_token=refresh)
    tags = await make_client().list_tags(ref_of(token_registry.host), credentials=creds, timeout=10)
    assert sorted(tags) == TAGS
    [request] = token_server.requests
    assert request.method == "POST"
    assert request.grant_type == "refresh_token"
    assert request.get("client_id") == "imagereflector"
    assert request.get("service") == token_server.service
    assert request.scopes == ["repository:team/app:pull"]


async def test_registry_token_is_sent_as_bearer_without_a_token_request(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    token_registry.write_tags("team/app", TAGS)
    auth = basic_authorization(*TEST_CREDS)
    query = {"service": token_server.service, "scope": "repository:team/app:pull"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(token_server.realm, params=query, headers={"Authorization": auth}) as answer,
    ):
        token = (await answer.json())["token"]
    seen = len(token_server.requests)
    creds = Credentials(registry_token=token)
    tags = await make_client().list_tags(ref_of(token_registry.host), credentials=creds, timeout=10)
    assert sorted(tags) == TAGS
    assert len(token_server.requests) == seen


async def test_token_is_fetched_again_after_it_expires(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    token_registry.write_tags("team/app", TAGS)
    clock = FakeClock(auto_advance=True)
    client = make_client(clock=clock)
    ref = ref_of(token_registry.host)
    await client.list_tags(ref, credentials=CREDS, timeout=10)
    clock.now += token_server.expires_in - 11  # still inside the margin
    await client.list_tags(ref, credentials=CREDS, timeout=10)
    assert len(token_server.requests) == 1
    clock.now += 2
    await client.list_tags(ref, credentials=CREDS, timeout=10)
    assert len(token_server.requests) == 2


async def test_a_refused_cached_token_is_renewed_once(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    token_registry.write_tags("team/app", TAGS)
    client = make_client()
    async with FaultFront(token_registry) as front:
        ref = ref_of(front.host)
        # A 401 to a token fetched in this very call is final: no second try.
        front.fail_next(1, status=401, code="UNAUTHORIZED", path="/tags/list")
        with pytest.raises(AuthError, match="UNAUTHORIZED: scripted fault"):
            await client.list_tags(ref, credentials=CREDS, timeout=10)
        assert len(token_server.requests) == 1
        # A 401 to the cached token (revoked, say) re-authenticates once and succeeds.
        front.fail_next(1, status=401, code="UNAUTHORIZED", path="/tags/list")
        assert sorted(await client.list_tags(ref, credentials=CREDS, timeout=10)) == TAGS
        assert len(token_server.requests) == 2


async def test_password_is_not_sent_to_a_plain_http_realm_on_another_host(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: MakeClient
) -> None:
    # The client reaches the registry as 127.0.0.2; the realm stays http://127.0.0.1.
    async with FaultFront(token_registry, bind="127.0.0.2") as front:
        with pytest.raises(AuthError, match="not sent to a plain-http token realm"):
            await make_client().list_tags(
                ref_of(front.host, insecure=True), credentials=CREDS, timeout=10
            )
    assert token_server.requests
    assert not any(r.authorization for r in token_server.requests)


async def test_tls_with_a_private_ca(
    tls_registry: RegistryProcess, make_client: MakeClient
) -> None:
    tls_registry.write_tags("team/app", TAGS)
    assert tls_registry.ca is not None
    tls = TLSConfig(ca_pem=tls_registry.ca.cert_pem)
    client = make_client()
    assert sorted(await client.list_tags(ref_of(tls_registry.host), tls=tls, timeout=10)) == TAGS
    # Without the CA the certificate is not trusted; that is the error, not the http retry.
    with pytest.raises(CertificateError, match=r"https://127\.0\.0\.1"):
        await make_client().list_tags(ref_of(tls_registry.host), timeout=10)


async def test_mutual_tls(mtls_registry: RegistryProcess, make_client: MakeClient) -> None:
    mtls_registry.write_tags("team/app", TAGS)
    assert mtls_registry.ca is not None
    assert mtls_registry.client is not None
    with_cert = TLSConfig(
        ca_pem=mtls_registry.ca.cert_pem,
        cert_pem=mtls_registry.client.cert_pem,
        key_pem=mtls_registry.client.key_pem,
    )
    ref = ref_of(mtls_registry.host)
    assert sorted(await make_client().list_tags(ref, tls=with_cert, timeout=10)) == TAGS
    without = TLSConfig(ca_pem=mtls_registry.ca.cert_pem)
    with pytest.raises(TLSError, match="client certificate") as info:
        await make_client().list_tags(ref, tls=without, timeout=10)
    assert "PRIVATE KEY" not in chain_text(info.value)


async def test_unknown_repository_is_not_found(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    with pytest.raises(NotFoundError, match="NAME_UNKNOWN: repository name not known"):
        await make_client().list_tags(ref_of(registry.host, "no/such"), timeout=10)


async def test_head_manifest_returns_the_pushed_digest(
    registry: RegistryProcess, make_client: MakeClient
) -> None:
    digests = await registry.push_tags("team/app", ["a", "b"])
    client = make_client()
    ref = ref_of(registry.host)
    assert await client.head_manifest(ref, "a", timeout=10) == digests["a"]
    new = await registry.repush("team/app", "a")
    assert await client.head_manifest(ref, "a", timeout=10) == new != digests["a"]
    with pytest.raises(NotFoundError):
        await client.head_manifest(ref, "missing", timeout=10)
    with pytest.raises(ValueError, match="tag"):
        await client.head_manifest(ref, "../x", timeout=10)


async def test_ten_thousand_tags(registry: RegistryProcess, make_client: MakeClient) -> None:
    tags = [f"1.{i // 100}.{i % 100}" for i in range(10_000)]
    registry.write_tags("big/repo", tags)
    listed = await make_client().list_tags(ref_of(registry.host, "big/repo"), timeout=30)
    assert len(listed) == 10_000
    assert set(listed) == set(tags)


# --- a hostile server: echoes secrets, omits digests, reports a rate limit -------------

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


def _echo_app() -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        if "Authorization" not in request.headers:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="echo"'})
        return web.Response(status=200)

    async def tags(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        decoded = base64.b64decode(header.removeprefix("Basic ")).decode(errors="replace")
        body = {"errors": [{"code": "DENIED", "message": f"refused {header} ({decoded})"}]}
        return web.json_response(
            body, status=403, headers={"ratelimit-remaining": "76;w=21600"}
        )

    async def manifest(request: web.Request) -> web.Response:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=MANIFEST, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/", ping)
    app.router.add_get("/v2/{name:.+}/tags/list", tags)
    app.router.add_route("*", "/v2/{name:.+}/manifests/{ref}", manifest)
    return app


@pytest.fixture
async def echo_server() -> AsyncIterator[LoopbackApp]:
    server = LoopbackApp(_echo_app())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_a_planted_password_never_shows_in_error_text(
    echo_server: LoopbackApp,
    basic_registry: RegistryProcess,
    token_registry: RegistryProcess,
    make_client: MakeClient,
    observer: RecordingObserver,
) -> None:
    planted = "pw-" + secrets.token_hex(12)
    creds = Credentials(username="someone", password=planted)
    client = make_client()
    failures: list[BaseException] = []
    for host in (echo_server.host, basic_registry.host, token_registry.host):
        with pytest.raises(RegistryError) as info:
            await client.list_tags(ref_of(host), credentials=creds, timeout=10)
        failures.append(info.value)
    # The echo arrived and was cut out.
    assert "refused Basic <redacted> (someone:<redacted>)" in str(failures[0])
    for failure in failures:
        text = chain_text(failure)
        assert planted not in text
        assert base64.b64encode(f"someone:{planted}".encode()).decode() not in text
    assert ("127.0.0.1:" + str(echo_server.port), 76) in observer.remaining


async def test_manifest_digest_is_computed_when_the_header_is_missing(
    echo_server: LoopbackApp, make_client: MakeClient, tmp_path: Path
) -> None:
    digest = await make_client().head_manifest(
        ref_of(echo_server.host), "v1", credentials=CREDS, timeout=10
    )
    assert digest == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
