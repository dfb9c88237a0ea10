"""Azure ACR login: the real ``DefaultAzureCredential`` against identity fakes, a fake exchange.

In process, the identity is App Service managed identity (``IDENTITY_ENDPOINT`` +
``IDENTITY_HEADER``, plain http), because the aio credential's aiohttp fixed its TLS
trust at import time. Workload identity (the one AKS uses) needs an https authority, so
its end-to-end test runs in a child process whose ``SSL_CERT_FILE`` is a bundle of the
system CAs and the test CA, with the exchange over https too.

The registry's htpasswd user is ``00000000-…`` with the exchange fake's refresh token as
password: only the exact refresh token lists tags.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagereflector.credentials.providers.azure import (
    ACR_USERNAME,
    AzureLogin,
    identity_error_cause,
    jwt_expiry,
)
from imagereflector.credentials.providers.base import ProviderError
from imagereflector.registry.client import ClientSettings, RegistryClient
from imagereflector.registry.errors import AuthError
from imagereflector.registry.limiter import HostLimiter, SystemClock
from imagereflector.registry.reference import parse_image_reference
from imagereflector.registry.transport import NullObserver
from tests.credentials.providers.cloudfakes import (
    AcrExchangeFake,
    AppServiceMsiFake,
    ArmTokens,
    EntraFake,
    Failure,
    fake_jwt,
)
from tests.credentials.providers.conftest import clean_environ, run_child
from tests.fakes.certs import make_ca, write_bundle
from tests.fakes.registry import free_port, start_registry

ACR_HOST = "myregistry.azurecr.io"
ACR_IMAGE = f"{ACR_HOST}/app"
PLANTED = "planted-acr-secret-51be"


@pytest.fixture
def arm_tokens() -> ArmTokens:
    return ArmTokens()


@pytest.fixture
async def msi(
    clean_env: Path, arm_tokens: ArmTokens, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppServiceMsiFake]:
    fake = AppServiceMsiFake(header="msi-header-value", tokens=arm_tokens)
    await fake.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", fake.header)
    yield fake
    await fake.close()


async def _exchange_fake(service: str, tokens: ArmTokens) -> AcrExchangeFake:
    fake = AcrExchangeFake(service=service, tokens=tokens)
    await fake.start()
    return fake


@pytest.fixture
async def exchange(arm_tokens: ArmTokens) -> AsyncIterator[AcrExchangeFake]:
    fake = await _exchange_fake(ACR_HOST, arm_tokens)
    yield fake
    await fake.close()


def _client() -> RegistryClient:
    return RegistryClient(
        limiter=HostLimiter(qps=0, burst=0, clock=SystemClock()),
        observer=NullObserver(),
        settings=ClientSettings(),
    )


async def test_managed_identity_exchange_and_real_listing(
    msi: AppServiceMsiFake, exchange: AcrExchangeFake, tmp_path: Path
) -> None:
    registry = await start_registry(tmp_path, htpasswd=(ACR_USERNAME, exchange.refresh_token))
    client = _client()
    try:
        registry.write_tags("app", ["1.0.0", "1.1.0"])
        token = await AzureLogin(exchange_url=exchange.exchange_url).login(
            registry=ACR_HOST, image=ACR_IMAGE
        )
        assert token.credentials.username == ACR_USERNAME
        assert token.credentials.password == exchange.refresh_token
        assert token.expires_at == jwt_expiry(exchange.refresh_token)
        # The ARM token went to the exchange for the registry's own host, as a form.
        (sent,) = [r for r in exchange.requests if r.method == "POST"]
        assert sent.form["grant_type"] == "access_token"
        assert sent.form["service"] == ACR_HOST
        assert sent.form["access_token"] == msi.tokens.issued[-1]
        local = parse_image_reference(registry.ref("app"))
        with pytest.raises(AuthError):
            await client.list_tags(local, timeout=20)
        tags = await client.list_tags(local, credentials=token.credentials, timeout=20)
        assert sorted(tags) == ["1.0.0", "1.1.0"]
    finally:
        await client.close()
        registry.stop()


@pytest.mark.parametrize(
    ("host", "resource"),
    [
        ("reg.azurecr.io", "https://management.azure.com"),
        ("reg.azurecr.de", "https://management.azure.com"),
        ("reg.azurecr.cn", "https://management.chinacloudapi.cn"),
        ("reg.azurecr.us", "https://management.usgovcloudapi.net"),
    ],
    ids=["public", "germany-public", "china", "government"],
)
async def test_arm_scope_follows_the_cloud(
    msi: AppServiceMsiFake, arm_tokens: ArmTokens, host: str, resource: str
) -> None:
    exchange = await _exchange_fake(host, arm_tokens)
    try:
        await AzureLogin(exchange_url=exchange.exchange_url).login(
            registry=host, image=f"{host}/app"
        )
    finally:
        await exchange.close()
    # Managed identity takes a resource: the scope without "/.default".
    assert [parse_qs(urlsplit(r.path_qs).query)["resource"] for r in msi.requests] == [
        [resource]
    ]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (Failure(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"' + PLANTED.encode()
                 + b'"}]}'),
         "error exchanging token: unexpected status code 401 from exchange request: "
         "errors: UNAUTHORIZED"),
        (Failure(500, PLANTED.encode(), "text/plain"),
         "error exchanging token: unexpected status code 500 from exchange request"),
        (Failure(200, b"<html>" + PLANTED.encode(), "text/html"),
         "error exchanging token: exchange response is not JSON"),
        (Failure(200, b'{"access_token":"' + PLANTED.encode() + b'"}'),
         "error exchanging token: exchange response has no refresh_token"),
        (Failure(200, b'{"refresh_token":"' + b"x" * 4096 + b'"}'),
         "error exchanging token: exchange response larger than 1024 bytes"),
        (Failure(0, b""), "error exchanging token: timed out after 0.5s"),
    ],
    ids=["401-acr-errors", "500-text", "not-json", "no-refresh-token", "too-large", "hang"],
)
async def test_exchange_failures(
    msi: AppServiceMsiFake, exchange: AcrExchangeFake, failure: Failure, message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="imagereflector")
    exchange.fail_with(failure)
    login = AzureLogin(exchange_url=exchange.exchange_url, max_body=1024, timeout=0.5)
    with pytest.raises(ProviderError) as info:
        await login.login(registry=ACR_HOST, image=ACR_IMAGE)
    assert str(info.value) == f"ACR authentication failed: {message}"
    assert info.value.__cause__ is None
    for secret in [PLANTED, *msi.tokens.issued]:
        assert secret not in str(info.value)
        assert secret not in caplog.text


async def test_exchange_redirect_is_not_followed(
    msi: AppServiceMsiFake, exchange: AcrExchangeFake, arm_tokens: ArmTokens
) -> None:
    other = await _exchange_fake(ACR_HOST, arm_tokens)
    try:
        exchange.fail_with(Failure(307, b"", "text/plain"))
        exchange_redirect = exchange.exchange_url

        def redirect_url(host: str) -> str:
            return exchange_redirect(host)

        with pytest.raises(ProviderError, match="unexpected status code 307"):
            await AzureLogin(exchange_url=redirect_url).login(registry=ACR_HOST, image=ACR_IMAGE)
        assert other.requests == []
    finally:
        await other.close()


async def test_exchange_unreachable(msi: AppServiceMsiFake) -> None:
    dead = f"http://127.0.0.1:{free_port()}/oauth2/exchange"
    with pytest.raises(ProviderError) as info:
        await AzureLogin(exchange_url=lambda _host: dead).login(registry=ACR_HOST, image=ACR_IMAGE)
    assert str(info.value).startswith(
        "ACR authentication failed: error exchanging token: ClientConnectorError"
    )
    for token in msi.tokens.issued:
        assert token not in str(info.value)


async def test_identity_failure_names_acr_and_hides_the_body(
    msi: AppServiceMsiFake, exchange: AcrExchangeFake, caplog: pytest.LogCaptureFixture
) -> None:
    # 400, not 5xx: managed identity retries server errors with backoff, which only
    # slows the test down; azure-identity quotes the body either way.
    caplog.set_level(logging.DEBUG, logger="imagereflector")
    msi.fail_with(Failure(400, b'{"error":"boom","detail":"' + PLANTED.encode() + b'"}'))
    with pytest.raises(ProviderError) as info:
        await AzureLogin(exchange_url=exchange.exchange_url).login(
            registry=ACR_HOST, image=ACR_IMAGE
        )
    assert str(info.value) == (
        "ACR authentication failed: DefaultAzureCredential failed to retrieve a token from the "
        "included credentials. EnvironmentCredential: unavailable; WorkloadIdentityCredential: "
        "unavailable; ManagedIdentityCredential: Unexpected response"
    )
    assert info.value.__cause__ is None
    assert PLANTED not in caplog.text
    assert exchange.requests == []


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
            "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential "
            "authentication unavailable. Environment variables are not fully configured.\n"
            "Visit https://aka.ms/x to troubleshoot this issue.\n"
            "\tManagedIdentityCredential: Unexpected response \"{'access_token': '"
            + PLANTED + "'}\"\nContent: {\"access_token\":\"" + PLANTED + "\"}\n"
            "To mitigate this issue, please refer to https://aka.ms/y.",
            "DefaultAzureCredential failed to retrieve a token from the included credentials. "
            "EnvironmentCredential: unavailable; ManagedIdentityCredential: Unexpected response",
        ),
        (
            "ClientAssertionCredential.get_token failed: (invalid_client) AADSTS700016: no app "
            "Content: {\"error\": \"" + PLANTED + "\"}",
            "ClientAssertionCredential.get_token failed: (invalid_client) AADSTS700016: no app",
        ),
    ],
    ids=["default-chain", "single"],
)
def test_identity_error_cause_drops_bodies(message: str, cause: str) -> None:
    assert identity_error_cause(message) == cause


def test_jwt_expiry() -> None:
    assert jwt_expiry(fake_jwt(exp=1234)) == 1234.0
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None
    assert jwt_expiry("a.e30.c") is None  # {} has no exp


@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "refused-by-entra"])
async def test_workload_identity_end_to_end_in_child(tmp_path: Path, accepted: bool) -> None:
    """AKS's path: federated token file → Entra ID (https) → exchange (https) → registry."""
    pki = tmp_path / "pki"
    ca = make_ca(pki)
    bundle = write_bundle(tmp_path / "bundle.pem", ca.cert_pem)
    tokens = ArmTokens()
    assertion = "federated-" + PLANTED
    entra = EntraFake(ca=ca, cert_dir=pki, tenant="tenant-1", client_id="client-1",
                      assertion=assertion, tokens=tokens)
    exchange_pair = ca.issue(pki, "exchange")
    import ssl

    exchange_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    exchange_tls.load_cert_chain(exchange_pair.cert_file, exchange_pair.key_file)
    exchange = AcrExchangeFake(service=ACR_HOST, tokens=tokens, ssl_context=exchange_tls)
    await entra.start()
    await exchange.start()
    registry = await start_registry(tmp_path, htpasswd=(ACR_USERNAME, exchange.refresh_token))
    try:
        registry.write_tags("app", ["a", "b"])
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text(assertion if accepted else f"wrong-{PLANTED}")
        home = tmp_path / "home"
        home.mkdir()
        env = clean_environ(home) | {
            "AZURE_AUTHORITY_HOST": entra.url,
            "AZURE_TENANT_ID": "tenant-1",
            "AZURE_CLIENT_ID": "client-1",
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "SSL_CERT_FILE": str(bundle),
        }
        run = await run_child(
            {
                "provider": "azure",
                "image": ACR_IMAGE,
                "registry": ACR_HOST,
                "logins": 2,
                "exchange_url": exchange.exchange_url(ACR_HOST),
                "list": {"registry": registry.host, "repository": "app"},
            },
            env=env,
        )
    finally:
        registry.stop()
        await exchange.close()
        await entra.close()
    assert exchange.url.startswith("https://")
    for secret in [exchange.refresh_token, assertion, f"wrong-{PLANTED}", *tokens.issued]:
        assert secret not in run.stdout
        assert secret not in run.stderr
    entra_posts = [r for r in entra.requests if r.method == "POST"]
    if not accepted:
        (first, second) = run.answer["results"]
        assert first == second
        message = first["error"]["message"]
        assert first["error"]["type"] == "ProviderError"
        assert message.startswith("ACR authentication failed: DefaultAzureCredential failed")
        assert "WorkloadIdentityCredential: " in message
        assert "AADSTS700016" in message
        # Entra ID refused: no registry credentials were asked for, nor logged.
        assert run.answer["events"] == []
        assert "logging in to Azure ACR" not in run.stderr
        assert run.answer["list_error"].startswith("AuthError")
        assert exchange.requests == []
        return
    assert run.answer["results"] == [
        {"anonymous": False, "username": ACR_USERNAME},
        {"anonymous": False, "username": ACR_USERNAME},
    ]
    assert run.answer["events"] == [["azure", "miss"], ["azure", "hit"]]
    assert "logging in to Azure ACR for myregistry.azurecr.io/app" in run.stderr
    assert sorted(run.answer["tags"]) == ["a", "b"]
    assert len(entra_posts) == 1
    assert entra_posts[0].form["scope"] == "https://management.azure.com/.default"
    assert len(exchange.requests) == 1
