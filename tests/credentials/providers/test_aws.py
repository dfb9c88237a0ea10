"""AWS ECR login against moto (static keys and IRSA web identity), ending at a real registry.

moto's ``GetAuthorizationToken`` answers ``AWS:<account>-auth-token`` (expiring in 2015),
so the registry is started with htpasswd user ``AWS`` and that password: the listing only
succeeds with exactly the credentials moto issued. With IRSA the account is the role's,
which shows the web identity path was taken.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest

from imagereflector.credentials.providers.aws import AwsLogin, decode_authorization_data
from imagereflector.credentials.providers.azure import AzureLogin
from imagereflector.credentials.providers.base import ProviderError
from imagereflector.credentials.providers.cache import CacheEvent, TokenCache
from imagereflector.credentials.providers.classify import AutologinFlags
from imagereflector.credentials.providers.gcp import GcpLogin
from imagereflector.credentials.providers.registry import ProviderRegistry
from imagereflector.registry.client import ClientSettings, RegistryClient
from imagereflector.registry.errors import AuthError
from imagereflector.registry.limiter import HostLimiter, SystemClock
from imagereflector.registry.reference import parse_image_reference
from imagereflector.registry.transport import NullObserver
from tests.fakes.registry import start_registry

MOTO_ACCOUNT = "123456789012"
ROLE_ACCOUNT = "111122223333"
ECR_IMAGE = f"{MOTO_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/app"
PLANTED_SECRET = "planted-aws-secret-9c1d"
MOTO_EXPIRY = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def static_keys(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET)


async def test_static_keys_get_moto_token(static_keys: None) -> None:
    token = await AwsLogin().login(registry="ignored", image=ECR_IMAGE)
    assert token.credentials.username == "AWS"
    assert token.credentials.password == f"{MOTO_ACCOUNT}-auth-token"
    assert token.expires_at == MOTO_EXPIRY


async def test_irsa_web_identity(aws_env: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.e30.sig")
    monkeypatch.setenv("AWS_ROLE_ARN", f"arn:aws:iam::{ROLE_ACCOUNT}:role/image-reflector")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    token = await AwsLogin().login(
        registry="ignored", image=f"{ROLE_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/app"
    )
    assert token.credentials.username == "AWS"
    assert token.credentials.password == f"{ROLE_ACCOUNT}-auth-token"


async def test_no_credentials_is_an_ecr_error(aws_env: str) -> None:
    with pytest.raises(ProviderError) as info:
        await AwsLogin().login(registry="ignored", image=ECR_IMAGE)
    assert str(info.value) == "ECR authentication failed: Unable to locate credentials"
    assert info.value.__cause__ is None


async def test_not_an_ecr_image(static_keys: None) -> None:
    with pytest.raises(ProviderError, match=r"^ECR authentication failed: failed to parse AWS "
                       r"ECR image, invalid ECR image$"):
        await AwsLogin().login(registry="gcr.io", image="gcr.io/foo/bar")


async def test_unreachable_endpoint_error_has_no_secret(
    static_keys: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.fakes.registry import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://127.0.0.1:{free_port()}")
    caplog.set_level(logging.DEBUG, logger="imagereflector")
    with pytest.raises(ProviderError) as info:
        await AwsLogin(max_attempts=1).login(registry="ignored", image=ECR_IMAGE)
    message = str(info.value)
    assert message.startswith("ECR authentication failed: Could not connect to the endpoint URL")
    assert PLANTED_SECRET not in message
    assert PLANTED_SECRET not in caplog.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "no authorization data"),
        ([{}], "no authorization token"),
        ([{"authorizationToken": None}], "no authorization token"),
        ([{"authorizationToken": "%%%not-base64"}], "invalid authorization token: not base64 text"),
        ([{"authorizationToken": ""}],
         "invalid authorization token, expected the token to have two parts separated by ':', "
         "got 1 parts"),
        ([{"authorizationToken": _b64(PLANTED_SECRET)}],
         "invalid authorization token, expected the token to have two parts separated by ':', "
         "got 1 parts"),
        ([{"authorizationToken": _b64(f"AWS:{PLANTED_SECRET}:x")}],
         "invalid authorization token, expected the token to have two parts separated by ':', "
         "got 3 parts"),
    ],
    ids=["no-data", "no-token", "null-token", "not-base64", "empty", "one-part", "three-parts"],
)
def test_decode_errors(data: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ProviderError) as info:
        decode_authorization_data(data)
    assert str(info.value) == f"ECR authentication failed: {message}"
    assert PLANTED_SECRET not in str(info.value)


def test_decode_takes_first_entry_and_expiry() -> None:
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    token = decode_authorization_data(
        [{"authorizationToken": _b64("AWS:pw"), "expiresAt": expires},
         {"authorizationToken": _b64("other:pw2")}]
    )
    assert (token.credentials.username, token.credentials.password) == ("AWS", "pw")
    assert token.expires_at == expires.timestamp()
    assert "pw" not in repr(token)


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, CacheEvent]] = []

    def cache_event(self, provider: str, event: CacheEvent) -> None:
        self.seen.append((provider, event))


async def test_end_to_end_ecr_login_lists_real_registry(static_keys: None, tmp_path: Path) -> None:
    registry = await start_registry(tmp_path, htpasswd=("AWS", f"{MOTO_ACCOUNT}-auth-token"))
    client = RegistryClient(
        limiter=HostLimiter(qps=0, burst=0, clock=SystemClock()),
        observer=NullObserver(),
        settings=ClientSettings(),
    )
    events = _Events()
    providers = ProviderRegistry(
        plugins=(AwsLogin(), AzureLogin(), GcpLogin()),
        autologin=AutologinFlags(),
        cache=TokenCache(clock=SystemClock(), observer=events),
    )
    try:
        registry.write_tags("app", ["v1", "v2", "v3"])
        ref = parse_image_reference(ECR_IMAGE)
        creds = await providers.credentials(
            provider="aws", image=ECR_IMAGE, registry=ref.registry
        )
        assert creds is not None
        local = parse_image_reference(registry.ref("app"))
        with pytest.raises(AuthError):  # the control: anonymous is refused
            await client.list_tags(local, timeout=20)
        assert sorted(await client.list_tags(local, credentials=creds, timeout=20)) == [
            "v1", "v2", "v3"
        ]
        # moto's token expired in 2015: the next call logs in again instead of reusing it.
        again = await providers.credentials(provider="aws", image=ECR_IMAGE, registry=ref.registry)
        assert again == creds
        assert events.seen == [("aws", "miss"), ("aws", "miss")]
    finally:
        await client.close()
        registry.stop()
